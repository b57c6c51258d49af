"""`python -m vgg_caffe.netgen --out prototxt [--config E]`: write the train_val, deploy,
deploy_dense and solver prototxt of every configuration of Table 1 (what `make prototxt` runs).
The generator itself is vgg_caffe.vgg.netgen.
"""
import argparse
from .vgg.configs import NAMES, table1
from .vgg.netgen import Options, write_all
from .errors import run_cli


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m vgg_caffe.netgen", description=__doc__.split("\n\n")[0],
                                 epilog="Table 1:\n" + table1(), formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory; files go to OUT/<CONFIG>/")
    ap.add_argument("--config", help=f"one of {', '.join(NAMES)} (default: all)")
    ap.add_argument("--net-dir", help="directory the solvers name their nets under (default: OUT)")
    ap.add_argument("--width-div", type=int, default=1, help="divide every conv and FC-4096 width by this")
    ap.add_argument("--crop", type=int, default=224, help="crop / input size (scales follow: S*crop/224)")
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--test-batch-size", type=int, default=50)
    ap.add_argument("--train-source", default=Options.train_source)
    ap.add_argument("--test-source", default=Options.test_source)
    ap.add_argument("--filler", choices=("gaussian", "xavier"), default="gaussian")
    ap.add_argument("--snapshot-dir", default=Options.snapshot_dir)
    ap.add_argument("--solver-mode", choices=("CPU", "GPU"), default="GPU")
    args = ap.parse_args(argv)
    written = write_all(args.out, args.config, net_dir=args.net_dir, width_div=args.width_div, crop=args.crop,
                        num_classes=args.num_classes, batch_size=args.batch_size,
                        test_batch_size=args.test_batch_size, train_source=args.train_source,
                        test_source=args.test_source, filler=args.filler, snapshot_dir=args.snapshot_dir,
                        solver_mode=args.solver_mode)
    groups = [written] if args.config else list(written.values())
    for paths in groups:
        for path in paths.values():
            print(path)
    return 0


if __name__ == "__main__":
    run_cli(main)
