"""Shared nets and helpers for the pycaffe API tests (tests/pycaffe/test_pycaffe_*.py)."""
import pytest
from pycaffe_helpers import SMALL


@pytest.fixture
def caffe():
    from vgg_caffe import pycaffe

    return pycaffe


@pytest.fixture
def small_path(tmp_path):
    """small.prototxt without force_backward; small_fb.prototxt with it."""
    (tmp_path / "small.prototxt").write_text(SMALL.replace("{force}", ""))
    (tmp_path / "small_fb.prototxt").write_text(SMALL.replace("{force}", "force_backward: true"))
    return tmp_path / "small.prototxt"
