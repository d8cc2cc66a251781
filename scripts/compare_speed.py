"""Training speed of this tree vs another checkout, alternating fresh processes in one run (one thread).

    python scripts/compare_speed.py OTHER_SRC --engine dense|event [--rounds 2]

OTHER_SRC is the ``src`` folder of another checkout (e.g. ``git worktree add /tmp/old HEAD~1``, then
``/tmp/old/src``). Each round runs one fresh process per tree and prints both rates and their ratio.
  dense: the MNIST conv preset (configs/paper/mnist-conv.toml) on the dense engine, 100-sample chunks
         of batch 50 after a warm-up; samples/s (median of 3).
  event: 784-800-10 (the embedded quick-mnist-800 config), ADAM batch-32 and per-sample SGD (the
         fused step) training on 2,000 samples of 50 ms, and the forward pass on 300 test samples
         of 1 s; samples/s.
Needs MNIST cached (`snnbp data mnist`). benchmarks/README.md records what it was used for.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Shared prologue of both children: one thread, the config given as argv[1], a trainer and its data.
SETUP = r"""
import json, sys, time
import numba, numpy as np, torch
torch.set_num_threads(1)
numba.set_num_threads(1)
try:  # this layout
    from snnbp.config import load_config
    from snnbp.train.build import build_network, make_trainer
    from snnbp.data.sources import make_source
except ImportError:  # a checkout from before the package layout of 2026-12-02
    from snnbp.train.config import load_config
    from snnbp.train.engines import make_trainer
    from snnbp.train.loop import build_network
    from snnbp.train.sources import make_source
cfg = load_config(sys.argv[1], ["data.train_limit=4000"])
src = make_source(cfg.data, 0)
net = build_network(cfg, src.n_inputs)
tr = make_trainer(cfg, net)
def rate(n, fn):
    t = time.perf_counter(); fn(); return n / (time.perf_counter() - t)
"""

CHILDREN = {
    "dense": (ROOT / "configs/paper/mnist-conv.toml", SETUP + r"""
b, lab = src.train_batch(np.arange(100), 0), src.train_labels[:100]
tr.step_chunk(b, lab, 1e-3, 0.0)
rates = sorted(rate(100, lambda: tr.step_chunk(b, lab, 1e-3, 0.0)) for _ in range(3))
print(json.dumps({"conv training": rates[1]}))
"""),
    "event": (ROOT / "src/snnbp/configs/quick-mnist-800.toml", SETUP + r"""
try:
    from snnbp.event_engine.engine import run_events
except ImportError:  # older layout
    from snnbp.events.engine import run_events
b, lab = src.train_batch(np.arange(2000), 0), src.train_labels[:2000]
tr.step_chunk(b, lab, 1.5e-3, 1e-4)
train = rate(2000, lambda: tr.step_chunk(b, lab, 1.5e-3, 1e-4))
sgd = make_trainer(load_config(sys.argv[1], ["optim.name='sgd'", "optim.batch_size=1"]), net.copy())
sgd.step_chunk(b.samples(0, 100) if hasattr(b, "samples") else src.train_batch(np.arange(100), 0), lab[:100], 2e-3, 3e-6)
per_sample = rate(2000, lambda: sgd.step_chunk(b, lab, 2e-3, 3e-6))
tb = src.test_batch(np.arange(300)); run_events(net, tb)
print(json.dumps({"ADAM bs32 training": train, "SGD batch 1 training": per_sample,
                  "1 s test": rate(300, lambda: run_events(net, tb))}))
"""),
}


def measure(src: Path, engine: str) -> dict[str, float]:
    config, code = CHILDREN[engine]
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code, str(config)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("other_src", type=Path)
    p.add_argument("--engine", choices=sorted(CHILDREN), required=True)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    for r in range(a.rounds):
        old, new = measure(a.other_src, a.engine), measure(ROOT / "src", a.engine)
        parts = [f"{k} {old[k]:.1f} -> {new[k]:.1f} samples/s ({new[k] / old[k]:.2f}x)" for k in old]
        print(f"round {r + 1}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
