"""Corpus: net definitions (prototxt in the current and V1 formats) through info, Net, time,
draw_net and upgrade: geometry (Caffe's CHECKs), structure, fillers, memory, Python layers whose
module fails on import, text that does not parse (the line is named), files too big to parse."""
import os

from corpus_cases import Case


# ----------------------------------------------------------------------------------------------
# Nets
# ----------------------------------------------------------------------------------------------

LAYERS = [
    'layer { name: "data" type: "Input" top: "data" top: "label" '
    'input_param { shape { dim: 2 dim: 3 dim: 12 dim: 12 } shape { dim: 2 } } }',
    'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
    'convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.1 } } }',
    'layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }',
    'layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }',
    'layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" '
    'convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }',
    'layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }',
    'layer { name: "fc" type: "InnerProduct" bottom: "pool2" top: "fc" inner_product_param { num_output: 3 } }',
    'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }',
]
INDEX = {"data": 0, "conv1": 1, "relu1": 2, "pool1": 3, "conv2": 4, "pool2": 5, "fc": 6, "loss": 7}


def net_text(layers):
    return 'name: "corpus"\n' + "\n".join(layers) + "\n"


def _sub(layers, name, old, new):
    out = list(layers)
    i = INDEX[name]
    assert old in out[i], (name, old)
    out[i] = out[i].replace(old, new, 1)
    return out


def _conv(rng):
    return rng.choice(["conv1", "conv2"])


def _pool(rng):
    return rng.choice(["pool1", "pool2"])


