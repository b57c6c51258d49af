"""tools/classify.py, run as a subprocess: a small VGG (vgg_caffe.vgg.netgen, configuration A at
1/16 width, 32x32 input, 10 classes, He-initialised weights) classifies real photos from
skimage.data saved as JPEG and PNG (colour, grayscale and RGBA, all sizes).

The reference is OpenCV 4.x's Caffe importer on the same deploy prototxt and weights, fed by
cv2.dnn.blobFromImage (imread as colour, bilinear resize, minus the per-channel mean of the mean
.binaryproto, as cpp_classification subtracts it); the top-5 lines, the --csv rows and the --json
records must name the same classes with the same scores. Bad input is a one-line error.
"""
import csv
import json
import re

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from tool_nets import run

from vgg_caffe.net import Net
from vgg_caffe.proto import pb
from vgg_caffe.vgg import netgen

CLASSES = 10


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classify")
    paths = netgen.write_all(str(tmp / "nets"), "A", width_div=16, crop=32, num_classes=CLASSES)
    deploy = paths["deploy"]
    net = Net(deploy)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for blobs in net.params.values():
            w, b = blobs
            fan_in = w[0].numel()
            w.copy_(torch.randn(w.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
        net.params["fc8"][0].mul_(0.01)      # 0..255 inputs: keep the logits near unit size
    weights = tmp / "vgg_a_small.caffemodel"
    net.save(str(weights))
    r = np.random.RandomState(1)
    mean = (np.array([104.0, 117.0, 123.0])[:, None, None] + r.uniform(-20, 20, (3, 32, 32))).astype(np.float32)
    blob = pb.BlobProto(num=1, channels=3, height=32, width=32)
    blob.data.extend(mean.ravel().tolist())
    (tmp / "mean.binaryproto").write_bytes(blob.SerializeToString())
    (tmp / "synset_words.txt").write_text("".join(f"n{k:08d} class {k}, alias {k}\n" for k in range(CLASSES)))
    images = []
    for name, ext in (("chelsea", "jpg"), ("coffee", "png"), ("astronaut", "jpg"), ("rocket", "png")):
        path = tmp / f"{name}.{ext}"
        cv2.imwrite(str(path), np.ascontiguousarray(getattr(skimage.data, name)()[:, :, ::-1]))
        images.append(path)
    cv2.imwrite(str(tmp / "camera.png"), skimage.data.camera())            # one channel
    logo = skimage.data.logo()                                               # RGBA
    cv2.imwrite(str(tmp / "logo.png"), np.ascontiguousarray(logo[:, :, [2, 1, 0, 3]]))
    images += [tmp / "camera.png", tmp / "logo.png"]
    return dict(dir=tmp, deploy=deploy, weights=weights, mean=tmp / "mean.binaryproto", mean_pixel=mean.mean(axis=(1, 2)),
                labels=tmp / "synset_words.txt", images=images)


def reference(m, mean_pixel, top=5):
    """[(label, score)] best first per image, from OpenCV's forward of the deploy net."""
    net = cv2.dnn.readNetFromCaffe(str(m["deploy"]), str(m["weights"]))
    out = []
    for path in m["images"]:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        net.setInput(cv2.dnn.blobFromImage(img, 1.0, (32, 32), tuple(float(v) for v in mean_pixel), swapRB=False))
        prob = net.forward("prob").reshape(-1).astype(np.float64)
        order = np.argsort(-prob)
        assert (prob[order[:top]] - prob[order[1:top + 1]]).min() > 1e-4, "near tie: the ranking would be fragile"
        out.append([(f"n{k:08d} class {k}, alias {k}", prob[k]) for k in order[:top]])
    return out


def parse(stdout):
    """{image: [(label, score)]} from the printed blocks."""
    result, current = {}, None
    for line in stdout.splitlines():
        m = re.fullmatch(r"---------- Prediction for (.+) ----------", line)
        if m:
            current = result.setdefault(m[1], [])
            continue
        m = re.fullmatch(r'(\d+\.\d{4}) - "(.*)"', line)
        assert m and current is not None, f"unexpected line {line!r}"
        current.append((m[2], float(m[1])))
    return result


def check(got, want):
    assert [label for label, _ in got] == [label for label, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1.5e-4)


def classify(m, *extra, mean=None):
    return run([m["deploy"], m["weights"], mean or m["mean"], m["labels"], *m["images"], *extra], m["dir"],
               script="classify.py")


def test_top5_matches_opencv(model):
    proc = classify(model, "--csv", model["dir"] / "out.csv", "--json", model["dir"] / "out.json", "--batch-size", 4)
    assert proc.returncode == 0, proc.stderr
    printed = parse(proc.stdout)
    want = reference(model, model["mean_pixel"])
    assert list(printed) == [str(p) for p in model["images"]]
    for path, expected in zip(model["images"], want):
        check(printed[str(path)], expected)
    # --json: the same predictions, unrounded
    records = json.loads((model["dir"] / "out.json").read_text())
    assert [r["image"] for r in records] == [str(p) for p in model["images"]]
    for r, expected in zip(records, want):
        assert [p["rank"] for p in r["predictions"]] == [1, 2, 3, 4, 5]
        assert [p["index"] for p in r["predictions"]] == [int(lbl[1:9]) for lbl, _ in expected]
        check([(p["label"], p["score"]) for p in r["predictions"]], expected)
        np.testing.assert_allclose([p["score"] for p in r["predictions"]], [s for _, s in expected], rtol=1e-4)
    # --csv: one row per image and rank
    with open(model["dir"] / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 * len(model["images"])
    for r in rows:
        record = records[[str(p) for p in model["images"]].index(r["image"])]
        p = record["predictions"][int(r["rank"]) - 1]
        assert (int(r["index"]), r["label"]) == (p["index"], p["label"]) and float(r["score"]) == p["score"]


def test_mean_pixel_values_and_top(model):
    pixel = model["mean_pixel"]
    text = ",".join(f"{v:.9g}" for v in pixel)
    proc = classify(model, "--top", 3, mean=text)
    assert proc.returncode == 0, proc.stderr
    printed = parse(proc.stdout)
    for path, expected in zip(model["images"], reference(model, pixel.astype(np.float32), top=3)):
        check(printed[str(path)], expected)
    none = classify(model, mean="none")
    assert none.returncode == 0, none.stderr
    for path, expected in zip(model["images"], reference(model, np.zeros(3))):
        check(parse(none.stdout)[str(path)], expected)


def test_errors(model, tmp_path):
    short = tmp_path / "labels.txt"
    short.write_text("cat\ndog\n")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    for args, message in [
        ([model["deploy"], model["weights"], model["mean"], short, model["images"][0]],
         "labels.txt: 2 labels but the net's output has 10 classes"),
        ([model["deploy"], model["weights"], model["mean"], model["labels"], broken], "broken.jpg: unable to decode image"),
        ([model["deploy"], model["weights"], "1,2", model["labels"], model["images"][0]],
         "mean 1,2: 2 channel value(s) but the net takes 3 channels"),
    ]:
        proc = run(args, tmp_path, script="classify.py")
        assert proc.returncode == 1, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr


def test_mean_json_of_compute_image_mean(model, tmp_path):
    # compute_image_mean writes only mean.json when its records differ in size (--min_side)
    pixel = np.array([101.5, 120.25, 99.0])
    path = tmp_path / "mean.json"
    path.write_text(json.dumps({"mean_pixel_bgr": pixel.tolist(), "records": 4}))
    proc = classify(model, mean=path)
    assert proc.returncode == 0, proc.stderr
    for img, expected in zip(model["images"], reference(model, pixel.astype(np.float32))):
        check(parse(proc.stdout)[str(img)], expected)
    bad = tmp_path / "bad.json"
    bad.write_text('{"records": 4}')
    proc = classify(model, mean=bad)
    assert proc.returncode == 1 and "bad.json: expected compute_image_mean's JSON" in proc.stderr
    assert "Traceback" not in proc.stderr
