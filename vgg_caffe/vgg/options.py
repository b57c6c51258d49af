"""What a generated VGG net or solver depends on besides its configuration (Options), and the
paper's constants: the mean pixel, the three training regimes, their scales and which regime each
is initialised from."""
from dataclasses import dataclass, field, fields

from ..errors import CaffeError

MEAN_BGR = (103.939, 116.779, 123.68)
REGIMES = ("S256", "S384", "multiscale")
# The paper's training scales (smallest image side S) at crop 224.
PAPER_SCALES = {"S256": (256, 256), "S384": (384, 384), "multiscale": (256, 512)}
# Which regime each one is initialised from (None: from scratch).
INIT_FROM = {"S256": None, "S384": "S256", "multiscale": "S384"}
DATA_MODULE, DATA_CLASS = "vgg_caffe.data.vgg_layer", "VGGData"


@dataclass
class Options:
    """Everything a generated net or solver depends on besides the configuration.

    The defaults are the paper's ImageNet setting; small values give a small VGG on the same path.
    """
    width_div: int = 1                  # every conv and FC-4096 width divided by this
    crop: int = 224                     # training crop and deploy input size
    num_classes: int = 1000
    train_source: str = "data/ilsvrc12_train_lmdb"
    test_source: str = "data/ilsvrc12_val_lmdb"
    batch_size: int = 256               # the global batch (the paper's 256)
    test_batch_size: int = 50
    deploy_batch: int = 10
    mean_value: tuple = MEAN_BGR
    color_shift: float = 0.1            # std of the PCA colour shift (AlexNet's)
    mirror: bool = True
    scales: dict = None                 # regime -> (S_min, S_max); None: the paper's times crop/224
    filler: str = "gaussian"            # "gaussian" (std 0.01) or "xavier" (Glorot, the paper's note)
    snapshot_dir: str = "snapshots"
    # Solver settings (the paper's unless given).
    base_lr: float = 0.01
    finetune_lr: float = 0.001          # S384 and multi-scale regimes
    momentum: float = 0.9
    weight_decay: float = 0.0005
    max_iter: int = 370000              # 74 epochs of 1.28M images at batch 256
    test_iter: int = 1000               # 50,000 validation images / 50
    test_interval: int = 5000           # about one epoch
    display: int = 20
    snapshot: int = 10000
    plateau_patience: int = 2           # tests without improvement before the rate drops 10x
    plateau_max_drops: int = 3          # the paper lowered the rate three times
    solver_mode: str = "GPU"
    random_seed: int = 1
    extra_solver: dict = field(default_factory=dict)   # any further SolverParameter fields

    def __post_init__(self):
        for name in ("width_div", "crop", "num_classes", "batch_size", "test_batch_size", "deploy_batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise CaffeError(f"netgen option {name} must be a positive integer, got {value!r}")
        if self.filler not in ("gaussian", "xavier"):
            raise CaffeError(f"netgen option filler must be 'gaussian' or 'xavier', got {self.filler!r}")
        if self.solver_mode not in ("CPU", "GPU"):
            raise CaffeError(f"netgen option solver_mode must be CPU or GPU, got {self.solver_mode!r}")
        scales = {r: tuple(int(round(s * self.crop / 224)) for s in PAPER_SCALES[r]) for r in REGIMES}
        scales.update({r: tuple(int(v) for v in s) for r, s in (self.scales or {}).items()})
        for regime, (lo, hi) in scales.items():
            if regime not in REGIMES:
                raise CaffeError(f"netgen: unknown regime '{regime}'; regimes: {', '.join(REGIMES)}")
            if not self.crop <= lo <= hi:
                raise CaffeError(f"netgen: regime {regime} scale range [{lo}, {hi}] must satisfy "
                                 f"crop ({self.crop}) <= S_min <= S_max")
        self.scales = scales

    def width(self, w):
        return max(1, w // self.width_div)

    def non_defaults(self):
        default = Options()
        return [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)]


# ----------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------
