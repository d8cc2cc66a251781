"""Trace a warm-up epoch chunk by chunk: spikes per layer, thresholds, weight norms, accuracy."""
import sys, time
import numpy as np
from snnbp.config import load_config, embedded_config
from snnbp.data.sources import make_source
from snnbp.train.build import build_network, make_trainer

overrides = sys.argv[2:]
cfg = load_config(embedded_config(sys.argv[1]), overrides)
src = make_source(cfg.data, cfg.train.seed)
net = build_network(cfg, src.n_inputs)
tr = make_trainer(cfg, net)
order = np.random.default_rng([cfg.train.seed, 0]).permutation(len(src.train_labels))
chunk = 2000
t0 = time.time()
limit = int(__import__('os').environ.get('TRACE_LIMIT', '60000'))
for s in range(0, limit, chunk):
    idx = order[s:s + chunk]
    st = tr.step_chunk(src.train_batch(idx, 0, cfg.train.warmup_ms), src.train_labels[idx], cfg.optim.lr, cfg.optim.rho)
    th = [f"{t.mean():.3f}/{t.min():.3f}/{t.max():.3f}" for t in net.thresholds]
    wn = [f"{np.median((w.astype(np.float64)**2).sum(0)):.2f}" for w in net.weights]
    print(f"{s + chunk:6d} acc {st.correct / st.samples:.3f} spikes {np.round(st.spikes / st.samples, 1).tolist()} "
          f"zero_err {st.zero_error / st.samples:.2f} th {th} w2med {wn} {time.time() - t0:.0f}s", flush=True)
    if not np.isfinite(net.weights[0]).all() or st.spikes.sum() / st.samples > 8000:
        break
