#!/bin/bash
# Short tuning run of the MNIST conv preset (results/mnist-conv.md): 6,000 training samples, 3 epochs,
# test on the first 500 digits at 200 ms, one CPU thread.  usage: scripts/conv_short_run.sh NAME [--set KEY=VALUE ...]
set -euo pipefail
name=$1; shift
mkdir -p runs/exp
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 snnbp train configs/paper/mnist-conv.toml --out "runs/exp/$name" \
  --set data.train_limit=6000 --set train.epochs=3 --set data.test_limit=500 --set data.test_ms=200 \
  --set train.eval_every=1 --set train.eval_last=0 "$@" > "runs/exp/$name.log" 2>&1
