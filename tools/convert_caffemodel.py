"""Convert weights between .caffemodel, Caffe's HDF5 layout and PyTorch state_dicts.

    python tools/convert_caffemodel.py VGG_ILSVRC_16_layers.caffemodel vgg16.h5
    python tools/convert_caffemodel.py VGG_ILSVRC_16_layers.caffemodel vgg16_caffe.safetensors
    python tools/convert_caffemodel.py VGG_ILSVRC_16_layers.caffemodel vgg16_tv.pth --torchvision \\
        --torchvision-normalisation
    python tools/convert_caffemodel.py vgg16_tv.pth back.caffemodel --torchvision-normalisation
    python tools/convert_caffemodel.py --info VGG_ILSVRC_16_layers.caffemodel

The library is vgg_caffe.io.caffemodel (file formats) and vgg_caffe.io.convert (naming, folding).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vgg_caffe.io import convert as wc
from vgg_caffe.errors import CaffeError, run_cli  # noqa: E402

EPILOG = """\
formats (by suffix):
  .caffemodel     Caffe's binary NetParameter; read in the V1 (`layers`, legacy 4-d dims) and the
                  current format, written in the current one (--v1 for the old one)
  .h5 / .hdf5     Caffe's HDF5 weights: data/<layer>/<blob index>, exact shapes
  .safetensors    a state_dict; layer types kept in the metadata
  .pt / .pth      a torch file of tensors (read with torch.load(weights_only=True))

state_dict keys are "<layer>.<blob index>" with Caffe's shapes: "conv1_1.0" is conv1_1's weight
(out, in, kh, kw), "conv1_1.1" its bias, "fc6.0" fc6's weight (out, in). With --torchvision they
are torchvision's VGG names instead (configurations A, B, D, E = vgg11, vgg13, vgg16, vgg19, found
from the layer names): features.N.weight/bias, N counting Conv2d, ReLU and MaxPool2d modules
(vgg16: conv1_1 = features.0, conv1_2 = features.2, conv2_1 = features.5, ...), and fc6, fc7,
fc8 = classifier.0, classifier.3, classifier.6.

--rgb-first-conv and --torchvision-normalisation describe the PyTorch side: applied when writing
a state_dict, undone when reading one back into a Caffe file. Caffe's VGG takes BGR pixels 0..255
minus the mean pixel (--mean-pixel, B,G,R); torchvision takes RGB (x/255 - mean)/std with
mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). Folding rescales the first weights and
moves the mean into the bias, which is exact wherever the 3x3 kernel lies inside the image. At the
one-pixel border the two differ: Caffe pads its input with 0, i.e. the mean colour, torchvision
with 0 after normalising, i.e. torchvision's mean colour, so conv1_1's border outputs (and what
they reach) differ slightly. No change of weights can remove that; pad the image with the VGG
mean colour (or crop the border away) where exactness there matters.
"""


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert weights: caffemodel <-> HDF5 <-> PyTorch state_dict (<layer>.<blob index> "
                    "or torchvision VGG keys).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", help="weights to read (.caffemodel, .h5, .safetensors, .pt)")
    parser.add_argument("output", nargs="?", help="file to write; its suffix picks the format")
    parser.add_argument("--info", metavar="FILE", help="print FILE's layers and blob shapes, and stop")
    parser.add_argument("--torchvision", action="store_true",
                        help="write torchvision VGG state_dict keys (A/B/D/E -> vgg11/13/16/19)")
    parser.add_argument("--rgb-first-conv", action="store_true",
                        help="reverse the first convolution's input channels (Caffe BGR <-> RGB)")
    parser.add_argument("--torchvision-normalisation", action="store_true",
                        help="fold Caffe's 0..255-minus-mean input into torchvision's (x/255-mean)/std "
                             "(implies --rgb-first-conv; exact away from the padded border, see below)")
    parser.add_argument("--mean-pixel", default=",".join(str(v) for v in wc.VGG_MEAN_BGR),
                        help="Caffe's mean pixel B,G,R (default: VGG's %(default)s)")
    parser.add_argument("--v1", action="store_true", help="write a .caffemodel in the V1 format (legacy dims)")
    args = parser.parse_args(argv)

    if args.info:
        print("\n".join(wc.describe(args.info)))
        return 0
    if not args.input or not args.output:
        parser.error("give INPUT and OUTPUT, or --info FILE")
    try:
        mean = tuple(float(v) for v in args.mean_pixel.split(","))
    except ValueError:
        mean = ()
    if len(mean) != 3:
        raise CaffeError(f"--mean-pixel: expected three numbers B,G,R, got '{args.mean_pixel}'")
    print(wc.convert(args.input, args.output, torchvision=args.torchvision, rgb=args.rgb_first_conv,
                     normalise=args.torchvision_normalisation, mean_bgr=mean, v1=args.v1))
    return 0


if __name__ == "__main__":
    run_cli(main)
