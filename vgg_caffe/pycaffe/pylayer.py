"""pycaffe-style Python layers (`class L(caffe.Layer)`) running unchanged inside vgg_caffe nets.

Caffe's PythonLayer (python_layer.hpp) constructs the class named by python_param with the
LayerParameter, sets `self.param_str` and `self.phase` (0 TRAIN, 1 TEST), then calls
setup(bottom, top) once and, on every pass, reshape(bottom, top) and forward(bottom, top), and
backward(top, propagate_down, bottom) where a gradient is needed; bottom and top are lists of
caffe.Blob whose .data/.diff the layer reads and writes. `self.blobs.add_blob(*shape)` in setup
adds learnable blobs (solvers update them, weight files store them). A layer whose top is its
bottom (in place) gets the same Blob object in both lists, as in Caffe.

Two ways the user's object runs:
- in a pycaffe Net (vgg_caffe.pycaffe.Net), directly on the net's own blobs, exactly as Caffe;
- in a plain vgg_caffe.Net (the torch.fx graph, the solvers' test nets, the CLI tools), through
  PyCaffeLayer below: a vgg_caffe Layer whose forward is a torch.autograd.Function that copies
  the bottoms into Blobs, calls the object's reshape/forward, and in backward hands it the top
  gradients as top diffs and returns the bottom diffs it wrote.
A layer with no bottoms is a data layer (is_data): the net asks it for each batch.
vgg_caffe/layers/python.py builds PyCaffeLayer when the class is a subclass of Layer below.
"""
import torch

from ..layers.base import Layer as RuntimeLayer
from ..proto import pb
from .blob import Blob, BlobVec

TRAIN, TEST = pb.TRAIN, pb.TEST


class Layer:
    """caffe.Layer: subclass it and define setup, reshape, forward and (for layers gradients flow
    through) backward, each taking lists of Blob. Before setup the runtime sets `param_str`,
    `phase` and `blobs` (a BlobVec; add_blob(*shape) creates a learnable blob)."""

    type = "Python"

    def __init__(self, param=None):
        self.blobs = BlobVec()
        self.param_str = param.python_param.param_str if param is not None else ""
        self.phase = int(param.phase) if param is not None and param.HasField("phase") else TEST

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        raise NotImplementedError(f"{type(self).__name__} defines no forward(bottom, top)")

    def backward(self, top, propagate_down, bottom):
        raise NotImplementedError(f"{type(self).__name__} defines no backward(top, propagate_down, bottom); "
                                  "gradients were asked to flow through it")


def is_pycaffe_class(cls):
    return isinstance(cls, type) and issubclass(cls, Layer)


def _owned(tensor, name):
    """A Blob holding a float32 CPU copy of `tensor` (the user may write into it freely)."""
    blob = Blob((), name)
    blob._tensors["data"] = tensor.detach().to("cpu", torch.float32).clone().contiguous()
    blob._tensors["diff"] = torch.zeros_like(blob._tensors["data"])
    return blob


class PyCaffeLayer(RuntimeLayer):
    """A vgg_caffe layer running a pycaffe-style Python layer object (`self.obj`)."""

    type = "Python"
    bottoms = (0, None)
    tops = (0, None)
    in_place_ok = True

    def __init__(self, param, bottom_shapes, phase, source, target):
        object.__setattr__(self, "_target", target)
        super().__init__(param, bottom_shapes, phase, source)

    # -- the contract ---------------------------------------------------------------------------

    def setup(self):
        lp = self.param
        obj = self._target(lp)
        obj.param_str = lp.python_param.param_str
        obj.phase = TRAIN if self.phase == "TRAIN" else TEST
        obj.blobs = BlobVec(params=self.blobs, name=self.name)
        self.obj = obj
        bottoms, tops = self.make_blobs([torch.zeros(s) for s in self.bottom_shapes])
        obj.setup(bottoms, tops)

    def reshape(self, bottom_shapes):
        bottoms, tops = self.make_blobs([torch.zeros(s) for s in bottom_shapes])
        self.obj.reshape(bottoms, tops)
        return [t.shape for t in tops]

    def make_blobs(self, bottom_tensors):
        """Blobs for one call: bottoms holding copies of the tensors, tops fresh, and an in-place
        top (top name == bottom name) the very Blob of its bottom, as Caffe passes it."""
        lp = self.param
        bottoms = [_owned(t, n) for t, n in zip(bottom_tensors, lp.bottom)]
        by_name = {n: b for n, b in zip(lp.bottom, bottoms)}
        tops = [by_name.get(n) or Blob((), n) for n in lp.top]
        return bottoms, tops

    def forward(self, *bottoms):
        outs = _RunPythonLayer.apply(self, *bottoms)
        return list(outs)

    def fill(self, generator=None):
        """Learnable blobs are the layer's own business (its setup fills them)."""


class PyCaffeDataLayer(PyCaffeLayer):
    """A pycaffe-style Python layer with no bottoms: its tops are the net's inputs, produced by
    reshape + forward on each batch."""

    is_data = True

    def batch(self, iteration, start=0, stop=None):
        _, tops = self.make_blobs([])
        self.obj.reshape([], tops)
        self.obj.forward([], tops)
        values = [t.data_tensor.clone() for t in tops]
        if (start, stop) != (0, None):
            values = [v[start:stop] if v.dim() else v for v in values]
        return values


class _RunPythonLayer(torch.autograd.Function):
    """forward: the object's reshape + forward on Blob copies of the bottoms; backward: top
    gradients in as top diffs, the object's backward, bottom diffs out."""

    @staticmethod
    def forward(ctx, layer, *bottoms):
        bottom_blobs, top_blobs = layer.make_blobs(bottoms)
        layer.obj.reshape(bottom_blobs, top_blobs)
        layer.obj.forward(bottom_blobs, top_blobs)
        ctx.layer, ctx.blobs = layer, (bottom_blobs, top_blobs)
        ctx.like = [(b.dtype, b.device) for b in bottoms]
        device = bottoms[0].device if bottoms else torch.device("cpu")
        return tuple(t.data_tensor.clone().to(device) for t in top_blobs)

    @staticmethod
    def backward(ctx, *grads):
        bottom_blobs, top_blobs = ctx.blobs
        for b in bottom_blobs:
            b.diff_tensor.zero_()
        for t, g in zip(top_blobs, grads):
            if g is None:
                t.diff_tensor.zero_()
            else:
                t.diff_tensor.copy_(g.detach().reshape(t.shape))
        propagate = [bool(n) for n in ctx.needs_input_grad[1:]]
        ctx.layer.obj.backward(top_blobs, propagate, bottom_blobs)
        out = [b.diff_tensor.clone().to(dtype=dt, device=dev) if p else None
               for b, p, (dt, dev) in zip(bottom_blobs, propagate, ctx.like)]
        return (None,) + tuple(out)


def make_layer(param, bottom_shapes, phase, source, target):
    """The runtime layer for a pycaffe-style class: a data layer when it has no bottoms."""
    cls = PyCaffeDataLayer if len(param.bottom) == 0 else PyCaffeLayer
    return cls(param, bottom_shapes, phase, source, target)
