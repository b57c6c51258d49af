"""The one compiled piece: vgg_caffe.data._jpegrows, the top rows of a JPEG through the system's
libjpeg (vgg_caffe/data/_jpegrows.c). Optional: without libjpeg's headers (Debian: libjpeg-dev)
the build skips it and VGGData decodes whole images with OpenCV, the same pixels, slower."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("vgg_caffe.data._jpegrows", ["vgg_caffe/data/_jpegrows.c"],
                             libraries=["jpeg"], optional=True)])
