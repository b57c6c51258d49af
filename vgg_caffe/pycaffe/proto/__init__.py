"""caffe.proto: `from caffe.proto import caffe_pb2` gives the project's schema (vgg_caffe/proto/caffe.proto,
every message of BVLC's caffe.proto with Caffe's field numbers) and its generated module."""
from ...proto import caffe_pb2

__all__ = ["caffe_pb2"]