# Each mutation: name -> function(layers, rng) -> (new layers, the layer the error must name,
# extra strings the message must contain). None as the layer: the case says the line instead.
def mutations():
    m = {}

    def conv_field(old, new, what):
        def f(layers, rng):
            c = _conv(rng)
            return _sub(layers, c, old, new), c, (what,)
        return f

    m["conv_stride_0"] = conv_field("kernel_size: 3", "kernel_size: 3 stride: 0", "stride")
    m["conv_kernel_0"] = conv_field("kernel_size: 3", "kernel_size: 0", "kernel")
    m["conv_num_output_0"] = conv_field("num_output: 4", "num_output: 0", "num_output")
    m["conv_dilation_0"] = conv_field("kernel_size: 3", "kernel_size: 3 dilation: 0", "dilation")
    m["conv_kernel_size_and_h"] = conv_field("kernel_size: 3", "kernel_size: 3 kernel_h: 3 kernel_w: 3", "not both")
    m["conv_kernel_h_alone"] = conv_field("kernel_size: 3", "kernel_h: 3", "kernel_w")
    m["conv_stride_h_alone"] = conv_field("kernel_size: 3", "kernel_size: 3 stride_h: 2", "stride_w")
    m["conv_group_0"] = conv_field("kernel_size: 3", "kernel_size: 3 group: 0", "group")
    m["conv_group_3"] = conv_field("kernel_size: 3", "kernel_size: 3 group: 3", "group")
    m["conv_kernel_too_big"] = conv_field("kernel_size: 3", "kernel_size: 31", "kernel")
    m["conv_no_kernel"] = conv_field("kernel_size: 3", "", "kernel_size")

    def pool_field(old, new, what):
        def f(layers, rng):
            p = _pool(rng)
            return _sub(layers, p, old, new), p, (what,)
        return f

    m["pool_stride_0"] = pool_field("stride: 2", "stride: 0", "stride")
    m["pool_kernel_0"] = pool_field("kernel_size: 2", "kernel_size: 0", "kernel")
    m["pool_kernel_h_alone"] = pool_field("kernel_size: 2", "kernel_h: 2", "kernel")
    m["pool_pad_h_alone"] = pool_field("stride: 2", "stride: 2 pad_h: 1", "pad_w")
    m["pool_pad_ge_kernel"] = pool_field("stride: 2", "stride: 2 pad: 2", "pad")
    m["pool_global_and_kernel"] = pool_field("stride: 2", "stride: 2 global_pooling: true", "global_pooling")
    def stochastic_pad(layers, rng):
        p = _pool(rng)
        kind = "pool: MAX" if p == "pool1" else "pool: AVE"
        return _sub(layers, p, kind, "pool: STOCHASTIC pad: 1"), p, ("STOCHASTIC",)
    m["pool_stochastic_pad"] = stochastic_pad

    def ip_zero(layers, rng):
        return _sub(layers, "fc", "num_output: 3", "num_output: 0"), "fc", ("num_output",)
    m["ip_num_output_0"] = ip_zero

    def input_negative(layers, rng):
        d = rng.choice([1, 2, 3])
        dims = ["2", "3", "12", "12"]
        dims[d] = str(-rng.randint(1, 9))
        text = "dim: " + " dim: ".join(dims)
        return _sub(layers, "data", "dim: 2 dim: 3 dim: 12 dim: 12", text), "data", ("must be >= 0",)
    m["input_negative_dim"] = input_negative

    def two_producers(layers, rng):
        out = list(layers)
        out.insert(INDEX["pool1"] + 1, 'layer { name: "again" type: "ReLU" bottom: "conv1" top: "pool1" }')
        return out, "again", ("already produced",)
    m["top_two_producers"] = two_producers

    def dup_top(layers, rng):
        return _sub(layers, "data", 'top: "label"', 'top: "data"'), "data", ("already produced",)
    m["top_twice_in_layer"] = dup_top

    def unknown_type(layers, rng):
        return _sub(layers, "relu1", 'type: "ReLU"', 'type: "ReLu"'), "relu1", ("unknown layer type",)
    m["unknown_layer_type"] = unknown_type

    def missing_bottom(layers, rng):
        return _sub(layers, "fc", 'bottom: "pool2"', 'bottom: "pool3"'), "fc", ("pool3",)
    m["bottom_not_produced"] = missing_bottom

    def include_exclude(layers, rng):
        new = 'top: "loss" include { phase: TRAIN } exclude { phase: TEST }'
        return _sub(layers, "loss", 'top: "loss"', new), "loss", ("not both",)
    m["include_and_exclude"] = include_exclude

    def filler(kind, what):
        def f(layers, rng):
            c = _conv(rng)
            old = 'weight_filler { type: "gaussian" std: 0.1 }' if c == "conv1" else 'weight_filler { type: "xavier" }'
            return _sub(layers, c, old, f"weight_filler {{ {kind} }}"), c, (what,)
        return f
    m["filler_unknown_type"] = filler('type: "gausian"', "unknown filler type")
    m["filler_negative_std"] = filler('type: "gaussian" std: -1', "weight_filler")
    m["filler_uniform_min_gt_max"] = filler('type: "uniform" min: 1 max: -1', "weight_filler")

    def inplace_pool(layers, rng):
        layers = _sub(layers, "pool2", 'top: "pool2"', 'top: "conv2"')
        return _sub(layers, "fc", 'bottom: "pool2"', 'bottom: "conv2"'), "pool2", ("in place",)
    m["pooling_in_place"] = inplace_pool

    def arity(layers, rng):
        return _sub(layers, "loss", ' bottom: "label"', ""), "loss", ("bottom",)
    m["loss_one_bottom"] = arity

    def loss_weights(layers, rng):
        return _sub(layers, "loss", 'top: "loss"', 'top: "loss" loss_weight: 1 loss_weight: 2'), "loss", ("loss_weight",)
    m["loss_weight_count"] = loss_weights

    def label_shape(layers, rng):
        return _sub(layers, "data", "shape { dim: 2 } }", "shape { dim: 5 } }"), "loss", ("label",)
    m["label_count_mismatch"] = label_shape

    return m


# Mutations whose text no longer parses: the line must be named.
def syntax_mutations():
    def unknown_field(layers, rng):
        return _sub(layers, "conv2", "num_output: 4", "num_outputs: 4"), INDEX["conv2"] + 2, ("num_outputs",)

    def duplicate_field(layers, rng):
        c = _conv(rng)
        return _sub(layers, c, 'name: "', f'name: "{c}" name: "'), INDEX[c] + 2, ("more than once",)

    def missing_brace(layers, rng):
        out = list(layers)
        out[INDEX["pool2"]] = out[INDEX["pool2"]][:-2]
        return out, None, ()

    def bad_enum(layers, rng):
        p = _pool(rng)
        return _sub(layers, p, "pool: ", "pool: MAXIMUM #"), INDEX[p] + 2, ("MAXIMUM",)

    def string_unquoted(layers, rng):
        return _sub(layers, "fc", 'type: "InnerProduct"', "type: InnerProduct"), INDEX["fc"] + 2, ()

    return {"syntax_unknown_field": unknown_field, "syntax_duplicate_field": duplicate_field,
            "syntax_missing_brace": missing_brace, "syntax_bad_enum": bad_enum,
            "syntax_unquoted_string": string_unquoted}


