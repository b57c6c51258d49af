"""TensorBoard events of a training run: `python -m vgg_caffe.solve SOLVER --tensorboard DIR`.

Caffe has no TensorBoard; its record of a run is the glog log, which tools/parse_log.py and
tools/plot_training_log.py read. This sink is fed the very messages the TrainingLog writes
(vgg_caffe.train.log), so the events are the logged numbers, at the logged iterations and times:

  "Iteration N (X iter/s, ...), loss = L"     train/smoothed_loss = L (Caffe's average_loss mean),
                                              throughput/iters_per_s = X and throughput/images_per_s
                                              = X * images per iteration (batch * iter_size)
  "    Train net output #k: NAME = V ..."     train/NAME = V (this iteration's value)
  "Iteration N, lr = R"                       train/lr = R
  "Iteration N, Testing net (#i)"             the test net the next lines belong to
  "    Test net output #k: NAME = V ..."      test/NAME = V (test1/NAME ... for test nets #1, ...)
  "Test loss: V"                              test/total_loss = V (test_compute_loss)

An output blob of several elements logs one line per element; its elements after the first are
NAME_1, NAME_2, ... The first display (iteration 0, "0 iter/s") measures no speed and adds no
throughput point. Uses torch.utils.tensorboard, which needs the optional `tensorboard` package:
require() says how to install it, and solve.py calls it before anything is trained.
"""
import re

from ..errors import CaffeError

_ITERATION = re.compile(r"^Iteration (\d+)\b")
_DISPLAY = re.compile(r"^Iteration \d+ \((\S+) iter/s, [^)]*\), loss = (\S+)$")
_FINAL = re.compile(r"^Iteration \d+, loss = (\S+)$")
_LR = re.compile(r"^Iteration \d+, lr = (\S+)$")
_TESTING = re.compile(r"^Iteration \d+, Testing net \(#(\d+)\)$")
_OUTPUT = re.compile(r"^\s*(Train|Test) net output #(\d+): (\S+) = (\S+)")
_TEST_LOSS = re.compile(r"^Test loss: (\S+)$")


def require():
    """torch.utils.tensorboard.SummaryWriter, or a CaffeError saying how to get it."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise CaffeError("--tensorboard needs the `tensorboard` package, which is not installed: "
                         "pip install tensorboard (or run without --tensorboard)") from None
    return SummaryWriter


def images_per_iteration(solver):
    """Images one iteration of `solver` consumes: the train net's global batch times iter_size
    (the batch the data layers declare is the global one, also in a data-parallel job)."""
    batch = solver._declared_batch(solver.net)
    return batch * solver.param.iter_size if batch else None


class TensorBoardSink:
    """Turns TrainingLog messages into scalars in an events file under `log_dir`."""

    def __init__(self, log_dir, images_per_iter=None):
        writer = require()
        try:
            self.writer = writer(log_dir=log_dir)
        except OSError as e:     # the writer creates log_dir at once: a bad path fails here
            raise CaffeError(f"--tensorboard {log_dir}: cannot create the events directory "
                             f"({e.strerror or e})") from None
        self.log_dir = log_dir
        self.images_per_iter = images_per_iter
        self.iteration = 0
        self.test_net = 0
        self._names = {}    # tag -> times seen in the current block of output lines

    def observe(self, message, walltime=None):
        m = _ITERATION.match(message)
        if m:
            self.iteration = int(m.group(1))
        m = _OUTPUT.match(message)
        if m:
            kind, index, name, value = m.groups()
            if index == "0":
                self._names = {}
            prefix = "train" if kind == "Train" else ("test" if self.test_net == 0 else f"test{self.test_net}")
            tag = f"{prefix}/{name}"
            seen = self._names.get(tag, 0)
            self._names[tag] = seen + 1
            self._add(tag if not seen else f"{tag}_{seen}", value, walltime)
            return
        m = _DISPLAY.match(message)
        if m:
            per_s, loss = m.groups()
            self._add("train/smoothed_loss", loss, walltime)
            if float(per_s) > 0:
                self._add("throughput/iters_per_s", per_s, walltime)
                if self.images_per_iter:
                    self._add("throughput/images_per_s", float(per_s) * self.images_per_iter, walltime)
            return
        for pattern, tag in ((_FINAL, "train/smoothed_loss"), (_LR, "train/lr")):
            m = pattern.match(message)
            if m:
                self._add(tag, m.group(1), walltime)
                return
        m = _TESTING.match(message)
        if m:
            self.test_net = int(m.group(1))
            return
        m = _TEST_LOSS.match(message)
        if m:
            self._add("test/total_loss" if self.test_net == 0 else f"test{self.test_net}/total_loss",
                      m.group(1), walltime)

    def _add(self, tag, value, walltime):
        self.writer.add_scalar(tag, float(value), global_step=self.iteration, walltime=walltime)

    def close(self):
        self.writer.close()
