"""Crop (Caffe's CropLayer): crops the first bottom to the shape of the second.

Axes from `axis` (default 2, so N and C are kept) take the second bottom's size; the others keep
the first bottom's. crop_param.offset is empty (offset 0), one value for every cropped axis, or
one per cropped axis. As crop_layer.cpp: the second bottom has a size for each axis, an offset
that runs the crop past the first bottom is an error naming the axis, and only the first bottom
gets a gradient (zero outside the crop); the second is read for its shape alone.
"""
from typing import List

from .base import Layer, register
from .softmax import canonical_axis


@register
class Crop(Layer):
    type = "Crop"
    bottoms = (2, 2)
    __constants__ = ["start"]
    offsets: List[int]

    def setup(self):
        p = self.param.crop_param
        shape = self.bottom_shapes[0]
        self.start = canonical_axis(self, p.axis, shape)
        given = [int(o) for o in p.offset]
        if len(given) > 1 and self.start + len(given) != len(shape):
            raise self.error(f"{len(given)} crop_param.offset values for axes {self.start}..{len(shape) - 1} of "
                             f"bottom {tuple(shape)}; give one value, or one per cropped axis "
                             f"({len(shape) - self.start})")
        n_crop = len(shape) - self.start
        self.offsets = given if len(given) > 1 else (given or [0]) * n_crop

    def reshape(self, bottom_shapes):
        data, ref = (tuple(s) for s in bottom_shapes)
        if len(ref) < len(data):
            raise self.error(f"bottom '{self.param.bottom[1]}' has shape {ref} but '{self.param.bottom[0]}' has "
                             f"{data}; the reference needs a size for each of the data's axes")
        top = list(data)
        for i in range(self.start, len(data)):
            off = self.offsets[i - self.start]
            if data[i] - off < ref[i]:
                raise self.error(f"the crop of axis {i} is out of bounds: size {ref[i]} at offset {off} does not "
                                 f"fit in {data[i]} (bottom '{self.param.bottom[0]}' {data}, "
                                 f"'{self.param.bottom[1]}' {ref})")
            top[i] = ref[i]
        return [tuple(top)]

    def forward(self, x, ref):
        # The sizes come from the reference tensor itself, so a data-dependent shape still crops.
        for i, off in enumerate(self.offsets):
            axis = self.start + i
            x = x.narrow(axis, off, ref.shape[axis])
        return x
