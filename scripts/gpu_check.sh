#!/usr/bin/env bash
# GPU check of the dense engine (dense-engine issue, item 6): on a machine with CUDA,
#   1. runs the dense engine's tests on the GPU (SNNBP_TEST_DEVICE=cuda, see tests/conftest.py),
#   2. measures training throughput and peak GPU memory of 784-800-10 (T = 50, 100, 200) and of the
#      conv preset configs/paper/mnist-conv.toml (skipped when absent), the paper's rule against the
#      surrogate-gradient BPTT variant (`snnbp bench --which dense conv --device cuda`),
#   3. writes everything to benchmarks/gpu-<date>.md.
# Installs nothing: it runs the working tree's code (PYTHONPATH=src) with a Python whose torch sees a GPU
# ($PYTHON if set, else the first of .venv/bin/python, python3, python); numpy, numba, tqdm and safetensors must be
# importable there (they are on the lent H200 machines). Takes a few minutes.
#
# Usage: scripts/gpu_check.sh [--out FILE] [--quick] [--skip-tests] [--skip-bench] [--require-gpu] [--cpu-dry-run]
#   --quick        tiny benchmark sizes (a smoke test of the script; numbers are not measurements)
#   --require-gpu  exit 3 instead of 0 when no GPU is present
#   --cpu-dry-run  run every step on the CPU instead (tests unchanged, bench --quick on cpu): checks the
#                  script itself on a machine without a GPU; the report says so
# Exit status: 0 all checks passed, or no GPU present (nothing checked; the output says so);
#              1 a test or a measurement failed (the report says which); 2 setup problem (no usable
#              Python / missing package / bad option); 3 no GPU present and --require-gpu given.
set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)

OUT="" QUICK="" SKIP_TESTS="" SKIP_BENCH="" REQUIRE_GPU="" DRY=""
ARGS="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="${2:?--out needs a file}"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --skip-tests) SKIP_TESTS=1; shift ;;
    --skip-bench) SKIP_BENCH=1; shift ;;
    --require-gpu) REQUIRE_GPU=1; shift ;;
    --cpu-dry-run) DRY=1; QUICK=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# ---- a Python whose torch sees a GPU -------------------------------------------------------------
PY="" TRIED=""
CANDIDATES="$ROOT/.venv/bin/python python3 python"
[ -n "${PYTHON:-}" ] && CANDIDATES="$PYTHON"  # $PYTHON, when set, is the only one tried
for cand in $CANDIDATES; do
  command -v "$cand" >/dev/null 2>&1 || [ -x "$cand" ] || continue
  TRIED="$TRIED $cand"
  if [ -n "$DRY" ]; then
    "$cand" -c "import torch" >/dev/null 2>&1 && { PY=$cand; break; }
  elif "$cand" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
    PY=$cand; break
  fi
done
if [ -z "$PY" ]; then
  if [ -n "$DRY" ]; then echo "gpu_check: no Python with torch found (tried:$TRIED)" >&2; exit 2; fi
  echo "gpu_check: NO GPU PRESENT - no Python on this machine has a torch that sees a CUDA device"
  echo "gpu_check: (tried:${TRIED:- nothing}; torch.cuda.is_available() was False or torch was missing)."
  echo "gpu_check: nothing was checked and no report was written. Run this on a machine with an NVIDIA GPU."
  [ -n "$REQUIRE_GPU" ] && exit 3
  exit 0
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if ! "$PY" -c "import numpy, numba, tqdm, safetensors, snnbp" 2>/tmp/gpu_check_import.$$; then
  echo "gpu_check: $PY cannot import what snnbp needs:" >&2; tail -1 /tmp/gpu_check_import.$$ >&2
  rm -f /tmp/gpu_check_import.$$; exit 2
fi
rm -f /tmp/gpu_check_import.$$

DEVICE=cuda
[ -n "$DRY" ] && DEVICE=cpu
DATE=$(date +%Y-%m-%d)
[ -n "$OUT" ] || OUT="benchmarks/gpu-$DATE.md"
[ -n "$DRY" ] && [ "$OUT" = "benchmarks/gpu-$DATE.md" ] && OUT="benchmarks/gpu-$DATE-cpu-dry-run.md"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
STATUS=0

