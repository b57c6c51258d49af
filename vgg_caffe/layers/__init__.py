"""The layer registry: importing this package registers every layer type.

One module per Caffe type (file convolution.py -> class Convolution -> type "Convolution").
`layer_class(type)` is the only lookup; see base.py for the contract a layer fulfils.
"""
import importlib
import pkgutil

from .base import Layer, known_types, layer_class, register  # noqa: F401

_load_all = True
for _info in pkgutil.iter_modules(__path__):
    if _info.name not in ("base", "fillers"):
        importlib.import_module(f"{__name__}.{_info.name}")
