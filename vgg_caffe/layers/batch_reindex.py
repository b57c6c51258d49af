"""BatchReindex (Caffe's BatchReindexLayer): top[i] = bottom[0][index[i]] along the first axis.

The second bottom is a 1-d blob of sample indices (stored as numbers), any length, repeats
allowed; the top is (len(index),) + bottom[0].shape[1:]. An index outside [0, N) is an error at
run time naming the layer, as Caffe's check_batch_reindex. Backward accumulates: a sample picked
twice gets the sum of both gradients; the indices get none (Caffe refuses to backpropagate to
them).
"""
import torch

from .base import Layer, register


@register
class BatchReindex(Layer):
    type = "BatchReindex"
    bottoms = (2, 2)

    def reshape(self, bottom_shapes):
        data, index = (tuple(s) for s in bottom_shapes)
        if len(index) != 1:
            raise self.error(f"the index bottom '{self.param.bottom[1]}' has shape {index}; it must be 1-d")
        if not data:
            raise self.error(f"bottom '{self.param.bottom[0]}' is a scalar; it needs a first axis to index")
        return [index + data[1:]]

    def forward(self, x, index):
        index = index.detach()
        if not torch.jit.is_scripting():
            self._check(index, x.shape[0])
        # Caffe truncates the stored number to an int (static_cast) after checking its range.
        return x.index_select(0, index.long())

    @torch.jit.unused
    def _check(self, index, n):
        bad = (index < 0) | (index >= n)
        if bool(bad.any()):
            raise self.error(f"index {index[bad][0].item():g} is outside the batch [0, {n}) of bottom "
                             f"'{self.param.bottom[0]}'")
