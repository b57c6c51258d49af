"""Corpus: damaged .caffemodels through every reader (info and Net given the file as the model,
Net(weights=), read_weights, convert_caffemodel and its --info): each damage gets the same
message, naming the file, the layer and the blob, from all of them."""
import os

import numpy as np

from corpus_cases import Case


# ----------------------------------------------------------------------------------------------
# Caffemodels
# ----------------------------------------------------------------------------------------------

DEPLOY = ('name: "tiny"\n'
          'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 6 dim: 6 } } }\n'
          'layer { name: "conv1" type: "Convolution" bottom: "data" top: "feat" '
          'convolution_param { num_output: 2 kernel_size: 3 } }\n'
          'layer { name: "fc" type: "InnerProduct" bottom: "feat" top: "fc" inner_product_param { num_output: 3 } }\n'
          'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }\n')


def tiny_model(rng):
    """A NetParameter of DEPLOY with its blobs (values from rng)."""
    from vgg_caffe.proto import parse_text, pb

    net = parse_text(DEPLOY, pb.NetParameter())
    shapes = {"conv1": [(2, 3, 3, 3), (2,)], "fc": [(3, 32), (3,)]}
    for layer in net.layer:
        for shape in shapes.get(layer.name, []):
            blob = layer.blobs.add()
            blob.shape.dim.extend(shape)
            blob.data.extend([rng.uniform(-1, 1) for _ in range(int(np.prod(shape)))])
    return net


def _blob(net, name, j):
    return next(l for l in net.layer if l.name == name).blobs[j]


def damage_kinds():
    """name -> damage(net, rng) -> (bytes of the file, strings the error must contain)."""
    def structured(fn):
        def damage(net, rng):
            name, j = rng.choice([("conv1", 0), ("conv1", 1), ("fc", 0), ("fc", 1)])
            extra = fn(_blob(net, name, j), rng)
            return net.SerializeToString(), (f"layer '{name}' blob {j}",) + extra
        return damage

    def neg_shape(b, rng):
        b.shape.dim[rng.randrange(len(b.shape.dim))] = -rng.randint(1, 5)
        return ("negative dimension",)

    def neg_legacy(b, rng):
        dims = (1,) * (4 - len(b.shape.dim)) + tuple(b.shape.dim)
        b.ClearField("shape")
        b.num, b.channels, b.height, b.width = dims
        setattr(b, rng.choice(["channels", "height", "width"]), -rng.randint(1, 5))
        return ("negative dimension",)

    def extra_value(b, rng):
        b.data.extend([0.5] * rng.randint(1, 4))
        return ("values but the blob holds",)

    def missing_value(b, rng):
        del b.data[-1]
        return ("values but the blob holds",)

    def no_data(b, rng):
        b.ClearField("data")
        return ("values but the blob holds 0",)

    def many_axes(b, rng):
        b.shape.dim.extend([1] * 32)
        return ("axes",)

    def double_count(b, rng):
        b.double_data.extend([0.25] * (len(b.data) + 1))
        return ("values but the blob holds",)

    def huge_shape(b, rng):
        b.shape.dim[0] = 10 ** 12
        return ("values but the blob holds",)

    def text(field_bytes, bad, what):
        def damage(net, rng):
            data = net.SerializeToString()
            assert field_bytes in data
            return data.replace(field_bytes, bad, 1), ("not UTF-8", what)
        return damage

    def truncated(net, rng):
        data = net.SerializeToString()
        return data[:rng.randrange(len(data) // 2, len(data) - 8)], ()

    def garbage(net, rng):
        # 0xFF 0xFF ... starts with a field of wire type 7, which no protobuf accepts.
        return b"\xff\xff\xff\xff\x0f" + bytes(rng.randrange(256) for _ in range(200)), ()

    def empty(net, rng):
        return b"", ("empty",)

    kinds = {f"blob_{f.__name__}": structured(f) for f in
             (neg_shape, neg_legacy, extra_value, missing_value, no_data, many_axes, double_count, huge_shape)}
    kinds["name_not_utf8"] = text(b"conv1", b"c\xffnv1", "name")
    kinds["type_not_utf8"] = text(b"InnerProduct", b"InnerPr\xc3duct", "type")
    kinds["top_not_utf8"] = text(b"feat", b"f\xe9at", "top")
    kinds["net_name_not_utf8"] = text(b"tiny", b"t\xfeny", "name")
    kinds["truncated"] = truncated
    kinds["garbage"] = garbage
    kinds["empty"] = empty
    return kinds


def caffemodel_cases(rng):
    out = []
    tools = ("info", "Net", "Net_weights", "read_weights", "convert_caffemodel", "convert_caffemodel_info")
    for kind, damage in damage_kinds().items():
        for tool in tools:
            data, extra = damage(tiny_model(rng), rng)
            keep = {"out.h5": b"weights converted earlier"} if tool == "convert_caffemodel" and rng.random() < 0.5 else {}

            def build(d, data=data, tool=tool):
                path = os.path.join(d, "w.caffemodel")
                with open(path, "wb") as f:
                    f.write(data)
                with open(os.path.join(d, "deploy.prototxt"), "w") as f:
                    f.write(DEPLOY)
                if tool == "Net_weights":
                    return [os.path.join(d, "deploy.prototxt"), f"weights={path}"]
                if tool == "convert_caffemodel":
                    return [path, os.path.join(d, "out.h5")]
                if tool == "convert_caffemodel_info":
                    return ["--info", path]
                return [path]
            runner = {"Net_weights": "Net", "convert_caffemodel_info": "convert_caffemodel"}.get(tool, tool)
            out.append(Case(f"caffemodel/{kind}/{tool}", runner, build, ("w.caffemodel",) + extra,
                            absent=() if keep else ("out.h5",), keep=keep))
    return out
