"""caffe.io: pycaffe's image loading, input preprocessing and proto <-> array conversions.

Reproduces python/caffe/io.py:
- load_image(filename, color=True): skimage.io.imread as a float32 image in [0, 1], (H, W, 3)
  RGB, or (H, W, 1) intensity when color is False (colour files converted by skimage's
  rgb2gray); grey files are tiled to 3 channels when color is True; alpha is dropped.
- resize_image(im, (h, w), interp_order=1): skimage's resize of the image scaled to [0, 1] and
  back for 1 or 3 channels (without anti-aliasing, as the skimage pycaffe was written for), a
  constant image stays constant, other channel counts go through scipy.ndimage.zoom.
- oversample(images, (h, w)): the 10 crops: the four corners, the centre, and their mirrors.
- Transformer: preprocess = resize to the input's H x W, transpose, channel swap, raw scale,
  subtract mean, input scale; deprocess undoes them in reverse (not the resize).
- blobproto_to_array / array_to_blobproto, array_to_datum / datum_to_array,
  arraylist_to_blobprotovector_str / blobprotovector_str_to_arraylist.
Differences, all fixes: preprocess never writes into the caller's array; deprocess inverts the
channel swap and transpose exactly and only drops leading batch axes of size 1; datum_to_array
also decodes encoded Datums (to C x H x W, BGR as Caffe stores them).
"""
import numpy as np

from ..errors import CaffeError
from ..proto import caffe_pb2

# -- proto / datum / ndarray conversion ---------------------------------------------------------

def blobproto_to_array(blob, return_diff=False):
    """The data (or diff) of a BlobProto, shaped by its legacy num/channels/height/width when any
    is set, else by its shape."""
    values = blob.diff if return_diff else blob.data
    if return_diff and not len(values) and len(blob.double_diff):
        values = blob.double_diff
    elif not return_diff and not len(values) and len(blob.double_data):
        values = blob.double_data
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = tuple(blob.shape.dim)
    array = np.array(values)
    if array.size != int(np.prod(shape)):
        raise CaffeError(f"BlobProto: {array.size} values do not fill its shape {shape}")
    return array.reshape(shape)


def array_to_blobproto(arr, diff=None):
    """A BlobProto with `shape` set and the values (and diff) as floats."""
    arr = np.asarray(arr)
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(arr.shape)
    blob.data.extend(arr.astype(float).flat)
    if diff is not None:
        blob.diff.extend(np.asarray(diff).astype(float).flat)
    return blob


def arraylist_to_blobprotovector_str(arraylist):
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend([array_to_blobproto(a) for a in arraylist])
    return vec.SerializeToString()


arraylist_to_blobprotovecor_str = arraylist_to_blobprotovector_str  # pycaffe's historical spelling


def blobprotovector_str_to_arraylist(data):
    vec = caffe_pb2.BlobProtoVector()
    vec.ParseFromString(data)
    return [blobproto_to_array(b) for b in vec.blobs]


