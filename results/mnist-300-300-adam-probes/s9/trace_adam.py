"""Per-chunk trace of the warm-up epoch: spikes per sample per layer, mean V_th, accuracy."""
import sys, time
import numpy as np
from snnbp.config import load_config
from snnbp.data.sources import make_source
from snnbp.train.build import build_network, make_trainer
cfg = load_config(sys.argv[1], sys.argv[2:])
source = make_source(cfg.data, cfg.train.seed)
net = build_network(cfg, source.n_inputs)
trainer = make_trainer(cfg, net, None)
n = len(source.train_labels); order = np.random.default_rng([cfg.train.seed, 0]).permutation(n)
lr, rho = cfg.optim.lr, cfg.optim.rho
t0 = time.time()
import os
for lo in range(0, int(os.environ.get("TRACE_N", n)), 1000):
    idx = order[lo:lo+1000]
    b = source.train_batch(idx, 0, cfg.train.warmup_ms or None)
    st = trainer.step_chunk(b, source.train_labels[idx], lr, rho, cfg.train.warmup_ms > 0)
    sp = [round(float(s) / len(idx), 1) for s in st.spikes]
    th = [round(float(t.mean()), 3) for t in net.thresholds]
    dead = [round(float((u == 0).mean()), 2) for u in st.unit_spikes]
    print(f"{lo+1000:6d} {time.time()-t0:6.0f}s acc {st.correct/len(idx):.3f} sp {sp} th {th} silent {dead}", flush=True)
