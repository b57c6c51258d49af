"""Table 1 of the VGG paper as plain data: the six ConvNet configurations A, A-LRN, B, C, D, E.

Each configuration is five stages of convolutions, each stage followed by 2x2 max-pooling with
stride 2; then FC-4096, FC-4096, FC-1000 and softmax. A convolution is written as in the paper,
"conv3-256" = 3x3 kernel, 256 outputs (padding 1 for 3x3 so the spatial size is kept, 0 for 1x1).
A-LRN is A with Local Response Normalisation after the first convolution (and its ReLU, as in
AlexNet). C adds 1x1 convolutions as the last layer of stages 3, 4 and 5; D has 3x3 there instead.

Layer names follow the Model Zoo's VGG_ILSVRC_16/19_layers files: conv{stage}_{i}, relu{stage}_{i},
pool{stage}, norm1 (A-LRN), fc6 relu6 drop6 fc7 relu7 drop7 fc8, and prob / loss.

    >>> from vgg_caffe.vgg.configs import get_config
    >>> [c.name for c in get_config("C").stages[2]]
    ['conv3_1', 'conv3_2', 'conv3_3']
"""
from dataclasses import dataclass

from ..errors import CaffeError


@dataclass(frozen=True)
class Conv:
    """One convolution of Table 1: `kernel` x `kernel`, `width` outputs, named conv{stage}_{index}."""
    kernel: int
    width: int
    stage: int
    index: int

    @property
    def name(self):
        return f"conv{self.stage}_{self.index}"

    @property
    def relu(self):
        return f"relu{self.stage}_{self.index}"

    @property
    def pad(self):
        # The paper: "the spatial padding ... is such that the spatial resolution is preserved".
        return (self.kernel - 1) // 2

    def __str__(self):
        return f"conv{self.kernel}-{self.width}"


@dataclass(frozen=True)
class Config:
    """One column of Table 1."""
    name: str
    stages: tuple          # five tuples of Conv
    lrn: bool = False      # LRN (norm1) after conv1_1 + relu1_1
    fc: tuple = (4096, 4096, 1000)

    @property
    def weight_layers(self):
        return sum(len(s) for s in self.stages) + len(self.fc)

    def convs(self):
        return [c for stage in self.stages for c in stage]


def _stages(*columns):
    """Build stages from a compact spelling: each stage is a list of (kernel, width) pairs."""
    return tuple(tuple(Conv(k, w, s + 1, i + 1) for i, (k, w) in enumerate(stage))
                 for s, stage in enumerate(columns))


def _k3(width, n):
    return [(3, width)] * n


# Table 1, column by column. The number of 3x3 layers per stage: A 1,1,2,2,2; B 2,2,2,2,2;
# C as B plus a 1x1 layer closing stages 3-5; D 2,2,3,3,3; E 2,2,4,4,4.
_A = _stages(_k3(64, 1), _k3(128, 1), _k3(256, 2), _k3(512, 2), _k3(512, 2))
_B = _stages(_k3(64, 2), _k3(128, 2), _k3(256, 2), _k3(512, 2), _k3(512, 2))
_C = _stages(_k3(64, 2), _k3(128, 2), _k3(256, 2) + [(1, 256)], _k3(512, 2) + [(1, 512)],
             _k3(512, 2) + [(1, 512)])
_D = _stages(_k3(64, 2), _k3(128, 2), _k3(256, 3), _k3(512, 3), _k3(512, 3))
_E = _stages(_k3(64, 2), _k3(128, 2), _k3(256, 4), _k3(512, 4), _k3(512, 4))

CONFIGS = {
    "A": Config("A", _A),
    "A-LRN": Config("A-LRN", _A, lrn=True),
    "B": Config("B", _B),
    "C": Config("C", _C),
    "D": Config("D", _D),
    "E": Config("E", _E),
}
NAMES = tuple(CONFIGS)

# The LRN of A-LRN, AlexNet's: n = 5, alpha = 1e-4 per squared element, beta = 0.75, k = 2.
# Caffe divides alpha by n, so AlexNet's 1e-4 per element is alpha 5e-4 in Caffe's prototxt.
LRN = {"local_size": 5, "alpha": 0.0005, "beta": 0.75, "k": 2.0}

# Net A's layers the paper copies into the deeper nets before training them ("the first four
# convolutional layers and the last three fully-connected layers"). A has one convolution in
# each of stages 1 and 2, so its first four are conv1_1, conv2_1, conv3_1, conv3_2; every deeper
# configuration has layers of those names and shapes.
A_INIT_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8")


def get_config(name):
    """The Config named `name` (case-insensitive: "a-lrn" works); CaffeError listing valid names."""
    key = str(name).upper()
    if key not in CONFIGS:
        raise CaffeError(f"unknown VGG configuration '{name}'; valid configurations: {', '.join(NAMES)}")
    return CONFIGS[key]


def table1():
    """Table 1 as text, one column per configuration (for --help and the README)."""
    lines = []
    for cfg in CONFIGS.values():
        parts = []
        for s, stage in enumerate(cfg.stages):
            convs = [str(c) for c in stage]
            if cfg.lrn and s == 0:
                convs.append("LRN")
            parts.append(" ".join(convs))
        lines.append(f"{cfg.name:6} ({cfg.weight_layers} weight layers): " + " | maxpool | ".join(parts)
                     + " | maxpool | FC-4096 FC-4096 FC-1000 soft-max")
    return "\n".join(lines)
