cd /work/main
run() { echo "== $*"; NUMBA_NUM_THREADS=1 timeout 400 .venv/bin/python /work/runs/trace_grid.py "$@" 2>&1 | cut -c1-200; }
run optim.rho=0.0 optim.lr_th_ratio=0.0 optim.normalize=false
run optim.rho=0.0 optim.lr_th_ratio=0.0 optim.lr=0.001
run optim.rho=0.0 optim.lr_th_ratio=0.0 optim.lam=0.0
