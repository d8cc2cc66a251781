"""`snnbp train` and `snnbp eval`."""

from __future__ import annotations

import json
from pathlib import Path

from snnbp.config import DEFAULT_CONFIG, embedded_config
from snnbp.files import write_json_atomic


def register(sub) -> None:
    p = sub.add_parser("train", help="train a network (default: the quick 784-800-10 MNIST job)")
    p.add_argument("config", nargs="?", help=f"TOML config (default: the embedded {DEFAULT_CONFIG})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=0.002 (repeatable)")
    p.add_argument("--out", help="run directory (default: runs/<name>-<time>)")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR")
    p.set_defaults(func=_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint on its test set")
    e.add_argument("checkpoint", help="a .safetensors file (model.safetensors or last.safetensors) or a run directory")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a data key (or train.engine / train.device / train.dt_ms), "
                        "e.g. --set data.test_limit=1000")
    e.add_argument("--latency", action="store_true", help="also report accuracy and synops vs. presentation time")
    e.add_argument("--save", action="store_true",
                   help="with --latency: write latency.json beside the checkpoint (drawn by `snnbp report`)")
    e.set_defaults(func=_eval)


def _train(args) -> int:
    from snnbp.train.loop import run_from_args

    config = args.config
    if config is None and args.resume is None:
        config = str(embedded_config(DEFAULT_CONFIG))
    summary = run_from_args(config, args.overrides, args.out, args.resume)
    if summary:  # empty on ranks other than 0 of a torchrun launch: only rank 0 reports
        print(json.dumps(summary))
    return 0


def _eval(args) -> int:
    import numpy as np

    from snnbp.config import load_config
    from snnbp.data.sources import make_source
    from snnbp.errors import DataError
    from snnbp.serialization import load_checkpoint
    from snnbp.train.build import make_evaluator

    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / "model.safetensors" if (path / "model.safetensors").exists() else path / "last.safetensors"
    net, _, _, _, saved_config = load_checkpoint(path)
    if not saved_config:
        raise DataError(f"{path} is not an snnbp run checkpoint (it needs a network and a config header)")
    _check_eval_overrides(args.overrides)
    cfg = load_config(None, args.overrides, base=saved_config)
    source = make_source(cfg.data, cfg.train.seed)
    readout = None
    if args.latency:
        end = cfg.data.test_ms if cfg.data.source == "mnist" else 320.0
        readout = np.linspace(end / 20, end, 20)
    out = make_evaluator(cfg)(net, source, readout_ms=readout)  # the run's engine (train.engine)
    out.update(checkpoint=str(path), data=source.name)
    if args.save:
        if not args.latency:
            raise DataError("--save writes the latency curve; add --latency")
        write_json_atomic(path.parent / "latency.json", out)  # `snnbp report` draws it
    print(json.dumps(out))
    return 0


# What evaluation may change: the test data and the engine that runs the trained network, never the
# network itself (model.*) or how it was trained, which the checkpoint fixes.
_EVAL_KEYS = ("data.", "train.engine", "train.device", "train.dt_ms")


def _check_eval_overrides(overrides: list[str]) -> None:
    from snnbp.errors import ConfigError

    for text in overrides:
        key = text.split("=", 1)[0].strip()
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in _EVAL_KEYS):
            raise ConfigError(f"snnbp eval cannot change '{key}': the network and its training come from the "
                              "checkpoint; only data.* keys and train.engine / train.device / train.dt_ms may be set")
