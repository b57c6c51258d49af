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
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
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
