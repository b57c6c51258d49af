"""Shared material of the tool tests (caffe CLI, extract_features, classify): real photos from
skimage.data, an LMDB of raw Datums holding them, a small hand-written net reading it (TEST: centre
crop, mean_value) with its deploy twin, and OpenCV 4.x's Caffe importer as the independent
runtime for that twin."""
import os
import subprocess
import sys

import cv2
import numpy as np
import skimage.data

from vgg_caffe.data import datum
from vgg_caffe.data.db import Writer
from vgg_caffe.net import Net

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
SIZE, CROP, CLASSES, BATCH = 32, 24, 7, 2
MEAN = (104.0, 117.0, 123.0)
SCALE = 0.02


def photos(size=SIZE):
    """The colour photos as BGR uint8, resized to size x size (what convert_imageset -resize stores)."""
    out = []
    for name in PHOTOS:
        rgb = getattr(skimage.data, name)()
        out.append(cv2.resize(np.ascontiguousarray(rgb[:, :, ::-1]), (size, size), interpolation=cv2.INTER_AREA))
    return out


def labels():
    return [i % CLASSES for i in range(len(PHOTOS))]


def make_lmdb(path):
    """An LMDB of raw Datums of the photos, keyed as convert_imageset keys them."""
    w = Writer(str(path))
    for i, (img, label) in enumerate(zip(photos(), labels())):
        w.put(f"{i:08d}_{PHOTOS[i]}.png", datum.from_image(img, label).SerializeToString())
    w.close()
    return path


def preprocess(img):
    """Caffe's TEST-phase DataTransformer by hand: centre crop, minus mean_value, times scale; CHW."""
    off = (SIZE - CROP) // 2
    crop = img[off:off + CROP, off:off + CROP].astype(np.float64)
    return ((crop - np.array(MEAN)) * SCALE).transpose(2, 0, 1).astype(np.float32)


BODY = f"""
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param {{ num_output: 6 kernel_size: 3 pad: 1
          weight_filler {{ type: "gaussian" std: 0.3 }} bias_filler {{ type: "uniform" min: -0.2 max: 0.2 }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param {{ pool: MAX kernel_size: 3 stride: 2 }} }}
layer {{ name: "fc2" type: "InnerProduct" bottom: "pool1" top: "fc2"
        inner_product_param {{ num_output: 16 weight_filler {{ type: "gaussian" std: 0.1 }}
          bias_filler {{ type: "uniform" min: -0.2 max: 0.2 }} }} }}
layer {{ name: "relu2" type: "ReLU" bottom: "fc2" top: "fc2" }}
layer {{ name: "fc3" type: "InnerProduct" bottom: "fc2" top: "fc3"
        inner_product_param {{ num_output: {CLASSES} weight_filler {{ type: "gaussian" std: 0.3 }}
          bias_filler {{ type: "uniform" min: -0.5 max: 0.5 }} }} }}
"""


def train_val(db, batch=BATCH):
    return f"""name: "tiny"
layer {{ name: "data" type: "Data" top: "data" top: "label"
        transform_param {{ crop_size: {CROP} mean_value: {MEAN[0]} mean_value: {MEAN[1]} mean_value: {MEAN[2]}
          scale: {SCALE} }}
        data_param {{ source: "{db}" batch_size: {batch} backend: LMDB }} }}
{BODY}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc3" bottom: "label" top: "loss" }}
layer {{ name: "accuracy" type: "Accuracy" bottom: "fc3" bottom: "label" top: "accuracy"
        include {{ phase: TEST }} }}
layer {{ name: "accuracy_top3" type: "Accuracy" bottom: "fc3" bottom: "label" top: "accuracy_top3"
        include {{ phase: TEST }} accuracy_param {{ top_k: 3 }} }}
"""


def deploy(batch=1, size=CROP):
    return f"""name: "tiny"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: {batch} dim: 3 dim: {size} dim: {size} }} }} }}
{BODY}
layer {{ name: "prob" type: "Softmax" bottom: "fc3" top: "prob" }}
"""


def make_model(tmp_path, seed=11):
    """train_val.prototxt over an LMDB of the photos, deploy.prototxt, and weights from the fillers."""
    db = make_lmdb(tmp_path / "photos_lmdb")
    (tmp_path / "train_val.prototxt").write_text(train_val(db))
    (tmp_path / "deploy.prototxt").write_text(deploy())
    Net(str(tmp_path / "deploy.prototxt"), seed=seed).save(str(tmp_path / "tiny.caffemodel"))
    return tmp_path / "train_val.prototxt", tmp_path / "deploy.prototxt", tmp_path / "tiny.caffemodel"


def opencv_forward(deploy_path, weights, blob, outputs):
    """OpenCV 4.x's Caffe importer run on an NCHW float32 batch: {name: array}."""
    net = cv2.dnn.readNetFromCaffe(str(deploy_path), str(weights))
    net.setInput(blob.astype(np.float32))
    return dict(zip(outputs, net.forward(list(outputs))))


def run(args, cwd, module=None, script=None, timeout=300):
    """A subprocess of this project's Python (`-m module` or a script under tools/)."""
    cmd = [sys.executable] + (["-m", module] if module else [os.path.join(ROOT, "tools", script)]) + list(map(str, args))
    return subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1"))


def glog_messages(text):
    """The messages of glog lines ('I1201 10:00:00.000000  1234 file.py:12] message')."""
    return [line.split("] ", 1)[1] for line in text.splitlines() if "] " in line and line[:1] in "IWEF"]
