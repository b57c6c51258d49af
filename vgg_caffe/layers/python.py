"""Python: Caffe's `type: "Python"` layer (python_param { module layer param_str }).

Caffe imports `module` and instantiates the class named `layer`. Two kinds of class are run:
- classes written against our Layer contract (vgg_caffe.layers.base.Layer), which get the same
  constructor arguments as any layer, e.g. vgg_caffe.data.vgg_layer.VGGData; the returned object
  is an instance of the target class, so Net sees its arity and is_data;
- pycaffe-style classes (`class L(caffe.Layer)` with setup/reshape/forward/backward over
  caffe.Blob lists, caffe being vgg_caffe.pycaffe), run unchanged through the adapter in
  vgg_caffe/pycaffe/pylayer.py. A module that does `import caffe` finds vgg_caffe.pycaffe under
  that name: when no other caffe is importable the alias is installed and the import retried.
"""
import importlib

from ..errors import CaffeError
from .base import Layer, register


def _import(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if not (e.name == "caffe" or (e.name or "").startswith("caffe.")):
            raise
    # the user's module was written for pycaffe: give it ours as `caffe`
    from .. import pycaffe

    pycaffe.install()
    return importlib.import_module(name)


def resolve(param, source=None):
    where = f"{source}: " if source else ""
    pp = param.python_param
    if not pp.module or not pp.layer:
        raise CaffeError(f"{where}layer '{param.name}' (Python): python_param needs module and layer")
    try:
        module = _import(pp.module)
    except ImportError as e:
        raise CaffeError(f"{where}layer '{param.name}' (Python): cannot import module '{pp.module}' ({e})") from None
    except Exception as e:  # the user's module itself fails (SyntaxError, RuntimeError, ...): name it
        first = (str(e).strip().splitlines() or [""])[0]
        if isinstance(e, SyntaxError) and e.filename and f"line {e.lineno}" not in first:
            first += f" ({e.filename}, line {e.lineno})"
        raise CaffeError(f"{where}layer '{param.name}' (Python): importing module '{pp.module}' failed: "
                         f"{type(e).__name__}: {first}") from None
    cls = getattr(module, pp.layer, None)
    if cls is None:
        raise CaffeError(f"{where}layer '{param.name}' (Python): module '{pp.module}' has no '{pp.layer}'")
    if isinstance(cls, type) and issubclass(cls, Layer):
        return cls
    from ..pycaffe import pylayer

    if pylayer.is_pycaffe_class(cls):
        return cls
    raise CaffeError(f"{where}layer '{param.name}' (Python): {pp.module}.{pp.layer} is not a layer class; only Layer "
                     "subclasses are supported as Python layers: caffe.Layer (vgg_caffe.pycaffe.Layer, pycaffe's "
                     "setup/reshape/forward/backward over blobs) or vgg_caffe.layers.base.Layer")


@register
class Python(Layer):
    type = "Python"
    bottoms = (0, None)
    tops = (0, None)

    def __new__(cls, param, bottom_shapes=(), phase="TEST", source=None):
        target = resolve(param, source)
        if target is cls:
            raise CaffeError(f"layer '{param.name}' (Python): python_param names the Python wrapper itself")
        if not issubclass(target, Layer):
            from ..pycaffe import pylayer

            return pylayer.make_layer(param, bottom_shapes, phase, source, target)
        return target(param, bottom_shapes, phase, source)
