"""Where a solver computes and how its GPU is fed: the device, cuDNN's settings, the data
layers' workers and pinned memory, and the label checks made on the host.

Caffe's solver runs on the GPU of solver_mode / device_id (or the --gpu flag); so does ours, with
--device overriding both. On a GPU:
- cuDNN autotunes its convolution algorithms (cudnn.benchmark) for training nets, whose shapes
  are fixed, unless --deterministic asks for bit-repeatable runs: then cuDNN picks deterministic
  algorithms, autotuning is off and torch.use_deterministic_algorithms(warn_only=True) makes the
  other ops deterministic where torch can (a warning where it cannot; nothing fails).
  Precision (TF32 on or off) is the net's own setting, vgg_caffe.precision; the log says which.
- The data layers decode in worker processes sharing this machine's cores between the ranks
  (Caffe prefetches on a thread per data layer; decoding 256 JPEGs per iteration needs more), their
  batches are collated into pinned memory, and copied with non_blocking=True, so the copy of
  iteration i+1's batch overlaps with nothing waiting on it. Layers that can (VGGData.finish_on)
  send uint8 batches and make the float batch on the GPU.
- Labels are checked on the CPU tensor, before the copy: a check on a GPU tensor is a host
  synchronisation per loss layer per iteration (SoftmaxWithLoss checks only CPU labels itself).
On a CPU nothing changes: decoding in the training process, no pinning, no copies.
"""
import os

import torch

from ..errors import CaffeError
from ..proto import pb


def choose_device(device, param, source, log):
    """The torch.device of a solver: `device` (--device) if given, else solver_mode / device_id."""
    if device is not None:
        if isinstance(device, torch.device):
            device = str(device)
        from ..machine import torch_device
        # one check for every tool's --device: malformed names, no CUDA, a GPU that does not exist
        return torch_device(device)
    if param.solver_mode == pb.SolverParameter.GPU:
        if torch.cuda.is_available():
            if param.device_id >= torch.cuda.device_count():
                raise CaffeError(f"{source}: device_id {param.device_id} but CUDA sees "
                                 f"{torch.cuda.device_count()} GPU(s)")
            return torch.device("cuda", param.device_id)
        log.info("solver_mode is GPU but no CUDA device is available: running on the CPU")
    return torch.device("cpu")


def place(net, test_nets, device, param, world_size, log, precision=None, deterministic=False):
    """Move a solver's nets to `device` (checking they still share blobs), set cuDNN and the data
    layers up for it, and log what runs where. The precision is logged by whoever sets it: here
    when given, else the tool's --precision (vgg_caffe.precision.from_arguments)."""
    from .. import precision as speed

    for n in [net] + list(test_nets):
        if precision is not None:
            n.precision = precision
        n.to(device)
    assert_shared(net, test_nets)
    log.info(f"Device: {device}" + (f"; {speed.describe(precision, device)}" if precision else ""))
    line = configure_cudnn(device, deterministic)
    if line:
        log.info(line)
    test_iters = {layer: param.test_iter[i] for i, tn in enumerate(test_nets)
                  if i < len(param.test_iter) for layer in tn.data_layers}
    layers = [layer for n in [net] + list(test_nets) for layer in n.data_layers]
    feed_data_layers(layers, device, world_size, test_iters)


def configure_cudnn(device, deterministic):
    """cuDNN's settings for training on `device`; returns the log line saying what they are."""
    if device.type != "cuda":
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            return "Deterministic: on (CPU kernels are deterministic already)"
        return None
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; it reads this when it starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
        return "Deterministic: cuDNN deterministic algorithms, no autotuning (bit-repeatable runs)"
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark = True   # the train net's shapes are fixed: tune once, reuse
    return "cuDNN: autotuning on (cudnn.benchmark; --deterministic for bit-repeatable runs)"


def default_workers(world_size, cores=None):
    """Decoding processes per rank on a GPU: this machine's cores shared between the ranks, one
    left to each rank's training process."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, world_size) - 1)


def feed_data_layers(layers, device, world_size, test_iters=None):
    """Set the data layers' loaders for `device`: on CUDA, workers for loaders left on "auto" and
    pinned batches; the test layers' prefetch wraps around their test_iter batches (the next test
    pass starts at batch 0 again). `test_iters`: {layer: test_iter}."""
    cuda = device.type == "cuda" and torch.cuda.is_available()
    for layer in layers:
        loader = getattr(layer, "loader", None)
        if loader is None or not hasattr(loader, "configure"):
            continue
        loader.configure(workers=default_workers(world_size) if cuda else 0, pin_memory=cuda,
                         cycle=(test_iters or {}).get(layer))
        if cuda and hasattr(layer, "finish_on"):   # uint8 across, the float batch made there
            layer.finish_on(device)


def to_device(value, device):
    """An input on `device`: pinned tensors are copied asynchronously (non_blocking)."""
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value)
    if value.device == device:
        return value
    return value.to(device, non_blocking=device.type == "cuda")


def check_labels(net, inputs):
    """Run each SoftmaxWithLoss layer's label check on the host tensors in `inputs`, before any
    copy, for the loss layers whose label bottom is a net input."""
    for layer in net.layers.values():
        bottoms = list(layer.param.bottom)
        if not hasattr(layer, "check_host_labels") or len(bottoms) < 2 or bottoms[1] not in inputs:
            continue
        label = inputs[bottoms[1]]
        if isinstance(label, torch.Tensor) and label.device.type == "cpu":
            layer.check_host_labels(label)


def assert_shared(train_net, test_nets):
    """Train and test nets share learnable blobs by layer name (Caffe's ShareTrainedLayersWith);
    check that moving them to a device kept one tensor per shared blob."""
    train = dict(zip(train_net.layer_names, train_net.layers.values()))
    for i, net in enumerate(test_nets):
        for name, layer in zip(net.layer_names, net.layers.values()):
            source = train.get(name)
            if source is None or not len(layer.blobs):
                continue
            for j, (a, b) in enumerate(zip(source.blobs, layer.blobs)):
                if a is not b or a.data_ptr() != b.data_ptr():
                    raise CaffeError(f"test net #{i}: layer '{name}' blob {j} no longer shares the train "
                                     f"net's tensor after moving to {a.device}")
