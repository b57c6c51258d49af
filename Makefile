# vgg-caffe. Every target sets itself up on a fresh machine (a venv in .venv).
#   make demo                   the main job on embedded data (installs first)
#   make test                   the whole test suite
#   make prototxt [CONFIG=E]    regenerate prototxt/<config>/
#   make bench                  benchmarks, numbers to bench/results/
# TORCH picks the torch to install when none is present (GPU users: make setup TORCH=torch).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup test prototxt demo bench proto clean

$(STAMP): pyproject.toml setup.py vgg_caffe/data/_jpegrows.c
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(BIN)/python -m pytest -q tests

prototxt: setup
	$(BIN)/python -m vgg_caffe.netgen --out prototxt $(if $(CONFIG),--config $(CONFIG))

demo: setup
	$(BIN)/python -m vgg_caffe.demo

bench: setup
	$(BIN)/python -m bench

# Regenerate vgg_caffe/proto/caffe_pb2.py after editing caffe.proto (tests fail until you do).
proto: setup
	cd vgg_caffe/proto && ../../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. caffe.proto

clean:
	rm -rf $(VENV) demo_out .pytest_cache
