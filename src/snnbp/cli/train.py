"""`snnbp train` (evaluation: cli/eval.py)."""

from __future__ import annotations

import json

from snnbp.config import DEFAULT_CONFIG, embedded_config


def register(sub) -> None:
    p = sub.add_parser("train", help="train a network (default: the quick 784-800-10 MNIST job)")
    p.add_argument("config", nargs="?", help=f"TOML config (default: the embedded {DEFAULT_CONFIG})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=0.002 (repeatable)")
    p.add_argument("--out", help="run directory (default: runs/<name>-<time>)")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR")
    p.set_defaults(func=_train)


def _train(args) -> int:
    from snnbp.train.loop import run_from_args

    config = args.config
    if config is None and args.resume is None:
        config = str(embedded_config(DEFAULT_CONFIG))
    summary = run_from_args(config, args.overrides, args.out, args.resume)
    if summary:  # empty on ranks other than 0 of a torchrun launch: only rank 0 reports
        print(json.dumps(summary))
    return 0
