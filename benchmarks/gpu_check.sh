#!/usr/bin/env bash
# The GPU checks of bncourse.triton, in one go, for a machine with an NVIDIA GPU:
#   1. the CUDA tests: tests/core/test_triton.py compiled on the GPU (with the benchmark shapes), and
#      the core suite's CUDA cases (the torch-cuda backend and the cuda device, marker "cuda");
#   2. the benchmark (bench_triton.py), which writes benchmarks/results/triton_<device>_<date>.{json,md}.
# Everything it prints also goes to benchmarks/results/gpu_check_<date>.log. Commit benchmarks/results/.
#
#   bash benchmarks/gpu_check.sh            # tests, then the full benchmark (21 rounds)
#   QUICK=1 bash benchmarks/gpu_check.sh    # 7 rounds
#   bash benchmarks/gpu_check.sh tests      # only the tests   (first compiles take a few minutes)
#   bash benchmarks/gpu_check.sh bench      # only the benchmark
#   PY=/path/to/python bash benchmarks/gpu_check.sh   # default: .venv/bin/python, else python3
set -uo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-all}
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
unset TRITON_INTERPRET
export PYTHONPATH=$PWD
mkdir -p benchmarks/results
LOG=benchmarks/results/gpu_check_$(date -u +%Y-%m-%d).log
{
  echo "== $(date -u '+%Y-%m-%d %H:%M UTC')"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__); assert torch.cuda.is_available(), 'no CUDA device'" || exit 1
  tests_rc=0
  bench_rc=0
  if [ "$WHAT" != bench ]; then
    echo "== tests (compiled on the GPU)"
    "$PY" -m pytest tests/core/test_triton.py -q -p no:cacheprovider -rs --durations=5
    tests_rc=$?
    "$PY" -m pytest tests/core -m cuda -q -p no:cacheprovider -rs --durations=5 || tests_rc=1
  fi
  if [ "$WHAT" != tests ]; then
    echo "== benchmark"
    "$PY" benchmarks/bench_triton.py ${QUICK:+--quick}
    bench_rc=$?
  fi
  echo "== tests rc=$tests_rc benchmark rc=$bench_rc"
  [ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
