# bnbench: two commands do all the set-up on a fresh machine.
#   make study   set up, then run the main job: bnbench study paper_mnist (Sec. 4.1, Fig. 1)
#   make test    set up, then run the default test suite (CPU, no network, a few minutes)
# Set-up (idempotent): Debian's dataset-fashion-mnist if its files are missing, a virtualenv in
# .venv, torch only if the venv has none (TORCH, default the CPU wheel torch==2.13.0), then
# bnbench in editable mode with its test and cluster extras.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bnbench-installed
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup data study test test-slow bench clean

study: setup
	$(BIN)/bnbench study paper_mnist

test: setup
	$(BIN)/pytest

test-slow: setup
	$(BIN)/pytest -m slow

# Speed and memory figures (pytest-benchmark), side by side in one run; JSON in .benchmarks/
bench: setup
	$(BIN)/pytest -o addopts="" tests/benchmarks --benchmark-only --benchmark-json=.benchmarks/latest.json -s

setup: data $(STAMP)

data:
	@test -f $(FASHION) || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; }

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,cluster]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) outputs results multirun .benchmarks .pytest_cache
