"""Tile (Caffe's TileLayer): repeats the bottom `tiles` times along `axis` (default 1).

Each block of axis `axis` and the axes after it is copied whole, tiles times in a row
([a b c] -> [a b c a b c]), as tile_layer.cpp; the gradient sums the copies. tiles is required
and must be positive.
"""
from typing import List

from .base import Layer, register
from .softmax import canonical_axis


@register
class Tile(Layer):
    type = "Tile"
    __constants__ = ["axis", "tiles"]

    def setup(self):
        p = self.param.tile_param
        if not p.HasField("tiles"):
            raise self.error("tile_param.tiles (the number of copies) is required")
        if p.tiles < 1:
            raise self.error(f"tile_param.tiles must be positive, got {p.tiles}")
        self.tiles = int(p.tiles)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.axis = canonical_axis(self, self.param.tile_param.axis, shape)
        return [shape[:self.axis] + (shape[self.axis] * self.tiles,) + shape[self.axis + 1:]]

    def forward(self, x):
        reps: List[int] = [1] * x.dim()
        reps[self.axis] = self.tiles
        return x.repeat(reps)
