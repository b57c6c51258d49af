"""Python: Caffe's `type: "Python"` layer (python_param { module layer param_str }).

Caffe imports `module` and instantiates the class named `layer`, handing it param_str. We do the
same for classes written against our Layer contract (vgg_caffe.layers.base.Layer), which get the
same constructor arguments as any layer; e.g. vgg_caffe.data.vgg_layer.VGGData. pycaffe-style
classes (setup/reshape/forward on caffe.Blob objects) are not supported: there is no caffe.Blob.
The returned object is an instance of the target class, so Net sees its arity and is_data.
"""
import importlib

from ..errors import CaffeError
from .base import Layer, register


def resolve(param, source=None):
    where = f"{source}: " if source else ""
    pp = param.python_param
    if not pp.module or not pp.layer:
        raise CaffeError(f"{where}layer '{param.name}' (Python): python_param needs module and layer")
    try:
        module = importlib.import_module(pp.module)
    except ImportError as e:
        raise CaffeError(f"{where}layer '{param.name}' (Python): cannot import module '{pp.module}' ({e})") from None
    cls = getattr(module, pp.layer, None)
    if cls is None:
        raise CaffeError(f"{where}layer '{param.name}' (Python): module '{pp.module}' has no '{pp.layer}'")
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise CaffeError(f"{where}layer '{param.name}' (Python): {pp.module}.{pp.layer} is not a subclass of "
                         "vgg_caffe.layers.base.Layer; only Layer subclasses are supported as Python layers")
    return cls


@register
class Python(Layer):
    type = "Python"
    bottoms = (0, None)
    tops = (0, None)

    def __new__(cls, param, bottom_shapes=(), phase="TEST", source=None):
        target = resolve(param, source)
        if target is cls:
            raise CaffeError(f"layer '{param.name}' (Python): python_param names the Python wrapper itself")
        return target(param, bottom_shapes, phase, source)
