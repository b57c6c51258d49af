"""caffe.net_spec: write a net as Python data flow; to_proto() gives the NetParameter.

    from caffe import layers as L, params as P
    n = caffe.NetSpec()
    n.data, n.label = L.Input(shape=[dict(dim=[64, 1, 28, 28]), dict(dim=[64])], ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type="xavier"))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.relu1 = L.ReLU(n.pool1, in_place=True)
    print(n.to_proto())

Reproduces python/caffe/net_spec.py: `L.Type(*bottoms, **params)` is a layer of that type whose
tops are returned (ntop=N for several, 0 for none; in_place=True reuses the bottom as top); a
NetSpec attribute names the top and, for a layer's first top, the layer; unnamed tops get
pycaffe's automatic names (Convolution1, ...). Keyword arguments are routed by reflecting over
the schema: an argument ending in `param` goes to the LayerParameter, any other to the type's
own message (Convolution -> convolution_param) when it has that field, else to the
LayerParameter (name, loss_weight, include, param, propagate_down, ...). Lists fill repeated
fields (a list of dicts adds messages), dicts fill messages. Layers come out in dependency order.
Stricter than pycaffe, where a typo silently becomes a new type or field: an unknown layer type
or field is an error naming it and the choices (L.custom("Type", ...) writes a type this runtime
does not know, for another Caffe build); enum fields also take their value names as strings;
Deconvolution and Im2col take convolution_param's fields directly (their message is shared).
"""
import difflib
from collections import Counter, OrderedDict

from ..errors import CaffeError
from ..proto import V1_TYPE_NAMES, caffe_pb2

_SHARED_PARAMS = {"Deconvolution": "convolution", "Im2col": "convolution"}


class UnknownLayerType(CaffeError, AttributeError):
    """L.Typo(...): a layer type neither the runtime nor Caffe's schema knows."""


def param_name_dict():
    """Layer type -> the prefix of its parameter field, from LayerParameter's *_param fields
    (ConvolutionParameter convolution_param -> 'Convolution': 'convolution')."""
    names = {}
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith("_param") and field.message_type is not None:
            type_name = field.message_type.name
            if type_name.endswith("Parameter"):
                names[type_name[:-len("Parameter")]] = field.name[:-len("_param")]
    names.update(_SHARED_PARAMS)
    return names


_param_names = param_name_dict()


def known_types():
    from ..layers import known_types as registered

    return sorted(set(registered()) | set(V1_TYPE_NAMES.values()) | set(_param_names) - {"Transformation", "Loss"})


def _is_repeated(field):
    return field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED


def _enum_value(field, value, where):
    if field.enum_type is not None and isinstance(value, str):
        values = field.enum_type.values_by_name
        if value not in values:
            raise CaffeError(f"{where}: {field.name} has no value '{value}'; values: {', '.join(values)}")
        return values[value].number
    return value


def assign_proto(proto, name, val, where=None):
    """Set field `name` of `proto` from a Python value: scalars, lists for repeated fields (a
    list of dicts adds one message each), dicts for messages."""
    where = where or proto.DESCRIPTOR.name
    field = proto.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        raise AttributeError(f"{proto.DESCRIPTOR.name} has no field '{name}'")
    message = field.message_type is not None
    if _is_repeated(field):
        items = list(val) if isinstance(val, (list, tuple)) else [val]
        container = getattr(proto, name)
        for item in items:
            if message:
                target = container.add()
                if isinstance(item, dict):
                    for k, v in item.items():
                        _assign_checked(target, k, v, f"{where}.{name}")
                else:
                    target.CopyFrom(item)
            else:
                container.append(_enum_value(field, item, where))
    elif isinstance(val, dict):
        target = getattr(proto, name)
        for k, v in val.items():
            _assign_checked(target, k, v, f"{where}.{name}")
    elif message:
        getattr(proto, name).CopyFrom(val)
    else:
        try:
            setattr(proto, name, _enum_value(field, val, where))
        except (TypeError, ValueError) as e:
            raise CaffeError(f"{where}: cannot set {name} = {val!r} ({e})") from None


def _assign_checked(proto, name, val, where):
    if name not in proto.DESCRIPTOR.fields_by_name:
        raise CaffeError(f"{where}: {proto.DESCRIPTOR.name} has no field '{name}'; fields: "
                         + ", ".join(f.name for f in proto.DESCRIPTOR.fields))
    assign_proto(proto, name, val, where)


def to_proto(*tops):
    """A NetParameter of the layers the given tops depend on (automatic names throughout)."""
    layers, autonames = OrderedDict(), Counter()
    for top in tops:
        top.fn._to_proto(layers, {}, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers.values())
    return net


