"""Progress bars (vgg_caffe.progress): tqdm on a terminal's stderr, nothing on a pipe or when quiet;
convert_imageset shows one on a terminal and otherwise prints Caffe's "Processed N files." lines."""
import io
import re
import sys

import cv2
import numpy as np

from vgg_caffe.data.convert import Options, convert_imageset
from vgg_caffe.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_only_on_a_terminal_and_not_quiet():
    tty, pipe, quiet = Terminal(), io.StringIO(), Terminal()
    for stream, enabled in ((tty, True), (pipe, True), (quiet, False)):
        bar = progress_bar(7, enabled, desc="work", unit="img", stream=stream)
        for _ in range(7):
            bar.update()
        bar.refresh()
        bar.close()
    assert re.search(r"\rwork: +100%\|.*\| 7/7 \[", tty.getvalue()), tty.getvalue()
    assert "img/s" in tty.getvalue()
    assert pipe.getvalue() == "" and quiet.getvalue() == ""


def _images(tmp_path, lines):
    root = tmp_path / "imgs"
    root.mkdir()
    cv2.imwrite(str(root / "a.png"), np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3))
    listfile = tmp_path / "list.txt"
    listfile.write_text("".join(f"a.png {i % 3}\n" for i in range(lines)))   # one file, many keys
    return str(root) + "/", str(listfile)


def test_convert_imageset_bar_on_a_terminal(tmp_path, monkeypatch):
    root, listfile = _images(tmp_path, 5)
    stderr, said = Terminal(), []
    monkeypatch.setattr(sys, "stderr", stderr)
    convert_imageset(root, listfile, str(tmp_path / "db"), Options(), log=said.append)
    shown = stderr.getvalue()
    assert re.search(r"\rconvert_imageset: +\d+%\|.*\| \d/5 \[", shown), shown   # tqdm's bar, img/s
    assert "img/s" in shown and shown.endswith("\r")   # erased at the end (leave=False)
    assert said == ["Processed 5 files (5 in this run)."]


def test_convert_imageset_without_a_terminal_prints_caffes_lines(tmp_path, monkeypatch):
    root, listfile = _images(tmp_path, 2001)
    for name, stream, progress in (("pipe", io.StringIO(), True), ("quiet", Terminal(), False)):
        said = []
        monkeypatch.setattr(sys, "stderr", stream)
        convert_imageset(root, listfile, str(tmp_path / name), Options(), progress=progress, log=said.append)
        assert stream.getvalue() == ""
        # Caffe's convert_imageset logs every 1000 records, then the total
        assert said == ["Processed 1000 files.", "Processed 2000 files.", "Processed 2001 files (2001 in this run)."]
