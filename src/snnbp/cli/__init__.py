"""The `snnbp` command line. Thin: parses arguments and calls library functions.

Subcommands register themselves from the module that owns them (``register(subparsers)``), so this
file only wires them together. A user mistake raises ``SnnbpError`` and is printed as one line.
"""

from __future__ import annotations

import argparse
import sys

from snnbp.errors import SnnbpError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snnbp", description="Train deep spiking neural networks with backpropagation (Lee et al. 2016)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="prepare datasets (MNIST, N-MNIST) for offline use")
    data_sub = data.add_subparsers(dest="dataset", required=True)
    from snnbp.cli import data_compare as cli_compare, data_mnist as cli_mnist, data_nmnist as cli_nmnist

    cli_mnist.register(data_sub)
    cli_nmnist.register(data_sub)
    cli_compare.register(data_sub)

    from snnbp.bench import harness as bench
    from snnbp.cli import report as cli_report, show as cli_show
    from snnbp.cli import eval as cli_eval, reproduce, train as cli_train

    cli_train.register(sub)
    cli_eval.register(sub)
    reproduce.register(sub)
    bench.register(sub)
    cli_report.register(sub)
    cli_show.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SnnbpError as err:
        print(f"snnbp: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("snnbp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
