"""Evaluate a trained N-MNIST network on real recordings (a folder of .bin files).

Usage: python scripts/eval_on_real_samples.py RUN_DIR_OR_CHECKPOINT DIR_WITH_<split>/<digit>/*.bin [--split train]
Prints one JSON object: accuracy, per-file predictions, and the data used (real/synthetic as detected).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from snnbp.data.events import NMNIST_SENSOR, EventBatch, events_to_channels
from snnbp.data.nmnist import NMNIST
from snnbp.event_engine.engine import run_events
from snnbp.serialization import load_network


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--split", default="train")
    args = ap.parse_args()
    ckpt = args.checkpoint / "model.safetensors" if args.checkpoint.is_dir() else args.checkpoint
    net, _ = load_network(ckpt)
    ds = NMNIST(args.data, split=args.split)
    chans, times, ends = [], [], []
    for i in range(len(ds)):
        ev, _ = ds[i]
        chans.append(events_to_channels(ev, NMNIST_SENSOR))
        times.append(ev["t"].astype(np.float64))
        ends.append(float(ev["t"][-1]))
    res = run_events(net, EventBatch.from_lists(chans, times, ends))
    pred = res.predictions()
    labels = np.asarray(ds.labels)
    synthetic = (args.data / "SYNTHETIC.json").is_file()
    print(json.dumps({
        "checkpoint": str(ckpt), "data": f"{args.data} ({'synthetic' if synthetic else 'real'} recordings)",
        "n": int(len(labels)), "accuracy": float((pred == labels).mean()),
        "predictions": {n: int(p) for n, p in zip(ds.names, pred)},
    }))


if __name__ == "__main__":
    main()
