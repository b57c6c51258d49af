"""ImageData: Caffe's list-file image data layer (implementation in vgg_caffe/data/caffe_layer.py)."""
from ..data.caffe_layer import ImageDataLayer
from .base import register


@register
class ImageData(ImageDataLayer):
    type = "ImageData"
