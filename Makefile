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

.PHONY: setup data study test test-slow test-faults bench clean slurm-up slurm-down test-slurm test-browser gpu-wheels

study: setup
	$(BIN)/bnbench study paper_mnist

test: setup
	$(BIN)/pytest

test-slow: setup
	$(BIN)/pytest -m slow

# Every fault tried (README, "Faults tried, and what happens"), slow ones included; SLURM's: make test-slurm
FAULT_TESTS := tests/test_resume.py tests/test_nothing_lost.py tests/test_cli_errors.py tests/test_wandb_unreachable.py \
	tests/test_ddp.py tests/test_runs.py
test-faults: setup
	$(BIN)/pytest -m "not gpu and not slurm" $(FAULT_TESTS)

# Speed and memory figures (pytest-benchmark), side by side in one run; JSON in .benchmarks/
bench: setup
	$(BIN)/pytest -o addopts="" tests/benchmarks --benchmark-only --benchmark-json=.benchmarks/latest.json -s

# A one-node SLURM cluster on this machine (tests/cluster/slurm.sh; installs slurm-wlm and munge
# if missing; state, logs and slurm.conf under SLURM_DIR). Point clients at it with
# `export SLURM_CONF=$(SLURM_DIR)/slurm.conf` (`make slurm-up` prints it).
SLURM_DIR ?= $(or $(BNBENCH_SLURM_DIR),/tmp/bnbench-slurm)
SLURM_SH := $(SUDO) env BNBENCH_SLURM_DIR=$(SLURM_DIR) bash tests/cluster/slurm.sh

slurm-up:
	$(SLURM_SH) up

slurm-down:
	$(SLURM_SH) down

# The `slurm` tests (tests/test_slurm.py) on that cluster: boots it unless it is already up, and
# stops it again afterwards (also when the tests fail or are interrupted); exits with pytest's status.
test-slurm: setup
	@was_up=0; $(SLURM_SH) status >/dev/null 2>&1 && was_up=1; \
	trap 'status=$$?; [ $$was_up = 1 ] || $(SLURM_SH) down; exit $$status' EXIT; \
	trap 'exit 130' INT TERM; \
	$(SLURM_SH) up && SLURM_CONF=$(SLURM_DIR)/slurm.conf $(BIN)/pytest -m slurm

# report.html in a real browser (tests/test_report_browser.py, -m browser): installs Debian's
# chromium if it is missing, then runs them
test-browser: setup
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }
	$(BIN)/pytest -m browser

# For a lent GPU machine (README, "On a GPU"): wheels of what its image lacks into .whl/ and the
# data into .data/ (both git-ignored); carry both there and run `bash tests/gpu/checks.sh`
gpu-wheels: setup
	bash tests/gpu/wheels.sh

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