class Top:
    """One top of a layer-to-be (the n-th of `fn`)."""

    def __init__(self, fn, n):
        self.fn, self.n = fn, n

    def to_proto(self):
        return to_proto(self)

    def _to_proto(self, layers, names, autonames):
        return self.fn._to_proto(layers, names, autonames)


class Function:
    """A layer: type, bottoms (Tops) and keyword parameters."""

    def __init__(self, type_name, inputs, params):
        for i, inp in enumerate(inputs):
            if not isinstance(inp, Top):
                raise TypeError(f"{type_name} input {i} is not a Top (type is {type(inp).__name__})")
        self.type_name, self.inputs, self.params = type_name, tuple(inputs), dict(params)
        self.ntop = self.params.pop("ntop", 1)
        self.in_place = self.params.pop("in_place", False)
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _get_name(self, names, autonames):
        if self not in names and self.ntop > 0:
            names[self] = self._get_top_name(self.tops[0], names, autonames)
        elif self not in names:
            autonames[self.type_name] += 1
            names[self] = self.type_name + str(autonames[self.type_name])
        return names[self]

    def _get_top_name(self, top, names, autonames):
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = top.fn.type_name + str(autonames[top.fn.type_name])
        return names[top]

    def _to_proto(self, layers, names, autonames):
        if self in layers:
            return
        bottoms = []
        for inp in self.inputs:
            inp._to_proto(layers, names, autonames)
            bottoms.append(layers[inp.fn].top[inp.n])
        layer = caffe_pb2.LayerParameter(type=self.type_name)
        layer.bottom.extend(bottoms)
        if self.in_place:
            layer.top.extend(layer.bottom)
        else:
            layer.top.extend(self._get_top_name(t, names, autonames) for t in self.tops)
        layer.name = self._get_name(names, autonames)
        where = f"layer '{layer.name}' ({self.type_name})"
        prefix = _param_names.get(self.type_name)
        own = getattr(layer, prefix + "_param") if prefix else None
        for k, v in self.params.items():
            if not k.endswith("param") and own is not None and k in own.DESCRIPTOR.fields_by_name:
                assign_proto(own, k, v, f"{where} {prefix}_param")
            elif k in layer.DESCRIPTOR.fields_by_name:
                assign_proto(layer, k, v, where)
            else:
                mine = f" or {own.DESCRIPTOR.name} ({', '.join(f.name for f in own.DESCRIPTOR.fields)})" \
                    if own is not None else ""
                raise CaffeError(f"{where}: '{k}' is not a field of LayerParameter{mine}")
        layers[self] = layer


class NetSpec:
    """Tops by name, in assignment order; to_proto() names layers and tops after them."""

    def __init__(self):
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        tops = self.__dict__.get("tops", {})
        if name not in tops:
            raise AttributeError(f"NetSpec has no top '{name}'; tops: {', '.join(tops) or 'none yet'}")
        return tops[name]

    def __setitem__(self, key, value):
        self.__setattr__(key, value)

    def __getitem__(self, item):
        return self.__getattr__(item)

    def __delitem__(self, name):
        del self.tops[name]

    def keys(self):
        return list(self.tops)

    def vals(self):
        return list(self.tops.values())

    def to_proto(self):
        names = {v: k for k, v in self.tops.items()}
        autonames, layers = Counter(), OrderedDict()
        for top in self.tops.values():
            top._to_proto(layers, names, autonames)
        net = caffe_pb2.NetParameter()
        net.layer.extend(layers.values())
        return net


def _make(type_name, args, kwargs):
    fn = Function(type_name, args, kwargs)
    if fn.ntop == 0:
        return fn
    return fn.tops[0] if fn.ntop == 1 else fn.tops


class Layers:
    """`L.Convolution(bottom, ...)`: one attribute per layer type."""

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        known = known_types()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            raise UnknownLayerType(
                f"unknown layer type '{name}'" + (f"; did you mean {', '.join(close)}?" if close else "")
                + f" (L.custom('{name}', ...) writes a type this runtime does not know)")
        return lambda *args, **kwargs: _make(name, args, kwargs)

    def custom(self, type_name, *args, **kwargs):
        return _make(type_name, args, kwargs)


class Parameters:
    """`P.Pooling.MAX`: the enum values of a layer type's parameter message."""

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        message = getattr(caffe_pb2, name + "Parameter", None)
        if message is None:
            raise AttributeError(f"no {name}Parameter in the schema")
        return message


layers = Layers()
params = Parameters()
