"""VGGData against a hand-written twin of the paper's augmentation, its keyed randomness (slices,
worker processes), and running as a `type: "Python"` layer inside Net."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

from datatest_util import write_photos
from vgg_caffe import Net
from vgg_caffe.data import transforms
from vgg_caffe.data.convert import Options, convert_imageset
from vgg_caffe.errors import CaffeError

MEAN = [103.939, 116.779, 123.68]
NAMES = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vgg")
    root = tmp / "imgs"
    write_photos(root, size=(80, 60))
    (tmp / "list.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(NAMES)))
    convert_imageset(str(root), str(tmp / "list.txt"), str(tmp / "db"), Options(encoded=True),
                     progress=False, log=lambda *a: None)
    return tmp


def prototxt(source, **cfg):
    cfg = {"source": str(source), "batch_size": 6, "scale": [48, 64], "crop_size": 40, "mirror": True,
           "color_shift": 0.1, "mean_value": MEAN, **cfg}
    return ('layer { name: "data" type: "Python" top: "data" top: "label" python_param { '
            f'module: "vgg_caffe.data.vgg_layer" layer: "VGGData" param_str: \'{json.dumps(cfg)}\' }} }}\n')


def twin(img, S, uy, ux, flip, alpha, crop):
    """The paper's augmentation written out independently: isotropic rescale (smaller side S,
    bilinear), crop at floor(u * (size - crop + 1)), flip, + 255 * sum_i alpha_i lambda_i p_i in
    RGB (p_i the i-th column), minus the BGR mean."""
    h, w = img.shape[:2]
    nh, nw = (S, int(round(w * S / h))) if h <= w else (int(round(h * S / w)), S)
    r = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    y, x = int(np.floor(uy * (nh - crop + 1))), int(np.floor(ux * (nw - crop + 1)))
    out = r[y:y + crop, x:x + crop]
    if flip:
        out = out[:, ::-1]
    lam = np.array([0.2175, 0.0188, 0.0045])
    P = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])
    shift_rgb = 255 * sum(alpha[i] * lam[i] * P[:, i] for i in range(3))
    out = out + shift_rgb[::-1] - np.array(MEAN)
    return out.transpose(2, 0, 1)


def test_train_batch_matches_twin(db):
    net = Net(prototxt(db / "db"), "TRAIN")
    assert net.blob_shapes["data"] == (6, 3, 40, 40) and net.blob_shapes["label"] == (6,)
    layer = net.layer("data")
    data, label = layer.batch(3)
    assert data.dtype == torch.float32 and label.dtype == torch.float32
    for j in range(6):
        g = 3 * 6 + j  # sequential through the DB, wrapping
        assert label[j] == g % 4
        img = cv2.imread(str(db / "imgs" / NAMES[g % 4]))
        d = transforms.vgg_draws(0, 3, j, True, [48, 64], True, 0.1)
        assert 48 <= d["S"] <= 64
        ref = twin(img, d["S"], d["uy"], d["ux"], d["flip"], d["alpha"], 40)
        np.testing.assert_allclose(data[j].numpy(), ref, atol=2e-4)
    # The net feeds the same batch from its data layer.
    net.iteration = 3
    net()
    assert torch.equal(net.blobs["data"], data)


def test_draw_statistics():
    draws = [transforms.vgg_draws(5, it, j, True, [256, 512], True, 0.1) for it in range(40) for j in range(50)]
    s = np.array([d["S"] for d in draws])
    assert s.min() == 256 and s.max() == 512 and abs(s.mean() - 384) < 5
    assert abs(np.mean([d["flip"] for d in draws]) - 0.5) < 0.05
    alpha = np.array([d["alpha"] for d in draws])
    assert np.allclose(alpha.std(axis=0), 0.1, atol=0.01) and np.allclose(alpha.mean(axis=0), 0, atol=0.01)
    assert transforms.vgg_draws(5, 1, 2, True, [256, 512], True, 0.1)["S"] == \
        transforms.vgg_draws(5, 1, 2, True, [256, 512], True, 0.1)["S"]


def test_test_phase_is_centre_crop_at_s_min(db):
    net = Net(prototxt(db / "db", batch_size=4), "TEST")
    data, label = net.layer("data").batch(0)
    for j in range(4):
        img = cv2.imread(str(db / "imgs" / NAMES[j]))
        h, w = 48, int(round(80 * 48 / 60))
        r = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float64)
        y, x = (h - 40) // 2, (w - 40) // 2
        ref = (r[y:y + 40, x:x + 40] - np.array(MEAN)).transpose(2, 0, 1)
        np.testing.assert_allclose(data[j].numpy(), ref, atol=1e-4)


def test_slices_and_worker_processes_identical(db):
    plain = Net(prototxt(db / "db", seed=11), "TRAIN").layer("data")
    full = [plain.batch(it) for it in range(3)]
    halves = [torch.cat([plain.batch(it, 0, 2)[0], plain.batch(it, 2, 6)[0]]) for it in range(3)]
    assert all(torch.equal(f[0], h) for f, h in zip(full, halves))
    other_seed = Net(prototxt(db / "db", seed=12), "TRAIN").layer("data").batch(0)
    assert not torch.equal(other_seed[0], full[0][0])
    pre = Net(prototxt(db / "db", seed=11, workers=2, prefetch=2), "TRAIN").layer("data")
    try:
        got = [pre.batch(it) for it in range(3)]
        pids = pre.loader.worker_pids()
        assert len(pids) == 2 and all(os.path.exists(f"/proc/{p}") for p in pids)
    finally:
        pre.close()
    for f, g in zip(full, got):
        assert torch.equal(f[0], g[0]) and torch.equal(f[1], g[1])
    assert not any(os.path.exists(f"/proc/{p}") for p in pids)   # terminated and reaped


def test_worker_errors_reach_the_caller(tmp_path):
    """With worker processes: a record that does not decode fails the batch with the layer's
    message naming the DB and key (raised in the worker, re-raised here), and a worker killed
    mid-run fails the next batch with a message instead of leaving it waiting."""
    import signal

    from vgg_caffe.data import datum
    from vgg_caffe.data import db as db_io

    w = db_io.Writer(str(tmp_path / "db"))
    jpeg = cv2.imencode(".jpg", np.full((60, 80, 3), 90, np.uint8))[1].tobytes()
    for i in range(6):
        w.put(f"{i:08d}".encode(), datum.from_encoded(jpeg, 0).SerializeToString())
    w.put(b"00000006", datum.from_encoded(b"\xff\xd8\xff" + bytes(50) + b"\xff\xd9", 0).SerializeToString())
    w.close()
    bad = Net(prototxt(tmp_path / "db", workers=2, prefetch=0, batch_size=7), "TRAIN").layer("data")
    try:
        with pytest.raises(CaffeError, match=r"db: key 00000006: encoded Datum does not decode"):
            bad.batch(0)
    finally:
        bad.close()
    layer = Net(prototxt(tmp_path / "db", workers=2, prefetch=0, batch_size=6), "TRAIN").layer("data")
    try:
        layer.batch(0)
        os.kill(layer.loader.worker_pids()[0], signal.SIGKILL)
        with pytest.raises(CaffeError, match="a data worker process died"):
            for it in range(1, 4):   # the pool notices the death within a batch or two
                layer.batch(it)
    finally:
        layer.close()


def test_bad_configuration(db, tmp_path):
    with pytest.raises(CaffeError, match="unknown param_str keys"):
        Net(prototxt(db / "db", scales=[1, 2]), "TRAIN")
    with pytest.raises(CaffeError, match="crop_size 40 must be positive and at most S_min = 32"):
        Net(prototxt(db / "db", scale=[32, 64]), "TRAIN")
    with pytest.raises(CaffeError, match="layer 'data'.*does not exist"):
        Net(prototxt(tmp_path / "nope"), "TRAIN")
    not_a_layer = prototxt(db / "db").replace('module: "vgg_caffe.data.vgg_layer" layer: "VGGData"',
                                              'module: "json" layer: "JSONDecoder"')
    with pytest.raises(CaffeError, match="only Layer subclasses are supported"):
        Net(not_a_layer, "TRAIN")


def test_raw_and_gray_records(db, tmp_path):
    """Raw Datums give what their encoded twins decode to; a grey DB is expanded to 3 channels."""
    convert_imageset(str(db / "imgs"), str(db / "list.txt"), str(tmp_path / "raw"), Options(),
                     progress=False, log=lambda *a: None)
    convert_imageset(str(db / "imgs"), str(db / "list.txt"), str(tmp_path / "gray"), Options(gray=True),
                     progress=False, log=lambda *a: None)
    enc = Net(prototxt(db / "db"), "TRAIN").layer("data").batch(2)
    raw = Net(prototxt(tmp_path / "raw"), "TRAIN").layer("data").batch(2)
    assert torch.equal(enc[0], raw[0]) and torch.equal(enc[1], raw[1])
    gray, _ = Net(prototxt(tmp_path / "gray", color_shift=0, mean_value=[0, 0, 0]), "TEST").layer("data").batch(0)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 0], gray[:, 2])
    g = cv2.imread(str(db / "imgs" / NAMES[0]), cv2.IMREAD_GRAYSCALE)
    r = cv2.resize(g, (64, 48), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(gray[0, 0].numpy(), r[4:44, 12:52].astype(np.float32))