# ---- machine ---------------------------------------------------------------------------------------
{
  echo "# GPU check: dense engine on $DEVICE"
  echo
  [ -n "$DRY" ] && echo "**CPU dry run (--cpu-dry-run): no GPU was used; this checks the script, not the GPU path.**" && echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "- command: scripts/gpu_check.sh${ARGS:+ $ARGS}; python: $PY"
  "$PY" - <<'PYEOF'
import os, platform, torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
mem = f", {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB" if torch.cuda.is_available() else ""
print(f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
      f"python {platform.python_version()}; torch {torch.__version__} (CUDA {torch.version.cuda}); GPU: {gpu}{mem}")
PYEOF
  command -v nvidia-smi >/dev/null 2>&1 && echo "- nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  echo
} > "$WORK/report.md"

# ---- 1. the dense engine's tests on the device -------------------------------------------------------
if [ -z "$SKIP_TESTS" ]; then
  TESTS=$(ls tests/test_dense_*.py 2>/dev/null | tr '\n' ' ')
  echo "gpu_check: running the dense tests on $DEVICE: $TESTS"
  T0=$(date +%s)
  if [ "$DEVICE" = cuda ]; then export SNNBP_TEST_DEVICE=cuda; fi
  timeout 420 "$PY" -m pytest -p no:cacheprovider -rfE $TESTS > "$WORK/tests.log" 2>&1
  RC=$?
  unset SNNBP_TEST_DEVICE
  SUMMARY=$(grep -E '^=*.*[0-9]+ (passed|failed|errors?|skipped|deselected)|no tests ran' "$WORK/tests.log" | tail -1 | tr -d '=')
  [ $RC -eq 124 ] && SUMMARY="TIMED OUT after 420 s; $SUMMARY"
  [ $RC -ne 0 ] && STATUS=1
  {
    echo "## 1. Dense-engine tests on $DEVICE"
    echo
    echo "\`SNNBP_TEST_DEVICE=$DEVICE python -m pytest $TESTS\` (the distributed tests stay on the CPU, gloo):"
    echo "**${SUMMARY:-no summary line} (exit $RC, $(( $(date +%s) - T0 )) s)**"
    echo
    echo '```'
    grep -E '^(FAILED|ERROR)' "$WORK/tests.log" | head -40
    tail -3 "$WORK/tests.log"
    echo '```'
    echo
  } >> "$WORK/report.md"
  echo "gpu_check: tests: $SUMMARY"
fi

# ---- 2. throughput: the paper's rule vs the BPTT variant ----------------------------------------------
if [ -z "$SKIP_BENCH" ]; then
  echo "gpu_check: benchmarking dense and conv on $DEVICE"
  T0=$(date +%s)
  timeout 480 "$PY" -m snnbp.bench --which dense conv --device "$DEVICE" ${QUICK:+--quick} --timeout 200 \
      --out "$WORK/bench.md" > "$WORK/bench.log" 2>&1
  RC=$?
  [ $RC -ne 0 ] && STATUS=1
  {
    echo "## 2. Training throughput and memory: Lee2016 rule vs surrogate-gradient BPTT (dense engine, $DEVICE)"
    echo
    echo "\`python -m snnbp.bench --which dense conv --device $DEVICE${QUICK:+ --quick}\` (exit $RC, $(( $(date +%s) - T0 )) s);"
    echo "784-800-10 and the conv preset, batch 100, Adam, dt = 1 ms, Poisson MNIST input (random images if MNIST is"
    echo "not cached); memory ratios use the GPU allocator's peak (torch.cuda.max_memory_allocated) on CUDA."
    echo
    if [ -f "$WORK/bench.md" ]; then
      sed -n '3,$p' "$WORK/bench.md"
    else
      echo '```'; tail -20 "$WORK/bench.log"; echo '```'
    fi
    echo
  } >> "$WORK/report.md"
  echo "gpu_check: bench exit $RC"
fi

mkdir -p "$(dirname "$OUT")"
cp "$WORK/report.md" "$OUT"
echo "gpu_check: wrote $OUT (status $STATUS)"
exit $STATUS
