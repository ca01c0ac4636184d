#!/usr/bin/env bash
# What a lent GPU machine needs beside the checkout, into git-ignored folders of it (README, "On a GPU"):
#   .whl/   wheels of the packages its image lacks (hydra-core, omegaconf, antlr4, the joblib and submitit
#           launchers, kornia), at the versions this checkout's .venv runs, for that machine's
#           Python (3.12, x86-64; PY_VERSION=... for another)
#   .data/fashion-mnist/   the four Fashion-MNIST IDX files, for the placement check
# Run here (it needs PyPI), then carry both: run(carry=[".whl", ".data"], ...) with tests/gpu/checks.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY_VERSION=${PY_VERSION:-3.12}
PIP=${PIP:-.venv/bin/pip}
version() { .venv/bin/python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
rm -rf .whl && mkdir -p .whl
wanted=()
for name in hydra-core omegaconf hydra-joblib-launcher hydra-submitit-launcher submitit kornia kornia_rs; do wanted+=("$name==$(version "$name")"); done
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do platforms+=(--platform "$p"); done
"$PIP" download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  "${platforms[@]}" -d .whl "${wanted[@]}"
# antlr4-python3-runtime (omegaconf's parser) is published as a source archive only: build its wheel (pure Python)
"$PIP" wheel -q --no-deps -w .whl "antlr4-python3-runtime==$(version antlr4-python3-runtime)"
mkdir -p .data/fashion-mnist
cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .data/fashion-mnist/
du -sh .whl .data
