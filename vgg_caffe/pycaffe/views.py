"""pycaffe's read-only views of a Net (_caffe.cpp's properties): blobs, layers, params, inputs,
outputs, blob loss weights, and the top/bottom names and ids, all in Caffe's orders."""
from collections import OrderedDict


class NetViews:
    """Mixin of pycaffe's Net; uses its _plan (what Net::Init knows), _layers and _blob_map."""

    @property
    def blobs(self):
        """OrderedDict blob name -> Blob, input to output."""
        return OrderedDict(self._blob_map)

    @property
    def _blobs(self):
        return list(self._blob_map.values())

    @property
    def _blob_names(self):
        return list(self._blob_map)

    @property
    def layers(self):
        return list(self._layers)

    @property
    def _layer_names(self):
        return list(self._plan.names)

    @property
    def layer_dict(self):
        return OrderedDict(zip(self._plan.names, self._layers))

    @property
    def params(self):
        """OrderedDict layer name -> its learnable blobs (a BlobVec), for layers that have any."""
        return OrderedDict((n, layer.blobs) for n, layer in zip(self._plan.names, self._layers) if len(layer.blobs))

    @property
    def inputs(self):
        return list(self._plan.inputs)

    @property
    def outputs(self):
        return list(self._plan.outputs)

    @property
    def _inputs(self):
        return [self._blob_names.index(n) for n in self.inputs]

    @property
    def _outputs(self):
        return [self._blob_names.index(n) for n in self.outputs]

    @property
    def blob_loss_weights(self):
        return OrderedDict((n, self._plan.loss_weights.get(n, 0.0)) for n in self._blob_map)

    @property
    def _blob_loss_weights(self):
        return list(self.blob_loss_weights.values())

    def _top_ids(self, i):
        return [self._blob_names.index(t) for t in self._plan.params[i].top]

    def _bottom_ids(self, i):
        return [self._blob_names.index(b) for b in self._plan.params[i].bottom]

    @property
    def top_names(self):
        return OrderedDict((n, list(lp.top)) for n, lp in zip(self._plan.names, self._plan.params))

    @property
    def bottom_names(self):
        return OrderedDict((n, list(lp.bottom)) for n, lp in zip(self._plan.names, self._plan.params))
