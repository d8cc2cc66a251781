"""Is there a systematic sign in the backpropagated deltas? Warm-up epoch of 784-500-500-10, chunk by chunk:
mean output error sum, mean delta per layer over active units, and the correlation of a layer-1 unit's
delta with the mean of its outgoing weights (the sign-inversion hypothesis)."""
import sys, time
import numpy as np
from snnbp.config import load_config, embedded_config
from snnbp.data.sources import make_source
from snnbp.train.build import build_network, make_trainer
from snnbp.event_engine.engine import run_events
from snnbp.gradient.lee2016 import sample_deltas

preset = sys.argv[1]
overrides = sys.argv[2:]
cfg = load_config(embedded_config(preset), overrides)
src = make_source(cfg.data, cfg.train.seed)
net = build_network(cfg, src.n_inputs)
tr = make_trainer(cfg, net)
order = np.random.default_rng([cfg.train.seed, 0]).permutation(len(src.train_labels))
probe = np.random.default_rng(1).choice(len(src.train_labels), 300, replace=False)
chunk = 2000
pres = cfg.train.warmup_ms or None
L = net.n_layers

def diagnose():
    res = run_events(net, src.train_batch(probe, 0, pres))
    B = len(probe)
    deltas = tuple(np.zeros((B, n)) for n in net.sizes)
    ones = tuple(np.ones(n) for n in net.sizes); zeros = tuple(np.zeros(n) for n in net.sizes)
    esum = []
    for b in range(B):
        sample_deltas(tuple(net.weights), ones, zeros, tuple(net.thresholds), tuple(res.counts), b,
                      int(src.train_labels[probe[b]]), net.neuron.gamma, True, deltas)
        out = res.counts[-1][b]
        o = out / out.max() if out.max() > 0 else np.zeros_like(out, dtype=float)
        esum.append(o.sum() - 1.0)
    parts = [f"sum_e {np.mean(esum):+.3f}"]
    for l in range(L):
        act = res.counts[l] > 0
        d = deltas[l][act]
        parts.append(f"L{l} mean_d {d.mean() if d.size else 0:+.4f} neg {np.mean(d < 0) if d.size else 0:.2f}")
    for l in range(L - 1):  # delta of layer l vs mean outgoing weight
        act = res.counts[l] > 0
        dm = np.where(act.sum(0) > 0, (deltas[l] * act).sum(0) / np.maximum(act.sum(0), 1), np.nan)
        wout = net.weights[l + 1].mean(axis=1)
        ok = np.isfinite(dm)
        c = np.corrcoef(dm[ok], wout[ok])[0, 1] if ok.sum() > 2 else np.nan
        parts.append(f"corr(d{l}, mean w_out) {c:+.2f} mean w_out {wout.mean():+.4f}")
    return " | ".join(parts)

t0 = time.time()
print("0", diagnose(), flush=True)
for s in range(0, 60000, chunk):
    idx = order[s:s + chunk]
    st = tr.step_chunk(src.train_batch(idx, 0, pres), src.train_labels[idx], cfg.optim.lr, cfg.optim.rho)
    print(f"{s + chunk} acc {st.correct / st.samples:.3f} spikes {np.round(st.spikes / st.samples, 1).tolist()} "
          f"th {[round(float(t.mean()), 3) for t in net.thresholds]} | {diagnose()} {time.time() - t0:.0f}s", flush=True)
    if st.spikes.sum() / st.samples > 20000:
        break
