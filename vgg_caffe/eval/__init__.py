"""Evaluation: the paper's test protocols (protocols.py), dense fc->conv conversion (dense.py), the
images they read (data.py), and error rates and tables (tables.py). `python -m vgg_caffe.evaluate`
is the command line."""
from .data import open_data  # noqa: F401
from .protocols import PROTOCOLS, VGG_MEAN, Model, crops, evaluate, grid_offsets  # noqa: F401
from .tables import COLUMNS, error_rates, format_table, parse_scale, test_scales, topk_correct, write_results  # noqa: F401
