"""Data: Caffe's image databases and the data layers that read them.

Reproduces Caffe's data path: convert_imageset (list file -> LMDB of Datum records),
compute_image_mean (per-pixel mean BlobProto), the Data / ImageData / HDF5Data layers with
Caffe's DataTransformer (crop, mirror, mean, scale), plus the VGG paper's training data layer
(isotropic rescale with scale jitter, random 224 crop, flip, AlexNet colour shift), exposed as a
`type: "Python"` layer so generated prototxt still parses in upstream Caffe.

Modules (kept free of import-time side effects so worker processes start quickly):
  image       decoding image bytes by content (cv2, Pillow fallback), rescaling
  datum       Datum <-> numpy image, encoded and raw
  db          LMDB reading (indexed, per-process) and writing (batched commits, map growth)
  transforms  Caffe's DataTransformer and the VGG augmentations, as pure functions
  loader      batches from a per-sample function, optionally prefetched by worker processes
  convert     the library behind tools/convert_imageset.py
  lists       the library behind tools/make_imagenet_lists.py
  mean        the library behind tools/compute_image_mean.py
  caffe_layer the Data and ImageData layers
  hdf5        the HDF5Data layer
  vgg_layer   VGGData, the paper's training data layer
"""
