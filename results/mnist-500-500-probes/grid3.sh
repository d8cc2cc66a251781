cd /work/main
run() { echo "== $*"; NUMBA_NUM_THREADS=1 timeout 400 .venv/bin/python /work/runs/trace_grid.py "$@" 2>&1 | cut -c1-200; }
run optim.lr=0.001
run optim.lr=0.001 optim.rho=0.0
