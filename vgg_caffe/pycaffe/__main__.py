"""python -m vgg_caffe.pycaffe SCRIPT.py [ARGS]: run an unmodified pycaffe script on vgg_caffe.

`import caffe` (and caffe.io, caffe.proto.caffe_pb2, ...) in the script, and in the Python-layer
modules its nets load, gets vgg_caffe.pycaffe. The script runs as __main__ with sys.argv =
[SCRIPT.py, ARGS...] and its directory first on sys.path, as `python SCRIPT.py` would. A
CaffeError (a bad prototxt, a missing file, a shape that does not fit) is printed as one line and
exits with status 1; any other exception shows the script's own traceback (the runner's frames
left out) and exits with 1.
"""
import os
import runpy
import sys
import traceback

from ..errors import CaffeError


def _script_frames(tb, script):
    """The traceback from the first frame of the script on (the runner's frames dropped)."""
    start = tb
    while start is not None and os.path.abspath(start.tb_frame.f_code.co_filename) != script:
        start = start.tb_next
    return start or tb


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: " + __doc__.strip().splitlines()[0])
        return 0 if argv else 2
    script = os.path.abspath(argv[0])
    if not os.path.isfile(script):
        print(f"error: {argv[0]}: no such script", file=sys.stderr)
        return 2
    from . import install

    install()
    sys.argv = argv
    sys.path.insert(0, os.path.dirname(script))
    try:
        runpy.run_path(script, run_name="__main__")
    except CaffeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except SystemExit:
        raise
    except BaseException as e:
        traceback.print_exception(type(e), e, _script_frames(e.__traceback__, script))
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
