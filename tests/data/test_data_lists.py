"""make_imagenet_lists on fake ILSVRC-2012 and class-per-folder trees of real photos."""
import os

import numpy as np
import pytest

from datatest_util import call_tool as run_tool, write_photos

WNIDS = ["n02123045", "n01440764", "n03000134"]  # unsorted on purpose


def _lines(path):
    return [ln.rsplit(" ", 1) for ln in path.read_text().splitlines()]


@pytest.fixture
def ilsvrc(tmp_path):
    root = tmp_path / "ilsvrc"
    for w in WNIDS:
        write_photos(root / "train" / w, size=(16, 12), names=("astronaut", "coffee"), ext=".JPEG")
    # val image i (1-based) has the class of ILSVRC2012_ID truth[i-1]; IDs 1..3 = sorted wnids here
    # in a *different* order from the sorted one, to catch id/label confusion.
    id_to_wnid = {1: "n03000134", 2: "n01440764", 3: "n02123045"}
    truth = [3, 1, 2, 2]
    for i in range(1, 5):
        write_photos(root / "val", size=(16, 12), names=("chelsea",), ext=".JPEG")
        os.rename(root / "val" / "chelsea.JPEG", root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG")
    (tmp_path / "gt.txt").write_text("".join(f"{t}\n" for t in truth))
    (tmp_path / "synsets.txt").write_text("".join(f"{id_to_wnid[k]}\n" for k in (1, 2, 3)))
    label = {w: i for i, w in enumerate(sorted(WNIDS))}
    expected_val = [(f"ILSVRC2012_val_{i:08d}.JPEG", str(label[id_to_wnid[t]])) for i, t in enumerate(truth, 1)]
    return root, id_to_wnid, truth, expected_val


def test_imagenet_ground_truth_with_synsets(ilsvrc, tmp_path):
    root, id_to_wnid, truth, expected_val = ilsvrc
    out = tmp_path / "lists"
    run_tool("make_imagenet_lists", root, out, "--val_ground_truth", tmp_path / "gt.txt",
             "--synsets", tmp_path / "synsets.txt")
    train = _lines(out / "train.txt")
    assert len(train) == 6
    for path, label in train:
        wnid = path.split("/")[0]
        assert int(label) == sorted(WNIDS).index(wnid) and (root / "train" / path).exists()
    assert [tuple(x) for x in _lines(out / "val.txt")] == expected_val
    assert (out / "labels.txt").read_text().split() == sorted(WNIDS)


def test_imagenet_meta_mat_and_csv(ilsvrc, tmp_path):
    root, id_to_wnid, truth, expected_val = ilsvrc
    scipy_io = pytest.importorskip("scipy.io")
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    synsets = np.array([(np.array([[k]]), np.array([w]), np.array([f"words {w}"]), np.array([[0]]))
                        for k, w in id_to_wnid.items()], dtype=dtype)
    scipy_io.savemat(tmp_path / "meta.mat", {"synsets": synsets.reshape(-1, 1)})
    out = tmp_path / "mat"
    run_tool("make_imagenet_lists", root, out, "--val_ground_truth", tmp_path / "gt.txt",
             "--meta", tmp_path / "meta.mat")
    assert [tuple(x) for x in _lines(out / "val.txt")] == expected_val
    assert (out / "labels.txt").read_text().splitlines()[0] == "n01440764 words n01440764"
    csv = tmp_path / "val.csv"
    csv.write_text("ImageId,PredictionString\n" + "".join(
        f"ILSVRC2012_val_{i:08d},{id_to_wnid[t]} 1 2 3 4\n" for i, t in reversed(list(enumerate(truth, 1)))))
    out = tmp_path / "csv"
    run_tool("make_imagenet_lists", root, out, "--val_csv", csv)
    assert [tuple(x) for x in _lines(out / "val.txt")] == expected_val


def test_class_tree_split_is_seeded(tmp_path):
    root = tmp_path / "tree"
    for c in ("dogs", "cats"):
        write_photos(root / c, size=(16, 12), names=("astronaut", "chelsea", "coffee", "rocket", "camera"))
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 1), (b, 1), (c, 2)):
        run_tool("make_imagenet_lists", root, out, "--val_fraction", "0.4", "--seed", seed)
    assert (a / "val.txt").read_text() == (b / "val.txt").read_text()
    train, val = _lines(a / "train.txt"), _lines(a / "val.txt")
    assert len(train) == 6 and len(val) == 4
    assert sorted(p for p, _ in train + val) == sorted(f"{k}/{n}.jpg" for k in ("cats", "dogs")
                                                      for n in ("astronaut", "camera", "chelsea", "coffee", "rocket"))
    assert all(int(lbl) == ["cats", "dogs"].index(p.split("/")[0]) for p, lbl in train + val)
    assert sum(p.startswith("cats") for p, _ in val) == 2
    assert (a / "labels.txt").read_text() == "cats\ndogs\n"
    assert (a / "val.txt").read_text() != (c / "val.txt").read_text()  # (for these two seeds)
