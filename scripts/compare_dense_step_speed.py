"""Dense-engine training speed of the MNIST conv preset, this tree vs another checkout, in one run.

    python scripts/compare_dense_step_speed.py OTHER_SRC [--rounds 2]

OTHER_SRC is the ``src`` folder of another checkout (e.g. ``git worktree add /tmp/old HEAD~1``,
then ``/tmp/old/src``). Each round runs one fresh process per tree (alternating, one torch thread,
100-sample chunks of batch 50 after a warm-up) and prints samples/s; the ratio is new / old per round.
It measures one configuration on one machine; see benchmarks/README.md for what it was used for.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from snnbp.train.config import load_config
from snnbp.train.engines import make_trainer
from snnbp.train.loop import build_network
from snnbp.train.sources import make_source
cfg = load_config(sys.argv[1], ["data.train_limit=200"])
src = make_source(cfg.data, 0)
tr = make_trainer(cfg, build_network(cfg, src.n_inputs))
b, lab = src.train_batch(np.arange(100), 0), src.train_labels[:100]
tr.step_chunk(b, lab, 1e-3, 0.0)
rates = []
for _ in range(3):
    t = time.perf_counter(); tr.step_chunk(b, lab, 1e-3, 0.0); rates.append(100 / (time.perf_counter() - t))
print(json.dumps(sorted(rates)[1]))
"""


def rate(src: Path, config: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD, str(config)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("other_src", type=Path)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--config", type=Path, default=Path(__file__).resolve().parents[1] / "configs/paper/mnist-conv.toml")
    a = p.parse_args()
    here = Path(__file__).resolve().parents[1] / "src"
    for r in range(a.rounds):
        old, new = rate(a.other_src, a.config), rate(here, a.config)
        print(f"round {r + 1}: other {old:.1f} samples/s, this tree {new:.1f} samples/s, ratio {new / old:.2f}")


if __name__ == "__main__":
    main()
