"""Input: tops whose values are passed to Net.forward (Caffe's InputLayer; also what a V1 net's
`input`/`input_dim` becomes). Shapes come from input_param.shape, one per top or one for all."""
from .base import Layer, register


@register
class Input(Layer):
    type = "Input"
    bottoms = (0, 0)
    tops = (1, None)
    is_data = True

    def reshape(self, bottom_shapes):
        shapes = [tuple(s.dim) for s in self.param.input_param.shape]
        n = len(self.param.top)
        if len(shapes) == 1:
            shapes = shapes * n
        if len(shapes) != n:
            raise self.error(f"{n} tops need 1 or {n} input_param.shape entries, found {len(shapes)}")
        return shapes
