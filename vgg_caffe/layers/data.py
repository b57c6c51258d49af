"""Data: Caffe's LMDB data layer (implementation in vgg_caffe/data/caffe_layer.py)."""
from ..data.caffe_layer import DataLayer
from .base import register


@register
class Data(DataLayer):
    type = "Data"
