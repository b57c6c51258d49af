"""Writing files so that nothing a user has is lost.

Every file this project writes (prototxt, caffemodel, solverstate, mean blobs, reports) goes to a
temporary name in the same directory and is renamed into place only once complete and flushed:
a crash or a full disk leaves the previous file intact, never a truncated one.
"""
import contextlib
import os
import tempfile

from .errors import CaffeError


@contextlib.contextmanager
def atomic_open(path, mode="wb"):
    """Open a temporary file beside `path`; on a clean exit fsync it and rename it to `path`."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    check_writable(path)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    except OSError as e:
        raise CaffeError(f"{path}: could not write ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the permissions an ordinary open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        raise CaffeError(f"{path}: could not write ({e.strerror or e})") from e
    except BaseException:
        _remove_quietly(tmp)
        raise


def blocking_file(path):
    """The nearest existing ancestor of `path`'s folder when it is not a folder (a regular file
    standing where a directory must go), else None."""
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    while directory and not os.path.exists(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory if os.path.exists(directory) and not os.path.isdir(directory) else None


def check_writable(path, what="output"):
    """Raise CaffeError unless a file can be created at `path` (its folder may still have to be
    made): nothing in the way is a regular file, the nearest existing folder takes new files, and
    `path` itself is not a folder. Nothing is created. Long jobs call it before they start, so a bad
    output path fails at once rather than after hours of work."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CaffeError(f"{path}: cannot write the {what} there: it is a directory")
    blocker = blocking_file(path)
    if blocker is not None:
        raise CaffeError(f"{path}: cannot write the {what} there: {blocker} is a file, not a directory")
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(directory):
        directory = os.path.dirname(directory)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CaffeError(f"{path}: cannot write the {what} there: no permission to create files in {directory}")


def atomic_write(path, data):
    """Write bytes or str to `path` atomically."""
    mode = "w" if isinstance(data, str) else "wb"
    with atomic_open(path, mode) as f:
        f.write(data)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_quietly(path):
    with contextlib.suppress(OSError):
        os.remove(path)
