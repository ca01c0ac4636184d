#!/usr/bin/env bash
# The GPU checks of the speed roadmap (README, "On a GPU") on a machine with a CUDA device, each
# part time-boxed (710 s at most in all). A lent machine runs one command for at most 10 minutes:
# run it as two calls, PARTS="tests harness bn_layer" (440 s at most), then at once (a machine
# left idle goes back within a minute) PARTS="imagenet placement" (270 s at most).
#   bash tests/gpu/checks.sh [OUT]     into OUT (default gpu-checks/): checks.log (every part's whole
#                                      output) and each benchmark part's pytest-benchmark JSON
#   PARTS="tests harness" bash tests/gpu/checks.sh      only these parts
# Parts, in order of what they settle: tests (pytest -m gpu: correctness on the device),
# harness (BN-Inception through the harness against a bare step, batch 32/128, fp32/bf16),
# bn_layer (own BN against torch's, one layer and in BN-Inception), imagenet (data=imagenet
# against data=synthetic), placement (a 5,000-step paper_mnist, 60 jobs on the machine's cores
# and its GPU, wall time). Packages the machine lacks travel as wheels in .whl/ and the data in
# .data/ (tests/gpu/wheels.sh makes both, here); the wheels go to /tmp/site and the checkout onto
# PYTHONPATH (no pip install of bnbench). Exit status: 1 if any part failed or ran out of time.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-${OUT:-gpu-checks}}
PARTS=${PARTS:-tests harness bn_layer imagenet placement}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 WANDB_MODE=offline
LOG=$OUT/checks.log  # one file: a lent machine sends few back
{ date -u; nvidia-smi; nproc; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
  >"$LOG" 2>&1
status=0
part() {  # part NAME SECONDS COMMAND...: one time-boxed part; its output appended to checks.log
  local name=$1 seconds=$2 rc part_log
  shift 2
  [[ " $PARTS " == *" $name "* ]] || return 0
  echo "== $name (at most ${seconds} s)"
  part_log=$(mktemp)
  SECONDS=0
  timeout "$seconds" "$@" >"$part_log" 2>&1
  rc=$?
  grep -h -E "\[bench\]|passed|failed|skipped|Error|error:|Done [0-9]+ out of" "$part_log" | tail -n 25
  echo "== $name: exit $rc after ${SECONDS} s"
  { echo "== $name: $*"; cat "$part_log"; echo "== $name: exit $rc after ${SECONDS} s"; } >>"$LOG"
  rm -f "$part_log"
  [ "$rc" = 0 ] || status=1
}
bench() {  # bench NAME SECONDS PYTEST-ARGS...: a benchmark part, its JSON in OUT/NAME.json
  local name=$1 seconds=$2
  shift 2
  part "$name" "$seconds" $PY -m pytest -p no:cacheprovider -o addopts="" --benchmark-only -s \
    --benchmark-json="$OUT/$name.json" "$@"
}

part tests 90 $PY -m pytest -p no:cacheprovider -o addopts="" -m gpu -q -rs tests/test_gpu.py
bench harness 200 tests/benchmarks/test_gpu_throughput.py -k "harness or bf16_channels_last"
bench bn_layer 150 tests/benchmarks/test_gpu_throughput.py -k "bn_layer_on_cuda or own_batchnorm"
bench imagenet 150 -m gpu tests/benchmarks/test_imagenet_input.py
scratch=$(mktemp -d)  # the placement study's records and report (only its wall time comes back)
part placement 120 $PY -m bnbench.cli study paper_mnist trainer.accelerator=gpu trainer.max_steps=5000 \
  logger=none data.root="$PWD/.data/fashion-mnist" paths.results="$scratch/results" paths.reports="$scratch/reports"
exit $status
