"""tools/extract_features.py, run as a subprocess on a small net over an LMDB of real photos.

The LMDB it writes is read back with the lmdb module and protobuf's own Datum (not our reader):
Caffe's 10-digit keys, channels/height/width = the blob's legacy C, H, W, float_data = the blob of
that image, which OpenCV 4.x's Caffe importer computes independently from the deploy twin of the
net on the same centre crops. The 4th mini-batch wraps around the 6-image database, as Caffe's
data layer does. --format npy / hdf5 hold the same values; bad arguments are one-line errors.
"""
import h5py
import lmdb
import numpy as np
import pytest
from tool_nets import (
    BATCH,
    PHOTOS,
    deploy,
    make_model,
    opencv_forward,
    photos,
    preprocess,
    run,
    train_val,
)

from vgg_caffe.proto import pb


def extract(args, cwd):
    return run(args, cwd, script="extract_features.py")


def read_lmdb(path):
    """[(key, Datum)] in key order, read with py-lmdb and protobuf directly."""
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            out = []
            for key, value in txn.cursor():
                d = pb.Datum()
                d.ParseFromString(value)
                out.append((key.decode(), d))
            return out
    finally:
        env.close()


def opencv_features(tmp_path, weights, count):
    """relu2's output (the blob "fc2" after its in-place ReLU) and pool1, per image index 0..count-1."""
    dp = tmp_path / "ref_deploy.prototxt"
    dp.write_text(deploy(batch=len(PHOTOS)))
    blob = np.stack([preprocess(img) for img in photos()])
    ref = opencv_forward(dp, weights, blob, ["relu2", "pool1"])
    rows = [i % len(PHOTOS) for i in range(count)]
    return ref["relu2"][rows], ref["pool1"][rows]


def test_lmdb_records_match_opencv(tmp_path):
    tv, _, weights = make_model(tmp_path)
    proc = extract([weights, tv, "fc2,pool1", f"{tmp_path / 'fc2_lmdb'},{tmp_path / 'pool1_lmdb'}", 4, "lmdb"],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr
    n = 4 * BATCH
    assert f"Extracted features of {n} query images for feature blob fc2" in proc.stderr
    assert "Successfully extracted the features!" in proc.stderr
    fc2, pool1 = opencv_features(tmp_path, weights, n)
    assert fc2.min() == 0 and fc2.max() > 0                       # the ReLU acted (in place, as Caffe)
    for name, ref, chw in (("fc2", fc2, (16, 1, 1)), ("pool1", pool1, (6, 12, 12))):
        records = read_lmdb(tmp_path / f"{name}_lmdb")
        assert [k for k, _ in records] == [f"{i:010d}" for i in range(n)]
        for i, (_, d) in enumerate(records):
            assert (d.channels, d.height, d.width) == chw
            assert not d.data and not d.encoded and d.label == 0
            np.testing.assert_allclose(np.array(d.float_data, np.float32), ref[i].ravel(), rtol=1e-4, atol=1e-4)
    # wrap-around: images 6 and 7 are images 0 and 1 again
    again = read_lmdb(tmp_path / "fc2_lmdb")
    assert list(again[6][1].float_data) == list(again[0][1].float_data)


def test_npy_and_hdf5_formats(tmp_path):
    tv, _, weights = make_model(tmp_path)
    proc = extract([weights, tv, "fc3,pool1,label", "fc3.npy,pool1.npy,label.npy", 3, "--format", "npy"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = extract([weights, tv, "fc3,pool1", "f.h5,p.h5", 3, "CPU", "--format", "hdf5"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    dp = tmp_path / "ref_deploy.prototxt"
    dp.write_text(deploy(batch=len(PHOTOS)))
    ref = opencv_forward(dp, weights, np.stack([preprocess(img) for img in photos()]), ["fc3", "pool1"])
    fc3, pool1 = np.load(tmp_path / "fc3.npy"), np.load(tmp_path / "pool1.npy")
    assert fc3.shape == (6, 7) and pool1.shape == (6, 6, 12, 12) and fc3.dtype == np.float32
    np.testing.assert_allclose(fc3, ref["fc3"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pool1, ref["pool1"], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(np.load(tmp_path / "label.npy"), [0, 1, 2, 3, 4, 5])
    with h5py.File(tmp_path / "f.h5", "r") as h:
        np.testing.assert_array_equal(h["fc3"][()], fc3)
    with h5py.File(tmp_path / "p.h5", "r") as h:
        np.testing.assert_array_equal(h["pool1"][()], pool1)


def test_commits_past_1000_records(tmp_path):
    """1250 records: the 1000-record commit and the final one both land, keys stay in order."""
    tv, _, weights = make_model(tmp_path)
    tv.write_text(train_val(tmp_path / "photos_lmdb", batch=250))
    proc = extract([weights, tv, "fc3", tmp_path / "out_lmdb", 5], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Extracted features of 1000 query images for feature blob fc3" in proc.stderr
    records = read_lmdb(tmp_path / "out_lmdb")
    assert len(records) == 1250 and records[-1][0] == "0000001249"
    assert list(records[1249][1].float_data) == list(records[1249 % 6][1].float_data)


@pytest.mark.parametrize("case, message", [
    ("leveldb", "LevelDB is not supported"),
    ("counts", "2 blob name(s) but 1 database name(s)"),
    ("unknown", "unknown feature blob name fc9"),
    ("exists", "already exists"),
    ("input", "must come from data layers"),
])
def test_errors(tmp_path, case, message):
    tv, dp, weights = make_model(tmp_path)
    args = {"leveldb": [weights, tv, "fc3", "o", 1, "leveldb"],
            "counts": [weights, tv, "fc3,fc2", "o", 1],
            "unknown": [weights, tv, "fc9", "o", 1],
            "exists": [weights, tv, "fc3", tmp_path / "photos_lmdb", 1],
            "input": [weights, dp, "fc3", "o", 1]}[case]
    proc = extract(args, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