MODULE_ERRORS = {
    "syntax": ("def broken(:\n    pass\n", "SyntaxError"),
    "runtime": ("raise RuntimeError('no GPU found while importing')\n", "RuntimeError: no GPU found"),
    "zerodiv": ("SCALE = 1 / 0\n", "ZeroDivisionError"),
    "name": ("import os\nvalue = undefined_name + 1\n", "NameError"),
}


def _python_layer_net(module):
    layer = (f'layer {{ name: "userlayer" type: "Python" bottom: "conv1" top: "user" '
             f'python_param {{ module: "{module}" layer: "L" }} }}')
    return net_text(LAYERS[:3] + [layer])


def _big_nets():
    input_big = ('layer { name: "data" type: "Input" top: "data" '
                 'input_param { shape { dim: 10000000 dim: 10000000 } } }')
    ip_big = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 10000 } } }\n'
              'layer { name: "huge" type: "InnerProduct" bottom: "data" top: "huge" '
              'inner_product_param { num_output: 2000000000 } }')
    return {"memory_huge_input": (net_text([input_big]), "data"), "memory_huge_num_output": (net_text([ip_big]), "huge")}


def prototxt_cases(rng):
    out = []
    tools = ("info", "Net", "time", "draw_net")
    for name, mutate in mutations().items():
        for tool in tools:
            layers, layer, extra = mutate(LAYERS, rng)
            text = net_text(layers)
            out.append(_net_case(f"prototxt/{name}/{tool}", tool, text, (f"'{layer}'",) + tuple(extra), rng))
    for name, mutate in syntax_mutations().items():
        for tool in tools:
            layers, line, extra = mutate(LAYERS, rng)
            text = net_text(layers)
            where = (f"net.prototxt:{line}:",) if line else (r"re:net\.prototxt:\d+:\d+",)
            out.append(_net_case(f"prototxt/{name}/{tool}", tool, text, where + tuple(extra), rng))
    for name, (text, layer) in _big_nets().items():
        for tool in ("Net", "time"):
            out.append(_net_case(f"prototxt/{name}/{tool}", tool, text, (f"'{layer}'", "would need"), rng))
    for kind, (source, first) in MODULE_ERRORS.items():
        for tool in ("info", "Net", "time"):
            module = f"corpus_user_{kind}_{tool.lower()}"

            def build(d, module=module, source=source, tool=tool):
                with open(os.path.join(d, module + ".py"), "w") as f:
                    f.write(source)
                with open(os.path.join(d, "net.prototxt"), "w") as f:
                    f.write(_python_layer_net(module))
                return _net_argv(tool, d)
            out.append(Case(f"prototxt/python_import_{kind}/{tool}", tool, build,
                            ("net.prototxt", "'userlayer'", module, first), syspath=True))
    for tool in ("info", "Net", "draw_net"):
        def not_utf8(d, tool=tool):
            with open(os.path.join(d, "net.prototxt"), "wb") as f:
                f.write(net_text(LAYERS).replace('"conv2"', '"conv\xe92"').encode("latin-1"))
            return _net_argv(tool, d)
        out.append(Case(f"prototxt/not_utf8/{tool}", tool, not_utf8, ("net.prototxt",), absent=("out.dot",)))
        out.append(Case(f"prototxt/missing_file/{tool}", tool, lambda d, tool=tool: _net_argv(tool, d),
                        ("net.prototxt",), absent=("out.dot",)))

        def too_big(d, tool=tool):
            with open(os.path.join(d, "net.prototxt"), "w") as f:
                f.write(net_text(LAYERS) + "# padding\n" * 200)
            return _net_argv(tool, d)
        out.append(Case(f"prototxt/over_size_limit/{tool}", tool, too_big, ("net.prototxt", "VGG_CAFFE_MAX_PROTOTXT_MB"),
                        absent=("out.dot",), env={"VGG_CAFFE_MAX_PROTOTXT_MB": "0.001"}))
    return out


