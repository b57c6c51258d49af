"""Shared helpers for the data tests: small real photos (scikit-image samples) written to disk,
and damaged files made on purpose."""
import os
import subprocess
import sys

import cv2
import numpy as np
import skimage.data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable


def photo(name, size=None):
    """A sample photo as BGR (or grey, HxW) uint8, optionally resized to (w, h)."""
    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = img[:, :, :3][:, :, ::-1]
    img = np.ascontiguousarray(img)
    if size:
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img


COLOR_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def write_photos(folder, size=(72, 56), names=COLOR_PHOTOS, ext=".jpg"):
    os.makedirs(folder, exist_ok=True)
    paths = []
    for n in names:
        p = os.path.join(folder, n + ext)
        cv2.imwrite(p, photo(n, size))
        paths.append(p)
    return paths


def run_tool(name, *args, check=True):
    r = subprocess.run([PY, os.path.join(ROOT, "tools", name + ".py"), *map(str, args)],
                       capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"{name} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def read_lmdb(path):
    """{key: value} with the plain lmdb package (what upstream Caffe's reader sees)."""
    import lmdb
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        out = dict(txn.cursor().iternext())
    env.close()
    return out


class ToolResult:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def call_tool(name, *args, check=True):
    """Run tools/<name>.py's main(argv) in this process (no interpreter start-up), through
    errors.run_cli as the command line does; returns returncode/stdout/stderr."""
    import contextlib
    import importlib.util
    import io

    from vgg_caffe.errors import run_cli
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(ROOT, "tools", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run_cli(lambda: module.main([str(a) for a in args]))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    r = ToolResult(code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"{name} failed ({code}):\n{r.stdout}\n{r.stderr}")
    return r
