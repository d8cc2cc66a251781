#!/bin/bash
# Run from a checkout root: bash results/mnist-300-300-adam-probes/grid.sh (edit VARIANTS).
export PYTHONPATH=src NUMBA_NUM_THREADS=1 TRACE_LIMIT=${TRACE_LIMIT:-30000}
P=${PYTHON:-.venv/bin/python}
while read -r name over; do
  echo "== $name: $over"
  $P results/mnist-300-300-adam-probes/trace_warmup.py paper/mnist-300-300-adam.toml $over
done <<'VARIANTS'
floor1.5 model.floor_alpha=1.5
floor1.5-rho3e-7 model.floor_alpha=1.5 optim.rho=3e-7
VARIANTS
