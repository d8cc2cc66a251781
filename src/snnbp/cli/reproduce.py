"""`snnbp reproduce ROW` and `snnbp reproduce --table` (the logic is train/reproduce.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from snnbp.errors import ConfigError
from snnbp.train.reproduce import ROWS, reproduce, write_table


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="train one row of the paper's results into results/ROW (continues it if unfinished)")
    p.add_argument("row", nargs="?", help=f"one of: {', '.join(ROWS)}")
    p.add_argument("--results", default="results", help="folder of the records (default: ./results)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (recorded in record.json)")
    p.add_argument("--table", action="store_true", help="regenerate RESULTS/README.md from the records and exit")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    if args.table or args.row is None:
        if args.row is None and not args.table:
            raise ConfigError(f"name a row to reproduce ({', '.join(ROWS)}) or pass --table")
        print(write_table(Path(args.results)))
        return 0
    summary = reproduce(args.row, Path(args.results), args.overrides, log=lambda m: print(m, file=sys.stderr))
    write_table(Path(args.results))
    print(json.dumps(summary))
    return 0
