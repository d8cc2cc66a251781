"""Event-engine speed, this tree vs another checkout, alternating fresh processes (one thread).

    python scripts/compare_event_engine_speed.py OTHER_SRC [--rounds 2]

Measures on 784-800-10 (the embedded quick-mnist-800 config) with MNIST cached: ADAM batch-32 training
(samples/s, 2,000 samples of 50 ms), and the forward on 300 test samples of 1 s. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, time
import numpy as np, numba
numba.set_num_threads(1)
from snnbp.events.engine import run_events
from snnbp.train.cli_train import embedded_config
from snnbp.train.config import load_config
from snnbp.train.engines import make_trainer
from snnbp.train.loop import build_network
from snnbp.train.sources import make_source
cfg = load_config(str(embedded_config("quick-mnist-800.toml")), ["data.train_limit=4000"])
src = make_source(cfg.data, 0)
net = build_network(cfg, src.n_inputs)
tr = make_trainer(cfg, net)
b, lab = src.train_batch(np.arange(2000), 0), src.train_labels[:2000]
tr.step_chunk(b, lab, 1.5e-3, 1e-4)
t = time.perf_counter(); tr.step_chunk(b, lab, 1.5e-3, 1e-4); train = 2000 / (time.perf_counter() - t)
tb = src.test_batch(np.arange(300)); run_events(net, tb)
t = time.perf_counter(); run_events(net, tb); test = 300 / (time.perf_counter() - t)
print(json.dumps([train, test]))
"""


def rates(src: Path) -> list[float]:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("other_src", type=Path)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    here = Path(__file__).resolve().parents[1] / "src"
    for r in range(a.rounds):
        (ot, oe), (nt, ne) = rates(a.other_src), rates(here)
        print(f"round {r + 1}: ADAM bs32 training {ot:.0f} -> {nt:.0f} samples/s ({nt / ot:.2f}x); "
              f"1 s test {oe:.0f} -> {ne:.0f} samples/s ({ne / oe:.2f}x)")


if __name__ == "__main__":
    main()
