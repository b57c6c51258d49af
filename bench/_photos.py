"""Real photos for the data benchmarks: scikit-image samples rescaled to ~500 px sides (ImageNet-like),
written as JPEG files (quality 95)."""
import os

import cv2
import numpy as np
import skimage.data

NAMES = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field")


def write(folder, longest=500):
    os.makedirs(folder, exist_ok=True)
    files = []
    for name in NAMES:
        fn = getattr(skimage.data, name, None)
        if fn is None:
            continue
        img = np.asarray(fn())
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = np.ascontiguousarray(img[:, :, :3][:, :, ::-1])
        h, w = img.shape[:2]
        s = longest / max(h, w)
        img = cv2.resize(img, (int(round(w * s)), int(round(h * s))), interpolation=cv2.INTER_AREA)
        path = os.path.join(folder, name + ".JPEG")
        cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        files.append(name + ".JPEG")
    return files
