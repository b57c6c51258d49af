"""DummyData: tops filled from fillers, for nets run without a data source (Caffe's DummyDataLayer).

dummy_data_layer.cpp: one top shape per top or one for all, given as `shape` (BlobShape) or the
legacy `num`/`channels`/`height`/`width` (each once or once per top; not mixed with `shape`);
`data_filler` is absent (constant 0), one filler for every top, or one per top. A top whose filler
is "constant" is filled once; the others are refilled on every forward pass.

Refills draw from vgg_caffe.rng keyed by (seed, layer, iteration, top), so a forward pass gives
the same values whichever process asks for it, and a slice [start, stop) of the batch is the
slice of the whole batch.
"""
import torch

from .. import rng
from ..errors import CaffeError
from ..proto import pb
from . import fillers
from .base import Layer, register


@register
class DummyData(Layer):
    type = "DummyData"
    bottoms = (0, 0)
    tops = (1, None)
    is_data = True
    seed = 0

    def setup(self):
        p = self.param.dummy_data_param
        n = len(self.param.top)
        if len(p.data_filler) not in (0, 1, n):
            raise self.error(f"dummy_data_param.data_filler: give 0, 1 or {n} (one per top) fillers, "
                             f"found {len(p.data_filler)}")
        if len(p.data_filler) == 0:
            self.fillers = [pb.FillerParameter(type="constant", value=0)] * n
        elif len(p.data_filler) == 1:
            self.fillers = [p.data_filler[0]] * n
        else:
            self.fillers = list(p.data_filler)
        for f in self.fillers:  # an unknown filler type fails here, as Caffe's GetFiller does
            try:
                fillers.fill(torch.empty(1, 1), f)
            except CaffeError as e:
                raise self.error(f"dummy_data_param.data_filler: {str(e).split(': ', 1)[1]}") from None
        self._constant = {}  # top index -> the tensor of a constant filler, filled once

    def reshape(self, bottom_shapes):
        p = self.param.dummy_data_param
        n = len(self.param.top)
        legacy = {f: list(getattr(p, f)) for f in ("num", "channels", "height", "width")}
        if any(legacy.values()):
            if len(p.shape):
                raise self.error("dummy_data_param: give shape or num/channels/height/width, not both")
            for field, values in legacy.items():
                if len(values) not in (1, n):
                    raise self.error(f"dummy_data_param.{field}: give it once or once per top ({n}); "
                                     f"found {len(values)} values")
            pick = lambda vs, i: int(vs[0] if len(vs) == 1 else vs[i])
            shapes = [tuple(pick(legacy[f], i) for f in ("num", "channels", "height", "width"))
                      for i in range(n)]
        else:
            if len(p.shape) not in (1, n):
                raise self.error(f"dummy_data_param.shape: give it once or once per top ({n}); "
                                 f"found {len(p.shape)}")
            shapes = [tuple(int(d) for d in p.shape[0 if len(p.shape) == 1 else i].dim) for i in range(n)]
        for top, shape in zip(self.param.top, shapes):
            if any(d < 0 for d in shape):
                raise self.error(f"top '{top}': negative dimension in shape {shape}")
        return shapes

    def _fill(self, i, iteration):
        out = torch.empty(self.top_shapes[i])
        gen = rng.torch_generator(self.seed, "DummyData", self.name, iteration, i)
        fillers.fill(out, self.fillers[i], gen)
        return out

    def batch(self, iteration, start=0, stop=None):
        tops = []
        for i in range(len(self.param.top)):
            if self.fillers[i].type == "constant":
                if i not in self._constant or self._constant[i].shape != self.top_shapes[i]:
                    self._constant[i] = self._fill(i, 0)
                value = self._constant[i].clone()
            else:
                value = self._fill(i, iteration)
            # A slice of the global batch along the first axis (the solver's data parallelism).
            tops.append(value[start:stop] if (start, stop) != (0, None) and value.dim() else value)
        return tops

    def forward(self):
        raise self.error("data layers are fed by Net; call batch(iteration)")
