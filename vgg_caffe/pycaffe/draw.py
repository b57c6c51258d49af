"""caffe.draw: pictures of a NetParameter, as python/caffe/draw.py, drawn by vgg_caffe.draw.

    caffe.draw.draw_net_to_file(net_param, "net.png", rankdir="LR", phase=caffe.TEST)

draw_net(caffe_net, rankdir, ext="png", phase=None) returns the image bytes and
draw_net_to_file(caffe_net, filename, rankdir="LR", phase=None) writes them, the format taken
from the file's extension (Graphviz text for .dot/.gv/.raw). The picture is Caffe's: layers as
boxes coloured by type and labelled with their geometry, blobs as octagons, edges bottom -> layer
-> top (vgg_caffe.draw's "caffe" style, the code tools/draw_net.py uses too); phase None draws
every layer, TRAIN/TEST only that phase's. Graphviz renders when `dot` is installed, matplotlib
otherwise, so pydot is not needed; get_pydot_graph needs pydot, as in pycaffe. display_lrm
(learning-rate multipliers in the labels) is accepted and ignored.
"""
import os
import shutil
import subprocess

from .. import draw as drawing
from ..errors import CaffeError
from ..proto import parse_text, pb


def _net_param(caffe_net):
    if isinstance(caffe_net, pb.NetParameter):
        return caffe_net
    if isinstance(caffe_net, str) and "{" in caffe_net:
        return parse_text(caffe_net, pb.NetParameter())
    raise CaffeError(f"caffe.draw takes a caffe_pb2.NetParameter (got {type(caffe_net).__name__}); read a "
                     "prototxt with google.protobuf.text_format.Merge(open(path).read(), caffe_pb2.NetParameter())")


def get_pydot_graph(caffe_net, rankdir, label_edges=True, phase=None, display_lrm=False):
    try:
        import pydot
    except ImportError:
        raise CaffeError("get_pydot_graph needs pydot (pip install pydot); draw_net and draw_net_to_file "
                         "work without it") from None
    return pydot.graph_from_dot_data(drawing.dot_text(_net_param(caffe_net), "caffe", phase, rankdir))[0]


def draw_net(caffe_net, rankdir, ext="png", phase=None, display_lrm=False):
    """The drawing as bytes in format `ext` (png, svg, pdf, or dot text)."""
    net_param = _net_param(caffe_net)
    ext = ext.lower().lstrip(".")
    if ext in ("dot", "gv", "raw"):
        return drawing.dot_text(net_param, "caffe", phase, rankdir).encode()
    if ext not in ("png", "svg", "pdf"):
        raise CaffeError(f"unknown image format '.{ext}'; expected png, svg, pdf or dot")
    if shutil.which("dot"):
        text = drawing.dot_text(net_param, "caffe", phase, rankdir)
        result = subprocess.run(["dot", f"-T{ext}"], input=text.encode(), capture_output=True)
        if result.returncode != 0:
            raise CaffeError(f"Graphviz dot failed: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout
    return drawing.picture(net_param, ext, style="caffe", phase=phase, rankdir=rankdir)


def draw_net_to_file(caffe_net, filename, rankdir="LR", phase=None, display_lrm=False):
    """Write the drawing to `filename` in the format of its extension."""
    ext = os.path.splitext(os.fspath(filename))[1].lstrip(".") or "png"
    data = draw_net(caffe_net, rankdir, ext, phase, display_lrm)
    with open(filename, "wb") as f:
        f.write(data)
