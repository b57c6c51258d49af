"""Per-image transforms: Caffe's DataTransformer and the VGG paper's augmentation.

Everything here is a pure function of the image and of random draws made by `vgg_draws` /
`caffe_draws` from vgg_caffe.rng keyed by (seed, iteration, sample index in the global batch), so a
sample is the same whichever process, worker or batch slice computes it.

Caffe's DataTransformer::Transform (data_transformer.cpp):
  do_mirror = mirror && Rand(2)   (in TEST as well: Caffe does not look at the phase for mirror)
  crop: TRAIN h_off = Rand(H - crop + 1), w_off = Rand(W - crop + 1); TEST centre, (H - crop) / 2
  top[c, h, w'] = (x[c, h_off + h, w_off + w] - mean) * scale, w' = crop - 1 - w when mirrored,
  mean = mean_file blob at the UNcropped position, or mean_value per channel (one value = all).

The VGG paper (Sec. 3.1): isotropically rescale so the smallest side is S (fixed, or per image
uniformly in [S_min, S_max] for scale jitter), take a random 224x224 crop, flip horizontally at
random, and shift the colours as AlexNet does (PCA lighting: add sum_i alpha_i lambda_i p_i to
every RGB pixel, alpha_i ~ N(0, sigma)); the mean pixel is subtracted. In TEST: S = S_min, centre
crop, no flip, no colour shift.

The default rescale + crop gives exactly the pixels of cv2.resize of the whole image cropped, but
computes only the top-left part of the rescale it needs (image.resize_corner). `vgg_plan` works the
geometry out from the stored size alone, so that a batch can be planned from the records' headers
before anything is decoded; `vgg_apply` then crops; `vgg_crop` is the two in one.

Speed options of `vgg_crop` (off by default; bench/bench_data_speed.py measures them):
  fast_resize  the crop is resized from a small window of the decoded image, not from the image
               up to the crop's far corner: cv2.resize of the window with the whole image's scale.
               The window's origin is chosen (starting up to ALIGN_MAX rows or columns of output
               before the crop) so that its sample positions are the exact ones, (x + 0.5) * W / w
               - 0.5 for output column x, shifted by at most ALIGN_TOL = 1/64 decoded pixel, the
               same for the whole crop. Where there is no such window (a few % of crops; or should
               OpenCV's resize of it come out short), the crop is sampled by one bilinear warp
               (cv2.warpAffine, replicated borders, the flip folded in), which rounds each position
               to 1/32 pixel (fast_resize used to sample every crop so: 0.15 grey levels from the
               default on average). Pixels differ from the default by rounding: a mean of about
               0.09 grey levels and at most a few levels at sharp edges (real photos, S in [256,
               512]).
  reduced      the image was decoded at 1/f of its stored size (vgg_caffe.data.image.decode,
               reduce=f, chosen so that S * f <= the smaller stored side): the geometry (S,
               crop offsets) is still computed on the stored size, and the pixels are libjpeg's
               DCT-domain downscale followed by the bilinear one, a pixel-level difference from
               decoding at full size (the block mean instead of bilinear samples: less aliasing).
"""
import cv2
import numpy as np

from .. import rng
from . import image

# ImageNet RGB covariance eigen-decomposition on 0..1 pixels (AlexNet; as used by fb.resnet.torch).
# Columns of EIGVEC are the eigenvectors p_i, matching EIGVAL's order.
EIGVAL = np.array([0.2175, 0.0188, 0.0045])
EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                   [-0.5808, -0.0045, -0.8140],
                   [-0.5836, -0.6948, 0.4203]])
# fast_resize's window: the largest shift from the exact sample positions, in decoded pixels
# (the warp it replaces rounds each position by up to 1/64), and the most rows or columns resized
# in front of the crop to find such a window (a window row or column is found within 32 tries
# on average; the window costs (crop + o_y) * (crop + o_x) output pixels).
ALIGN_TOL = 1 / 64
ALIGN_MAX = 128


def crop_offset(size, crop, u, train):
    """Caffe's crop offset along one axis: Rand(size - crop + 1) in TRAIN, centre in TEST."""
    if not train:
        return (size - crop) // 2
    return min(int(u * (size - crop + 1)), size - crop)


