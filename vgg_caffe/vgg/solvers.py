"""The paper's solvers for each configuration and training regime (Sect. 3.1): SGD with momentum
0.9, weight decay 5e-4, base_lr 0.01 from scratch (S256) or 1e-3 when fine-tuning (S384 from the
S256 run, multi-scale from S384), the rate lowered tenfold when validation accuracy stops
improving (this project's `plateau` policy), and the deeper nets' initialisation from net A.
"""
import os
from .configs import A_INIT_LAYERS, get_config
from .netgen import INIT_FROM, Options
from ..errors import CaffeError
from ..proto import pb


def solver(config, regime, net_path, opts=None):
    """(SolverParameter, comment lines) of one regime for the net at `net_path`."""
    cfg, opts = get_config(config), opts or Options()
    s = pb.SolverParameter()
    s.net = net_path
    s.test_iter.append(opts.test_iter)
    s.test_interval = opts.test_interval
    s.base_lr = opts.base_lr if INIT_FROM[regime] is None else opts.finetune_lr
    s.display = opts.display
    s.max_iter = opts.max_iter
    s.lr_policy = "plateau"
    s.plateau_metric = "accuracy"
    s.plateau_patience = opts.plateau_patience
    s.plateau_max_drops = opts.plateau_max_drops
    s.gamma = 0.1
    s.momentum = opts.momentum
    s.weight_decay = opts.weight_decay
    s.snapshot = opts.snapshot
    s.snapshot_prefix = _prefix(opts, cfg.name, regime)
    s.solver_mode = pb.SolverParameter.SolverMode.Value(opts.solver_mode)
    s.random_seed = opts.random_seed
    lo, hi = opts.scales[regime]
    scale = f"S = {lo}" if lo == hi else f"S jittered in [{lo}, {hi}]"
    comments = [f"VGG configuration {cfg.name} ({cfg.weight_layers} weight layers), regime {regime}: "
                f"training scale {scale}, batch {opts.batch_size} (set by the net's data layer)."]
    source = INIT_FROM[regime]
    if source is not None:
        s.weights.append(final_weights(opts, cfg.name, source))
        comments.append(f"Initialised from the {source} run's final weights ({s.weights[0]}); "
                        f"base_lr {s.base_lr:g} as in the paper's fine-tuning.")
        comments.append("Other weights: python -m vgg_caffe.solve {solver} --weights OTHER.caffemodel")
    elif cfg.name not in ("A", "A-LRN"):
        comments.append("The paper initialises the first four convolutional layers and the three "
                        "fully-connected layers from net A (the rest at random):")
        comments.append(f"  python -m vgg_caffe.solve {{solver}} --weights "
                        f"{final_weights(opts, 'A', 'S256')} --init-layers {','.join(A_INIT_LAYERS)}")
        comments.append("(or, as the paper notes, train from scratch with Glorot initialisation: "
                        "netgen --filler xavier)")
    else:
        comments.append("Trained from random initialisation.")
    for key, value in opts.extra_solver.items():
        _set_field(s, key, value)
    return s, comments


def final_weights(opts, config, regime):
    """The weights a finished run leaves: Caffe snapshots after the last iteration as
    PREFIX_iter_<max_iter>.caffemodel (snapshot_after_train), whatever the rate schedule did."""
    max_iter = opts.extra_solver.get("max_iter", opts.max_iter)
    return f"{_prefix(opts, config, regime)}_iter_{max_iter}.caffemodel"


def _prefix(opts, config, regime):
    return os.path.join(opts.snapshot_dir, f"{config}_{regime}") if opts.snapshot_dir else f"{config}_{regime}"


def _set_field(message, key, value):
    desc = message.DESCRIPTOR.fields_by_name.get(key)
    if desc is None:
        raise CaffeError(f"netgen: SolverParameter has no field '{key}'; fields: "
                         + ", ".join(sorted(message.DESCRIPTOR.fields_by_name)))
    if desc.is_repeated:
        message.ClearField(key)
        getattr(message, key).extend(value if isinstance(value, (list, tuple)) else [value])
    elif desc.enum_type is not None and isinstance(value, str):
        setattr(message, key, desc.enum_type.values_by_name[value].number)
    else:
        setattr(message, key, value)
