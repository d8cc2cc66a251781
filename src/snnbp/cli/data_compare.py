"""`snnbp data compare A B`: statistics of two N-MNIST folders side by side (real vs synthetic, say)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand to ``snnbp data``."""
    parser = data_subparsers.add_parser(
        "compare",
        help="compare event statistics of two N-MNIST folders (e.g. real vs synthetic)",
        description=(
            "Print events per sample, ON fraction, duration, the three saccade bursts, spatial spread, "
            "inter-event intervals and event rates of two folders in N-MNIST layout "
            "(Train|Test/<digit>/<NNNNN>.bin) side by side. Each column says whether its folder holds "
            "real or synthetic recordings (SYNTHETIC.json)."
        ),
    )
    parser.add_argument("a", type=Path, metavar="A", help="first folder (dataset root, split folder or folder of .bin)")
    parser.add_argument("b", type=Path, metavar="B", help="second folder")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="use the first N files of each (by index)")
    parser.add_argument("--matched", action="store_true",
                        help="use only files present in both (same split/digit/index), i.e. the same MNIST digits")
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    from snnbp.data.event_stats import compare  # imported here so `snnbp --help` stays fast
    from snnbp.errors import DataError

    if args.limit is not None and args.limit < 1:
        raise DataError(f"--limit must be at least 1, got {args.limit}.")
    print(compare(args.a, args.b, limit=args.limit, matched=args.matched))
    return 0