def array_to_datum(arr, label=0):
    """A Datum from a C x H x W array: uint8 arrays as bytes in `data`, others as float_data."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError(f"Incorrect array shape: a Datum holds a 3-d (C, H, W) array, got {arr.shape}")
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = arr.shape
    if arr.dtype == np.uint8:
        datum.data = np.ascontiguousarray(arr).tobytes()
    else:
        datum.float_data.extend(arr.astype(float).flat)
    datum.label = int(label)
    return datum


def datum_to_array(datum):
    """The C x H x W array of a Datum (uint8 for bytes, float for float_data); the label is
    datum.label."""
    if datum.encoded:
        from ..data import datum as datum_io

        return np.ascontiguousarray(datum_io.to_image(datum, where="Datum").transpose(2, 0, 1))
    shape = (datum.channels, datum.height, datum.width)
    if len(datum.data):
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).copy()
    return np.array(datum.float_data).astype(float).reshape(shape)


# -- preprocessing ------------------------------------------------------------------------------

class Transformer:
    """Prepares H x W x K images for a net's inputs. Transformer({name: blob shape})."""

    def __init__(self, inputs):
        self.inputs = {k: tuple(int(d) for d in v) for k, v in inputs.items()}
        self.transpose, self.channel_swap, self.raw_scale = {}, {}, {}
        self.mean, self.input_scale = {}, {}

    def _check(self, in_):
        if in_ not in self.inputs:
            raise CaffeError(f"{in_} is not one of the net inputs: {list(self.inputs)}")

    def preprocess(self, in_, data):
        """H' x W' x K image -> K x H x W input: resize, transpose, channel swap, raw scale,
        mean, input scale (each when set)."""
        self._check(in_)
        caffe_in = np.array(data, dtype=np.float32)   # a copy: the caller's image is left alone
        in_dims = self.inputs[in_][2:]
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        if in_ in self.transpose:
            caffe_in = caffe_in.transpose(self.transpose[in_])
        if in_ in self.channel_swap:
            caffe_in = caffe_in[list(self.channel_swap[in_]), :, :]
        if self.raw_scale.get(in_) is not None:
            caffe_in *= self.raw_scale[in_]
        if self.mean.get(in_) is not None:
            caffe_in -= self.mean[in_]
        if self.input_scale.get(in_) is not None:
            caffe_in *= self.input_scale[in_]
        return caffe_in

    def deprocess(self, in_, data):
        """Undo preprocess (except the resize): K x H x W (or 1 x K x H x W) -> H x W x K."""
        self._check(in_)
        decaf_in = np.array(data, dtype=np.float32)
        while decaf_in.ndim > 3 and decaf_in.shape[0] == 1:
            decaf_in = decaf_in[0]
        if self.input_scale.get(in_) is not None:
            decaf_in /= self.input_scale[in_]
        if self.mean.get(in_) is not None:
            decaf_in += self.mean[in_]
        if self.raw_scale.get(in_) is not None:
            decaf_in /= self.raw_scale[in_]
        if in_ in self.channel_swap:
            decaf_in = decaf_in[np.argsort(self.channel_swap[in_]), :, :]
        if in_ in self.transpose:
            decaf_in = decaf_in.transpose(np.argsort(self.transpose[in_]))
        return decaf_in

    def set_transpose(self, in_, order):
        """The axis order from the image's (H, W, K) to the input's, e.g. (2, 0, 1)."""
        self._check(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise CaffeError(f"Transpose order {tuple(order)} needs {len(self.inputs[in_]) - 1} axes, as many "
                             f"as the input {in_} {self.inputs[in_]} has after the batch axis")
        self.transpose[in_] = tuple(order)

    def set_channel_swap(self, in_, order):
        """The channel order after the transpose, e.g. (2, 1, 0) for RGB -> BGR."""
        self._check(in_)
        if len(order) != self.inputs[in_][1]:
            raise CaffeError(f"Channel swap {tuple(order)} needs {self.inputs[in_][1]} entries, one per channel "
                             f"of the input {in_} {self.inputs[in_]}")
        self.channel_swap[in_] = tuple(order)

    def set_raw_scale(self, in_, scale):
        """Scale applied before the mean: 255 for models trained on [0, 255] pixels."""
        self._check(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """A mean pixel (K,) or a mean image (K, H, W) (or (H, W)) to subtract."""
        self._check(in_)
        mean = np.asarray(mean)
        shape = self.inputs[in_]
        if mean.ndim == 1:
            if mean.shape[0] != shape[1]:
                raise ValueError(f"Mean channels incompatible with input: {mean.shape[0]} values for the "
                                 f"{shape[1]} channels of {in_} {shape}")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            ms = (1,) + mean.shape if mean.ndim == 2 else mean.shape
            if len(ms) != 3:
                raise ValueError(f"Mean shape invalid: {mean.shape} (expected (K,), (H, W) or (K, H, W))")
            if ms != shape[1:]:
                raise ValueError(f"Mean shape incompatible with input shape: {mean.shape} vs {shape[1:]} of {in_}")
            mean = mean.reshape(ms)
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """Scale applied after the mean (e.g. 0.017 for std normalisation)."""
        self._check(in_)
        self.input_scale[in_] = scale


# -- images -------------------------------------------------------------------------------------

def load_image(filename, color=True):
    """float32 image in [0, 1]: (H, W, 3) RGB, or (H, W, 1) when color is False."""
    import skimage
    import skimage.io

    try:
        img = skimage.io.imread(filename, as_gray=not color)
    except (OSError, ValueError) as e:
        raise CaffeError(f"{filename}: cannot read the image ({e})") from None
    img = skimage.img_as_float(img).astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
        if color:
            img = np.tile(img, (1, 1, 3))
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return img


def resize_image(im, new_dims, interp_order=1):
    """(H, W, K) -> (new_dims[0], new_dims[1], K) float32, interpolated (order 1: bilinear)."""
    from skimage.transform import resize

    im = np.asarray(im)
    new_dims = tuple(int(d) for d in new_dims)
    if im.shape[-1] in (1, 3):
        lo, hi = float(im.min()), float(im.max())
        if hi <= lo:   # a constant image: avoid dividing by zero
            return np.full(new_dims + (im.shape[-1],), lo, dtype=np.float32)
        unit = (im - lo) / (hi - lo)
        out = resize(unit, new_dims, order=interp_order, mode="constant", anti_aliasing=False)
        out = out * (hi - lo) + lo
    else:
        from scipy.ndimage import zoom

        scale = tuple(np.array(new_dims, float) / np.array(im.shape[:2], float))
        out = zoom(im, scale + (1,), order=interp_order)
    return out.astype(np.float32)


def oversample(images, crop_dims):
    """(10 * N, h, w, K) crops of N equally sized (H, W, K) images: per image the top-left,
    top-right, bottom-left, bottom-right and centre crops, then the same five mirrored."""
    images = [np.asarray(im) for im in images]
    h, w = (int(d) for d in crop_dims)
    height, width = images[0].shape[:2]
    if h > height or w > width:
        raise CaffeError(f"oversample: crops of {h}x{w} do not fit images of {height}x{width}")
    corners = [(y, x) for y in (0, height - h) for x in (0, width - w)]
    # the centre crop starts at centre - crop/2, truncated to an integer as pycaffe's int array does
    centre = (int(height / 2.0 - h / 2.0), int(width / 2.0 - w / 2.0))
    origins = corners + [centre]
    crops = np.empty((10 * len(images), h, w, images[0].shape[-1]), dtype=np.float32)
    i = 0
    for im in images:
        for y, x in origins:
            crops[i] = im[y:y + h, x:x + w, :]
            i += 1
        for y, x in origins:
            crops[i] = im[y:y + h, x:x + w, :][:, ::-1, :]
            i += 1
    return crops
