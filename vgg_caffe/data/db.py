"""LMDB databases of Datum records, as Caffe's db_lmdb.cpp reads and writes them.

Writing: records are buffered and committed in one transaction every `commit_every` puts (Caffe
commits every 1000); when LMDB reports the map full, the map size is doubled and the transaction
redone (Caffe's LMDBTransaction::Commit -> DoubleMapSize). A commit is atomic, so after a crash the
database holds exactly the committed records, which is what resuming relies on.

Reading: Caffe walks a cursor in key order and wraps at the end. We keep the key list so that the
record for global sample g is keys[g % n] and any process can fetch any slice of a batch; the
environment is opened once per process (LMDB handles must not cross fork/spawn, and py-lmdb
refuses a second handle on one file in a process).
"""
import os

import lmdb

from ..errors import CaffeError

DEFAULT_MAP_SIZE = 1 << 26  # 64 MiB to start; doubled whenever full


_ENVS = {}  # (real path, pid) -> read-only environment; LMDB allows one handle per process


def _shared_env(path):
    """The process's read-only handle on `path`, opened once (py-lmdb refuses a second one)."""
    key = (os.path.realpath(path), os.getpid())
    env = _ENVS.get(key)
    if env is None:
        env = _ENVS[key] = _open_readonly(path)
    return env


def _forget(path):
    env = _ENVS.pop((os.path.realpath(path), os.getpid()), None)
    if env is not None:
        env.close()


def _open_readonly(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CaffeError(f"{path}: database does not exist")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "data.mdb")):
        hint = " (it looks like LevelDB, which is not supported: convert with --backend lmdb)" \
            if os.path.exists(os.path.join(path, "CURRENT")) else ""
        raise CaffeError(f"{path}: not an LMDB database (no data.mdb){hint}")
    try:
        return lmdb.open(path, readonly=True, lock=False, readahead=False, subdir=os.path.isdir(path),
                         max_readers=2048)
    except lmdb.Error as e:
        raise CaffeError(f"{path}: cannot open as LMDB ({e})") from None


class Reader:
    """Indexed read access to an LMDB: len(r), r.keys[i], r.get(i) -> (key, value bytes),
    r.get_many(indices)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        with _shared_env(self.path).begin() as txn:
            self.keys = list(txn.cursor().iternext(keys=True, values=False))
        if not self.keys:
            raise CaffeError(f"{self.path}: the database is empty")

    def __len__(self):
        return len(self.keys)

    def _txn(self):
        return _shared_env(self.path).begin(buffers=False)

    def get(self, index):
        return self.get_many([index])[0]

    def get_many(self, indices):
        """[(key, value)] of records `indices` (wrapping around, as Caffe's cursor), in one read
        transaction: finding the process's environment (a realpath) costs more than a read."""
        out = []
        with self._txn() as txn:
            for index in indices:
                key = self.keys[index % len(self.keys)]
                value = txn.get(key)
                if value is None:
                    raise CaffeError(f"{self.path}: key {key!r} vanished while reading")
                out.append((key, value))
        return out

    def items(self):
        """Every (key, value) in key order, in one read transaction."""
        with _shared_env(self.path).begin() as txn:
            yield from txn.cursor().iternext()

    def close(self):
        _forget(self.path)


def committed_keys(path):
    """The set of keys an existing LMDB holds (for --resume)."""
    _forget(path)
    env = _open_readonly(path)
    try:
        with env.begin() as txn:
            return set(txn.cursor().iternext(keys=True, values=False))
    finally:
        env.close()


class Writer:
    """Buffered writer: put() many, committed every `commit_every`; close() commits the rest."""

    def __init__(self, path, commit_every=1000, map_size=DEFAULT_MAP_SIZE, create=True):
        self.path = os.fspath(path)
        if create:
            if os.path.exists(self.path):
                raise CaffeError(f"{self.path}: already exists (delete it, or pass --resume to continue it)")
            os.makedirs(self.path)
        _forget(self.path)
        try:
            self.env = lmdb.open(self.path, map_size=map_size, subdir=True, sync=True)
        except lmdb.Error as e:
            raise CaffeError(f"{self.path}: cannot open LMDB for writing ({e})") from None
        self.map_size = max(map_size, self.env.info()["map_size"])
        self.commit_every = max(1, int(commit_every))
        self.pending = []
        self.count = 0
        self.doublings = 0

    def put(self, key, value):
        self.pending.append((key if isinstance(key, bytes) else key.encode(), value))
        self.count += 1
        if len(self.pending) >= self.commit_every:
            self.commit()

    def commit(self):
        while self.pending:
            try:
                with self.env.begin(write=True) as txn:
                    for k, v in self.pending:
                        txn.put(k, v)
                self.pending = []
            except lmdb.MapFullError:
                # The aborted transaction left nothing behind; grow the map and redo it.
                self.map_size *= 2
                self.doublings += 1
                self.env.set_mapsize(self.map_size)

    def close(self):
        self.commit()
        self.env.sync(True)
        self.env.close()
