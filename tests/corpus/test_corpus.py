"""The corpus of malformed inputs (corpus_cases.py, seeded, generated here) through every entry
point: for each case the tool exits non-zero, prints no traceback, names the file (and the layer
or the line), leaves no partial output and no temporary file, and leaves the files that were
there before as they were. A few cases per tool also run as real subprocesses, so the in-process
runner is checked against the command line itself."""
import os
import re

import pytest

from corpus_cases import cases
from corpus_runner import run, run_subprocess

CASES = cases()
BY_ID = {c.id: c for c in CASES}


def check(case, d, result):
    text = result.output
    assert result.code != 0, f"{case.id}: exit code 0\n{text}"
    assert "Traceback" not in text, f"{case.id}: a traceback\n{text}"
    for want in case.expect:
        want = want.replace("{d}", d)
        if want.startswith("re:"):
            assert re.search(want[3:], text), f"{case.id}: no match for {want[3:]!r} in\n{text}"
        else:
            assert want in text, f"{case.id}: {want!r} not in\n{text}"
    for rel in case.absent:
        assert not os.path.exists(os.path.join(d, rel)), f"{case.id}: {rel} was left behind\n{text}"
    for rel, data in case.keep.items():
        with open(os.path.join(d, rel), "rb") as f:
            assert f.read() == data, f"{case.id}: {rel} was changed"
    leftovers = [n for root, _, names in os.walk(d) for n in names if n.endswith(".tmp") or ".tmp." in n]
    assert not leftovers, f"{case.id}: temporary files left: {leftovers}"


def prepare(case, tmp_path):
    d = str(tmp_path)
    for rel, data in case.keep.items():
        os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
        with open(os.path.join(d, rel), "wb") as f:
            f.write(data)
    argv = case.build(d)
    for rel, data in case.keep.items():   # a build may rewrite them: what counts is what was there
        with open(os.path.join(d, rel), "wb") as f:
            f.write(data)
    return d, argv


def test_corpus_is_large_and_covers_every_entry_point():
    tools = {c.tool for c in CASES}
    assert len(CASES) >= 200
    assert {"info", "Net", "time", "draw_net", "upgrade", "convert_caffemodel", "read_weights",
            "convert_imageset", "compute_image_mean", "solve", "evaluate"} <= tools
    assert len(BY_ID) == len(CASES)            # ids are unique
    assert [c.id for c in cases()] == [c.id for c in CASES]   # and the same every time


@pytest.mark.parametrize("cid", list(BY_ID))
def test_case(cid, tmp_path, monkeypatch):
    case = BY_ID[cid]
    d, argv = prepare(case, tmp_path)
    if case.syspath:
        monkeypatch.syspath_prepend(d)
    check(case, d, run(case.tool, *argv, env=case.env))


# One case per command-line tool through a real interpreter (the rest run in-process).
SUBPROCESS = ["prototxt/conv_stride_0/info", "prototxt/top_two_producers/draw_net",
              "prototxt/memory_huge_num_output/time", "v1/v1_unknown_enum/upgrade",
              "caffemodel/blob_neg_shape/convert_caffemodel", "solver/snapshot_under_file/solve",
              "imageset/header_claims_too_many_pixels/convert_imageset", "mean/not_a_datum/compute_image_mean",
              "evaluate/weights_damaged/evaluate"]


@pytest.mark.parametrize("cid", SUBPROCESS)
def test_case_as_a_subprocess(cid, tmp_path):
    case = BY_ID[cid]
    d, argv = prepare(case, tmp_path)
    check(case, d, run_subprocess(case.tool, *argv))