# -- VGG ---------------------------------------------------------------------------------------

def vgg_draws(seed, iteration, j, train, scale, mirror, color_shift):
    """The random choices for sample j of the global batch at `iteration` (a dict).

    The same numbers are always drawn in the same order, used or not, so changing one option
    does not reshuffle the others.
    """
    g = rng.numpy_rng(seed, "VGGData", iteration, j)
    s = int(g.integers(scale[0], scale[1] + 1))
    u = g.random(3)
    alpha = g.standard_normal(3)
    if not train:
        return {"S": int(scale[0]), "uy": 0.0, "ux": 0.0, "flip": False, "alpha": np.zeros(3)}
    return {"S": s, "uy": float(u[0]), "ux": float(u[1]), "flip": bool(mirror and u[2] < 0.5),
            "alpha": alpha * color_shift}


def color_shift_bgr(alpha):
    """The PCA colour shift in 0..255 units, BGR order: 255 * sum_i alpha_i lambda_i p_i."""
    rgb = 255.0 * EIGVEC @ (np.asarray(alpha, np.float64) * EIGVAL)
    return rgb[::-1].copy()


def color_shifts_bgr(alphas):
    """color_shift_bgr of each row of an (N, 3) array of alphas, in one product: (N, 3) BGR."""
    rgb = 255.0 * (np.asarray(alphas, np.float64) * EIGVAL) @ EIGVEC.T
    return np.ascontiguousarray(rgb[:, ::-1])


def vgg_sample(img, draws, crop, train):
    """(uint8 crop (3, crop, crop), BGR colour shift (3,)) of an (H, W, C) uint8 image."""
    out = vgg_crop(img, draws, crop, train)
    return np.ascontiguousarray(out.transpose(2, 0, 1)), color_shift_bgr(draws["alpha"])


def vgg_crop(img, draws, crop, train, stored=None, reduced=1, fast_resize=False):
    """The (crop, crop, 3) uint8 crop, flipped if drawn, of `img` rescaled to smallest side S
    (a view, not necessarily contiguous, when not flipped).

    stored, reduced: `img` is the decode at 1/reduced of an image stored at (H, W) = stored
    (its size image.reduced_size(H, W, reduced)); S and the crop offsets are computed on the
    stored size, so the same draws crop the same region whichever way the image was decoded.
    """
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return vgg_apply(img, vgg_plan(stored or img.shape[:2], draws, crop, train, reduced, fast_resize))


