"""784-500-500-10 stability probe: 20k samples at the 200 ms warm-up, then 20k at 50 ms; every 4000 samples."""
import sys, time
import numpy as np
from snnbp.config import load_config, embedded_config
from snnbp.data.sources import make_source
from snnbp.train.build import build_network, make_trainer

cfg = load_config(embedded_config("paper/mnist-500-500.toml"), sys.argv[1:])
src = make_source(cfg.data, cfg.train.seed)
net = build_network(cfg, src.n_inputs)
tr = make_trainer(cfg, net)
t0 = time.time()
for epoch, ms in ((0, cfg.train.warmup_ms), (1, cfg.data.train_ms)):
    order = np.random.default_rng([cfg.train.seed, epoch]).permutation(len(src.train_labels))
    lr = cfg.optim.lr * cfg.optim.decay_per_epoch ** epoch
    for s in range(0, 20000, 4000):
        idx = order[s:s + 4000]
        st = tr.step_chunk(src.train_batch(idx, epoch, ms), src.train_labels[idx], lr, cfg.optim.rho)
        th = [f"{t.mean():.3f}/{t.min():.3f}/{t.max():.3f}" for t in net.thresholds]
        print(f"{ms:.0f}ms {s + 4000:6d} acc {st.correct / st.samples:.3f} spikes {np.round(st.spikes / st.samples, 1).tolist()} "
              f"th {th} {time.time() - t0:.0f}s", flush=True)
        if st.spikes.sum() / st.samples > 20000 or st.spikes[-1] == 0:
            print("stopped: runaway or silent output"); sys.exit()
