"""HDF5Data: Caffe's HDF5 data layer (implementation in vgg_caffe/data/hdf5.py)."""
from ..data.hdf5 import HDF5DataLayer
from .base import register


@register
class HDF5Data(HDF5DataLayer):
    type = "HDF5Data"
