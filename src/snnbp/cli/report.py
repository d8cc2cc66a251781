"""`snnbp report RUN_DIR`."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report", help="figures (PNG) and a Markdown summary of a run directory")
    p.add_argument("run", help="a run directory made by `snnbp train`")
    p.set_defaults(func=_report)


def _report(args) -> int:
    from snnbp.report.run_report import write_report

    print(write_report(args.run))
    return 0
