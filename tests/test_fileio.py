"""Atomic writes: a failed write (a full disk) leaves the previous file intact and no debris."""
import errno
import os

import pytest

from vgg_caffe import fileio
from vgg_caffe.errors import CaffeError


def test_write_replaces_the_file_and_keeps_the_umask_permissions(tmp_path):
    path = tmp_path / "a.prototxt"
    fileio.atomic_write(path, "one")
    fileio.atomic_write(path, "two")
    assert path.read_text() == "two"
    mask = os.umask(0)
    os.umask(mask)
    assert (os.stat(path).st_mode & 0o777) == (0o666 & ~mask)
    assert os.listdir(tmp_path) == ["a.prototxt"]


def test_full_disk_keeps_the_old_file_and_names_the_path(tmp_path, monkeypatch):
    path = tmp_path / "net.caffemodel"
    fileio.atomic_write(path, b"previous snapshot")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # The data is written and flushed, then fsync finds the disk full (as on a real full disk,
    # where the error can surface at any of the three).
    monkeypatch.setattr(fileio.os, "fsync", no_space)
    with pytest.raises(CaffeError) as err:
        fileio.atomic_write(path, b"new snapshot that does not fit")
    assert str(path) in str(err.value) and "No space left" in str(err.value)
    assert path.read_bytes() == b"previous snapshot"
    assert os.listdir(tmp_path) == ["net.caffemodel"]  # the temporary file is gone


def test_an_exception_inside_the_block_leaves_nothing_behind(tmp_path):
    path = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with fileio.atomic_open(path) as f:
            f.write(b"partial")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []
