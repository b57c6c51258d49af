"""One update rule per Caffe solver type (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam), on the
shared base in base.py; importing the package registers every rule under its type string."""
import importlib
import pkgutil

from .base import UpdateRule, known_rules, register, rule_class  # noqa: F401

_load_all = True
for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")
