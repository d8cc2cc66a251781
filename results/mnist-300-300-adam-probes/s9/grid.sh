#!/bin/bash
# Short per-sample Adam probes on 784-300-300-10: 10k training digits per epoch, warm-up + 3 epochs, 1k test digits.
cd /work/wt-p1
run() { name=$1; shift
  NUMBA_NUM_THREADS=1 PYTHONPATH=/work/wt-p1/src timeout 480 /work/main/.venv/bin/snnbp train configs/paper/mnist-300-300-adam.toml \
  --set train.epochs=4 --set train.eval_every=2 --set train.eval_last=0 --set data.test_limit=1000 --set data.train_limit=10000 \
  --set 'model.alpha=[3.0,6.0,3.0]' --set model.floor_alpha=2.0 --set optim.weight_reg=decoupled \
  --set optim.floor_compensation=silent --set train.background_eval=off "$@" --out /work/runs/p2/g-$name > /work/runs/p2/g-$name.log 2>&1
  echo "$name rc=$?" >> /work/runs/p2/grid.done; }
run sgd --set optim.name=sgd --set optim.lr=0.002 --set 'optim.lr_th_ratio=[1.0,1.0,10.0]' --set 'optim.warmup_lr_th_ratio=[10.0]'
run adam1e-4 --set optim.lr=1e-4
run adam3e-5 --set optim.lr=3e-5
run adam1e-4-thsgd --set optim.lr=1e-4 --set optim.threshold_optimizer=sgd --set 'optim.lr_th_ratio=[20.0,20.0,200.0]' --set 'optim.warmup_lr_th_ratio=[200.0]'
run adam1e-4-rho0 --set optim.lr=1e-4 --set optim.rho=0.0 --set optim.floor_compensation=none
run adam1e-4-nowarm --set optim.lr=1e-4 --set train.warmup_ms=0.0
run adam3e-5-thsgd --set optim.lr=3e-5 --set optim.threshold_optimizer=sgd --set 'optim.lr_th_ratio=[66.7,66.7,667.0]' --set 'optim.warmup_lr_th_ratio=[667.0]'
