"""Training log in Caffe's glog line format, and a progress line on a terminal.

Caffe's tools (tools/extra/parse_log.py, plot_training_log.py) read logs line by line, taking the
time from the glog prefix "I1122 04:41:02.123456 12345 solver.cpp:218] " of every line after the
first "Iteration", and the numbers from these messages, which the solver writes exactly so:

  Solving NAME                                                   (start time)
  Iteration N (X iter/s, Ys/D iters), loss = L
      Train net output #i: NAME = V (* W = W*V loss)
  Iteration N, lr = R
  Iteration N, Testing net (#0)
      Test net output #i: NAME = V

Every line, to stderr and to the --log file, carries the prefix (so Caffe's parser never meets a
line it cannot date). The progress bar (tqdm, vgg_caffe.progress) exists only on a TTY, is erased
before each log line and redrawn after it, and never reaches a file. An optional `events` sink
(vgg_caffe.train.tensorboard) sees every message with its time: it turns them into TensorBoard
scalars, so whatever the log says is what TensorBoard shows.
"""
import math
import os
import re
import socket
import sys
from collections import OrderedDict
from datetime import datetime

from ..progress import progress_bar

def fmt(value):
    """A number as C++'s default ostream prints a float (6 significant digits, %g)."""
    return f"{value:g}"


class TrainingLog:
    """Caffe-style log lines to a stream (stderr) and optionally a file; a tqdm bar on a TTY.

    enabled=False (ranks other than 0) makes every call a no-op. progress: None shows the bar when
    the stream is a terminal, False never (--no-progress). events: an object with
    observe(message, walltime) and close() (vgg_caffe.train.tensorboard.TensorBoardSink).
    """

    def __init__(self, stream=None, path=None, enabled=True, progress=None, events=None):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.file = None
        self.pid = os.getpid()
        if progress is None:
            progress = bool(getattr(self.stream, "isatty", lambda: False)())
        self.show_progress = progress and enabled
        self._bar = None
        self.events = events if enabled else None
        if enabled and path:
            self.open_file(path)

    def open_file(self, path):
        """Append to `path`, starting with glog's header lines (the year comes from the file)."""
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self.file = open(path, "a", encoding="utf-8", buffering=1)
        now = datetime.now()
        self.file.write(f"Log file created at: {now:%Y/%m/%d %H:%M:%S}\n"
                        f"Running on machine: {socket.gethostname()}\n"
                        "Log line format: [IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg\n")

    def line(self, message, level="I", depth=1):
        """One glog line; its file:line is where in this project the message comes from."""
        if not self.enabled:
            return
        frame = sys._getframe(depth)
        where = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
        now = datetime.now()
        text = f"{level}{now:%m%d %H:%M:%S}.{now.microsecond:06d} {self.pid:5d} {where}] {message}\n"
        if self._bar is not None:
            self._bar.clear()   # the line goes above the bar, which is redrawn below it
        self.stream.write(text)
        self.stream.flush()
        if self._bar is not None:
            self._bar.refresh()
        if self.file:
            self.file.write(text)
        if self.events is not None:
            self.events.observe(message, now.timestamp())

    def info(self, message):
        self.line(message, "I", 2)

    def warning(self, message):
        self.line(message, "W", 2)

    def error(self, message):
        self.line(message, "E", 2)

    # -- progress ------------------------------------------------------------------------------

    def progress(self, iteration, max_iter, loss, rate, iters_per_s=None):
        """Move the bar to `iteration` of `max_iter`, showing the smoothed loss and the rate; tqdm
        measures the speed and the ETA itself (iters_per_s is accepted for the solver's call)."""
        if not self.show_progress:
            return
        if self._bar is None:
            self._bar = progress_bar(max_iter, True, desc="train", unit="iter", stream=self.stream,
                                     initial=iteration)
        self._bar.set_postfix_str(f"loss {fmt(loss)} lr {fmt(rate)}", refresh=False)
        self._bar.update(iteration - self._bar.n)   # redraws at most every 0.1 s (tqdm's mininterval)

    def close(self):
        if self._bar is not None:
            self._bar.close()   # leave=False: the bar is erased
            self._bar = None
        if self.enabled:
            self.stream.flush()
        if self.file:
            self.file.close()
            self.file = None
        if self.events is not None:
            self.events.close()
            self.events = None


# -- reading logs back (what Caffe's tools/extra/parse_log.py does) --------------------------------

_ITERATION = re.compile(r"Iteration (\d+)")
_LR = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")
_OUTPUT = re.compile(r"(Train|Test) net output #(\d+): (\S+) = ([-+.\deE]+|nan|-?inf)")
_STAMP = re.compile(r"^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) ")
_CREATED = re.compile(r"^Log file created at: (\d{4})/")


def _stamp(line, year):
    m = _STAMP.match(line)
    if not m:
        return None
    mo, d, h, mi, s, us = (int(g) for g in m.groups())
    return datetime(year, mo, d, h, mi, s, us)


def parse_log(path):
    """Read a training log (ours or Caffe's): (train_rows, test_rows), lists of dicts with
    NumIters, Seconds (since the "Solving" line), LearningRate and one key per net output, as the
    .train / .test CSVs of Caffe's parse_log.py. Lines without a glog prefix are skipped."""
    year = datetime.fromtimestamp(os.path.getctime(path)).year
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    for line in lines[:5]:
        m = _CREATED.match(line)
        if m:
            year = int(m.group(1))
    start = None
    iteration, rate = None, float("nan")
    rows = {"Train": [], "Test": []}
    current = {"Train": None, "Test": None}
    for line in lines:
        when = _stamp(line, year)
        if when is None:
            continue
        if start is None:
            if "Solving" in line:
                start = when
            continue
        m = _ITERATION.search(line)
        if m:
            iteration = int(m.group(1))
        if iteration is None:
            continue
        m = _LR.search(line)
        if m:
            rate = float(m.group(1))
        m = _OUTPUT.search(line)
        if m:
            kind, name, value = m.group(1), m.group(3), float(m.group(4))
            row = current[kind]
            if row is None or row["NumIters"] != iteration or name in row:
                row = OrderedDict(NumIters=iteration, Seconds=(when - start).total_seconds(),
                                  LearningRate=rate)
                rows[kind].append(row)
                current[kind] = row
            row[name] = value
    for kind in rows:  # the first rows come before any "lr =" line (as Caffe's tool fixes it)
        if len(rows[kind]) > 1 and math.isnan(rows[kind][0]["LearningRate"]):
            rows[kind][0]["LearningRate"] = rows[kind][1]["LearningRate"]
    return rows["Train"], rows["Test"]


def write_csv(path, rows, delimiter=","):
    """Rows as Caffe's parse_log.py writes them (header of the first row's keys)."""
    from ..fileio import atomic_write

    if not rows:
        atomic_write(path, "")
        return
    columns = list(rows[0])
    for row in rows[1:]:
        columns += [c for c in row if c not in columns]
    out = [delimiter.join(columns)]
    for row in rows:
        out.append(delimiter.join("" if row.get(c) is None else repr(float(row[c])) if c != "NumIters"
                                  else str(row[c]) for c in columns))
    atomic_write(path, "\n".join(out) + "\n")
