"""Fixtures of the zoo tests: the data files of every zoo net, written once per session, and a
working directory where the nets' Caffe-relative paths resolve."""
import pytest
from zoo_data import make_all


@pytest.fixture(scope="session")
def zoo_root(tmp_path_factory):
    return make_all(tmp_path_factory.mktemp("zoo"))


@pytest.fixture
def in_zoo(zoo_root, monkeypatch):
    monkeypatch.chdir(zoo_root)
    return zoo_root
