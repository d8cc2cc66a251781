#!/bin/bash
# N-MNIST 2312-800-10, lr_th_ratio sweep, first 30 epochs of the preset schedule (synthetic data)
cd /work/wt-run
for r in 1.0 0.1 3.0; do
  PYTHONPATH=/work/wt-run/src /work/main/.venv/bin/snnbp train configs/paper/nmnist-800.toml \
    --set 'data.source="nmnist-synthetic"' --set train.epochs=30 --set train.eval_last=0 \
    --set optim.lr_th_ratio=$r --out /work/runs/nm-lrth/r$r > /work/runs/nm-lrth/r$r.log 2>&1
done
