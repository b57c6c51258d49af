"""Progress bars: tqdm on stderr, on only when stderr is a terminal and the caller did not ask for
quiet. Caffe's own glog lines are printed separately and never pass through the bar."""
import sys

from tqdm import tqdm


def progress_bar(total=None, enabled=True, desc=None, unit="it", stream=None, **kwargs):
    """A tqdm bar, disabled when `enabled` is False or when `stream` (stderr) is not a TTY."""
    stream = stream or sys.stderr
    on = bool(enabled) and hasattr(stream, "isatty") and stream.isatty()
    return tqdm(total=total, desc=desc, unit=unit, file=stream, disable=not on, dynamic_ncols=True,
                leave=False, **kwargs)