def _net_argv(tool, d):
    path = os.path.join(d, "net.prototxt")
    if tool == "draw_net":
        return [path, os.path.join(d, "out.dot")]
    if tool == "time":
        return [path, "-iterations", "1", "--json", os.path.join(d, "time.json")]
    if tool == "Net":
        return [path, "phase=TRAIN"]
    return [path]


def _net_case(cid, tool, text, expect, rng):
    keep = {}
    if tool == "draw_net" and rng.random() < 0.5:
        keep = {"out.dot": b"digraph earlier { }\n"}   # a drawing from before must stay

    def build(d):
        with open(os.path.join(d, "net.prototxt"), "w") as f:
            f.write(text)
        return _net_argv(tool, d)
    absent = {"draw_net": ("out.dot",), "time": ("time.json",)}.get(tool, ())
    absent = tuple(a for a in absent if a not in keep)
    return Case(cid, tool, build, ("net.prototxt",) + tuple(expect), absent=absent, keep=keep)


# ----------------------------------------------------------------------------------------------
# V1 prototxt and the upgrade tool
# ----------------------------------------------------------------------------------------------

V1 = ('name: "v1"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'
      'layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" '
      'convolution_param { num_output: 2 kernel_size: 3 } }\n'
      'layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }\n')


def v1_cases(rng):
    out = []
    neg = -rng.randint(1, 9)
    bad = {
        "v1_negative_input_dim": (V1.replace("input_dim: 8\ninput_dim: 8", f"input_dim: {neg}\ninput_dim: 8"),
                                  ("'input'", "must be >= 0"), ("info", "Net", "time")),
        "v1_stride_0": (V1.replace("kernel_size: 3", "kernel_size: 3 stride: 0"), ("'conv1'", "stride"),
                        ("info", "Net", "draw_net")),
        "v1_unknown_enum": (V1.replace("type: RELU", "type: RELUX"), ("v1.prototxt:8:", "RELUX"),
                            ("upgrade", "info", "Net")),
        "v1_input_dim_count": (V1.replace("input_dim: 8\ninput_dim: 8\n", "input_dim: 8\n"), ("input_dim",),
                               ("upgrade", "info", "Net")),
        "v1_v0_nested": (V1 + 'layers { layer { name: "old" type: "relu" } bottom: "conv1" top: "conv1" }\n',
                         ("V0",), ("upgrade", "info", "Net")),
        "v1_syntax": (V1.replace("num_output: 2", "num_output 2"), ("v1.prototxt:7:",), ("upgrade", "info", "Net")),
        "v1_mixed_formats": (V1 + 'layer { name: "r2" type: "ReLU" bottom: "conv1" top: "conv1" }\n',
                             ("layer",), ("upgrade", "info", "Net")),
    }
    for name, (text, expect, tools) in bad.items():
        for tool in tools:
            def build(d, text=text, tool=tool):
                src = os.path.join(d, "v1.prototxt")
                with open(src, "w") as f:
                    f.write(text)
                if tool == "upgrade":
                    return [src, os.path.join(d, "new.prototxt")]
                if tool == "draw_net":
                    return [src, os.path.join(d, "out.dot")]
                if tool == "time":
                    return [src, "-iterations", "1"]
                return [src] + (["phase=TEST"] if tool == "Net" else [])
            out.append(Case(f"v1/{name}/{tool}", tool, build, ("v1.prototxt",) + expect,
                            absent=("new.prototxt", "out.dot")))

    def under_file(d):
        src = os.path.join(d, "v1.prototxt")
        with open(src, "w") as f:
            f.write(V1)
        with open(os.path.join(d, "afile"), "w") as f:
            f.write("a regular file")
        return [src, os.path.join(d, "afile", "new.prototxt")]
    out.append(Case("v1/output_under_a_file/upgrade", "upgrade", under_file, ("afile",),
                    keep={"afile": b"a regular file"}))

    def output_is_dir(d):
        src = os.path.join(d, "v1.prototxt")
        with open(src, "w") as f:
            f.write(V1)
        os.makedirs(os.path.join(d, "outdir"))
        return [src, os.path.join(d, "outdir")]
    out.append(Case("v1/output_is_a_directory/upgrade", "upgrade", output_is_dir, ("outdir",)))
    out.append(Case("v1/input_missing/upgrade", "upgrade",
                    lambda d: [os.path.join(d, "v1.prototxt"), os.path.join(d, "new.prototxt")],
                    ("v1.prototxt",), absent=("new.prototxt",)))
    return out