def vgg_plan(stored, draws, crop, train, reduced=1, fast_resize=False):
    """The geometry of vgg_crop for an image stored at (H, W) = stored, before it is decoded (the
    layer plans a batch from the records' headers first: see vgg_layer.VGGSampler.samples)."""
    height, width = stored
    h, w = image.min_side_size(height, width, draws["S"])
    y = crop_offset(h, crop, draws["uy"], train)
    x = crop_offset(w, crop, draws["ux"], train)
    if not fast_resize:
        return "corner", (h, w, y, x), crop, draws["flip"], None
    # Decoded pixels per output pixel (the decode is the stored image reduced by `reduced`).
    sy, sx = height / h / reduced, width / w / reduced
    rows = _window(y, sy, -(-height // reduced), crop)
    cols = _window(x, sx, -(-width // reduced), crop)
    if rows and cols:
        return "window", (rows, cols, 1 / sy, 1 / sx), crop, draws["flip"], (sy, sx, y, x)
    return "warp", _warp_matrix(sy, sx, y, x, crop, draws["flip"]), crop, draws["flip"], None


def plan_rows(plan, height):
    """How many of the top rows of a decode `height` rows high the crop `plan` reads (all of
    them for a warp): a decode may stop there (image.decode_top)."""
    kind, how, crop = plan[:3]
    if kind == "corner":
        h, _, y, _ = how
        return min(height, image.corner_rows(height, h, y + crop))
    if kind == "window":
        _, r0, nr = how[0]
        return min(height, r0 + nr)
    return height


def vgg_apply(img, plan, valid_rows=None):
    """The crop of an (H', W', 3) uint8 `img` as `plan` (vgg_plan) says. valid_rows: only img's
    rows [0, valid_rows) hold pixels, at least plan_rows(plan, H'); None when the crop would
    read others after all (a window that came out short: the warp reads anywhere)."""
    kind, how, crop, flip, warp = plan
    partial = valid_rows is not None and valid_rows < img.shape[0]
    if kind == "corner":
        # Only the top-left part of the rescaled image up to the crop's far corner is computed
        # (the same pixels, see image.resize_corner); the crop is a view of it.
        h, w, y, x = how
        out = image.resize_corner(img, h, w, y + crop, x + crop, valid_rows)
        if out is None:
            return None
        out = out[y:, x:]
        return cv2.flip(out, 1) if flip else out
    if kind == "window":
        (oy, r0, nr), (ox, c0, nc), fy, fx = how
        out = image.resize_part(img, r0, c0, nr, nc, fy, fx, oy + crop, ox + crop)
        if out is not None:
            out = out[oy:oy + crop, ox:ox + crop]
            return cv2.flip(out, 1) if flip else out
        how = _warp_matrix(*warp, crop, flip)   # a window that came out short or copied
    if partial:
        return None
    return cv2.warpAffine(img, how, (crop, crop), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _window(y, s, size, crop):
    """(o, r0, n): output rows [o, o + crop) of source rows [r0, r0 + n) resized by 1 / s are
    rows [y, y + crop) of the whole image resized, shifted by at most ALIGN_TOL source pixels;
    None if no o <= ALIGN_MAX does. Window row i samples r0 + (i + 0.5) * s - 0.5, and row
    y + i - o of the whole image (y + i - o + 0.5) * s - 0.5: they agree when r0 = (y - o) * s."""
    top = 0.5 / s - 0.5   # row o reads no row above the window (clamped there) unless r0 = 0
    for o in range(min(y, ALIGN_MAX) + 1):
        p = (y - o) * s
        r0 = int(p + 0.5)
        if -ALIGN_TOL <= r0 - p <= ALIGN_TOL and (o >= top or r0 == 0):
            return o, r0, min(size - r0, int((o + crop) * s) + 3)
    return None


def _warp_matrix(sy, sx, y, x, crop, flip):
    """The inverse map of the warp sampling rows [y, y+crop) and columns [x, x+crop) of the
    rescaled image from the decode, sy x sx decoded pixels per output pixel."""
    # Output pixel (i, j) sits at (y + i + 0.5) * H / h - 0.5 in stored pixels; in a decode
    # reduced by f (one pixel per f x f block) stored pixel u is at (u + 0.5) / f - 0.5.
    ty = (y + 0.5) * sy - 0.5
    if flip:   # output column j is crop column crop - 1 - j
        return np.array([[-sx, 0.0, (x + crop - 0.5) * sx - 0.5], [0.0, sy, ty]])
    return np.array([[sx, 0.0, (x + 0.5) * sx - 0.5], [0.0, sy, ty]])


# -- Caffe -------------------------------------------------------------------------------------

def caffe_draws(seed, tag, iteration, j):
    g = rng.numpy_rng(seed, tag, iteration, j)
    return g.random(3)  # mirror coin, h offset, w offset


def caffe_transform(img, draws, train, crop=0, mirror=False, mean=None, scale=1.0):
    """Caffe's DataTransformer on an (H, W, C) array -> float32 (C, h, w).

    `mean` is None, a (C,) array of mean values, or a (C, H, W) mean image.
    """
    x = np.asarray(img, np.float32).transpose(2, 0, 1)
    c, h, w = x.shape
    do_mirror = bool(mirror and draws[0] < 0.5)
    if mean is not None:
        mean = np.asarray(mean, np.float32)
        x = x - (mean[:, None, None] if mean.ndim == 1 else mean)
    if crop:
        y0 = crop_offset(h, crop, draws[1], train)
        x0 = crop_offset(w, crop, draws[2], train)
        x = x[:, y0:y0 + crop, x0:x0 + crop]
    if do_mirror:
        x = x[:, :, ::-1]
    if scale != 1:
        x = x * np.float32(scale)
    return np.ascontiguousarray(x, np.float32)
