"""`snnbp report RUN_DIR`: PNG figures and a Markdown page of a run in RUN_DIR/report/.

Reads only what the run and its evaluation wrote, so a report can be regenerated at any time without
the data: metrics.jsonl, summary.json and config.toml (training), model.safetensors or
last.safetensors (weights), and, after ``snnbp eval RUN_DIR --curves``, curves.json (accuracy vs time
and operations, confusion matrix, baseline comparison) and rasters.json (spikes of a few test samples).
Figures (report/run_figures.py): training.png, health.png, confusion.png, rasters.png, weights.png,
curves.png; each is drawn when its inputs exist, and the page says which are missing and how to get them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from snnbp.errors import DataError
from snnbp.files import read_jsonl
from snnbp.report import run_figures as figs


def _rows(run: Path) -> list[dict]:
    if not run.is_dir():
        raise DataError(f"{run} is not a directory; pass the directory of a run made by `snnbp train`")
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise DataError(f"{run} has no metrics.jsonl; pass the directory of a run made by `snnbp train`")
    rows, torn = read_jsonl(path)  # a torn last line is a run killed mid-append (files.read_jsonl)
    if torn:
        print(f"snnbp: note: the last line of {path} is cut off (the run was killed while writing it); it was skipped "
              "and the report shows the complete lines", file=sys.stderr)
    if not rows:
        raise DataError(f"{path} holds no complete epoch yet; report a run after its first epoch")
    return rows


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _input_map(meta: dict) -> tuple | None:
    """(P, H, W) of the network's input: its model.input_shape, else the map of its data source."""
    from snnbp.data.events import NMNIST_SENSOR

    cfg = meta.get("config", {})
    shape = tuple(cfg.get("model", {}).get("input_shape") or ())
    if shape:
        return shape
    source = cfg.get("data", {}).get("source", "")
    if source == "mnist":
        return (1, 28, 28)
    if source.startswith("nmnist"):
        return (NMNIST_SENSOR.polarities, NMNIST_SENSOR.height, NMNIST_SENSOR.width)
    return None


def _first_layer(run: Path) -> tuple[np.ndarray, tuple | None, str] | None:
    """First layer's weights (fc (M, N), conv (C, C_in, K, K)), the input map and a title, from the
    run's final or last checkpoint."""
    from snnbp.serialization import load_tensors

    for name in ("model.safetensors", "last.safetensors"):
        p = run / name
        if not p.is_file():
            continue
        tensors, meta = load_tensors(p)
        if "ann" in meta:  # the first weight of the nn.Sequential; a torch Linear is (N, M)
            key = min((k for k in tensors if k.startswith("ann.") and k.endswith(".weight")),
                      key=lambda k: int(k.split(".")[1]), default=None)
            if key is None:
                return None
            w = tensors[key]
            return (w if w.ndim == 4 else w.T), _input_map(meta), "first-layer weights of the conventional network"
        if "layer0.weight" in tensors:
            return tensors["layer0.weight"], _input_map(meta), "input weights of the first spiking layer"
    return None


def _paper_row(run: Path, summary: dict) -> tuple[str, object] | None:
    from snnbp.train.reproduce import ROWS

    if run.name in ROWS:
        return run.name, ROWS[run.name]
    for name, r in ROWS.items():  # a run of a preset outside results/: matched by the preset's name
        if summary.get("name") and summary["name"].endswith(name):
            return name, r
    return None


def write_report(run: str | Path) -> Path:
    """Write RUN_DIR/report/{README.md, *.png}; returns the report folder."""
    run = Path(run)
    rows = _rows(run)
    out = run / "report"
    out.mkdir(exist_ok=True)
    summary = _json(run / "summary.json") or {}
    curves = _json(run / "curves.json")
    rasters = _json(run / "rasters.json")
    title = f"{summary.get('name', run.name)} - {summary.get('data', '')}"
    figures = [("training curves", figs.training_figure(rows, out / "training.png", title))]
    missing = []
    if any("health" in r for r in rows):
        figures.append(("health signals per layer", figs.health_figure(rows, out / "health.png")))
    layer = _first_layer(run)
    if layer is not None:
        w, shape, what = layer
        figures.append((what, figs.weights_figure(w, shape, out / "weights.png", what)))
    if curves is not None:
        figures.append(("accuracy vs time and vs operations", figs.curves_figure(curves, out / "curves.png")))
        if "confusion" in curves:
            figures.append(("confusion matrix", figs.confusion_figure(curves["confusion"], out / "confusion.png",
                                                                      "test confusion (full presentation)")))
    else:
        missing.append("accuracy-vs-time/operations curves and the confusion matrix: run "
                       f"`snnbp eval {run} --curves` first")
    if rasters is not None:
        figures.append(("spike rasters of test samples", figs.raster_figure(rasters, out / "rasters.png")))
    elif summary.get("kind") != "ann":
        missing.append(f"spike rasters: written by `snnbp eval {run} --curves`")
    (out / "README.md").write_text(_page(run, rows, summary, curves, figures, missing))
    return out


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def _page(run: Path, rows, summary: dict, curves: dict | None, figures, missing) -> str:
    lines = [f"# Run report: {summary.get('name', run.name)}", "",
             f"- data: {summary.get('data', 'unknown')}",
             f"- network: {(curves or {}).get('network') or summary.get('network', '?')}; epochs: {summary.get('epochs', len(rows))}; training wall time "
             f"{summary.get('train_wall_s')} s ({summary.get('samples_per_s', '-')} samples/s)",
             f"- final test accuracy: {_pct(summary.get('test_accuracy'))}",
             f"- commit {summary.get('commit')}, machine: {summary.get('machine')}"]
    if "macs_per_sample" in summary:
        lines.append(f"- conventional network: {summary['macs_per_sample']:,} multiply-accumulates per sample")
    elif curves is not None:
        lines.append(f"- operations per test sample over the whole presentation (`snnbp eval --curves`): "
                     f"{curves['synops_per_sample'][-1]:,.0f} synaptic + {curves['lateral_ops_per_sample'][-1]:,.0f} "
                     "lateral-inhibition updates")
    elif summary.get("synops_per_sample") is not None:
        lines.append(f"- synops_per_sample of the last test (summary.json; before commit 5a2e814 it included the "
                     f"lateral updates): {summary['synops_per_sample']:,.0f}")
    if "test_accuracy_last_epochs" in summary:
        s = summary["test_accuracy_last_epochs"]
        lines.append(f"- test accuracy over the last {s['n']} epochs [min, mean, max]: "
                     f"[{100 * s['min']:.2f}, {100 * s['mean']:.2f}, {100 * s['max']:.2f}] %")
    paper = _paper_row(run, summary)
    if paper is not None:
        from snnbp.train.reproduce import _fmt_triple

        name, r = paper
        lines.append(f"- beside the paper: row `{name}` ({r.network}, {r.protocol}; {r.source}): paper "
                     f"{_fmt_triple(r.paper)} %")
    if curves is not None and curves.get("comparison"):
        from snnbp.metrics.curves import describe_comparison

        lines += ["", "## Operations against the conventional baseline", "", "```"]
        for cmp in curves.get("comparisons", [curves["comparison"]]):
            lines += describe_comparison(cmp)
        lines += ["```", "",
                                                             "Counting: docs/efficiency.md (synaptic operations = spikes "
                                                             "x fan-out; lateral updates counted apart and added; baseline: "
                                                             "dense multiply-accumulates)."]
    lines += ["", "## Figures", ""] + [f"### {what}\n\n![{what}]({f})\n" for what, f in figures]
    if missing:
        lines += ["Not drawn:", ""] + [f"- {m}" for m in missing] + [""]
    lines += ["## Epochs", "", "| epoch | lr | train loss | train acc | test acc | spikes per sample (per layer) |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        ta = f"{100 * r['test_accuracy']:.2f}" if "test_accuracy" in r else ""
        tr = f"{100 * r['train_accuracy']:.2f}" if "train_accuracy" in r else ""
        lines.append(f"| {r['epoch']} | {r.get('lr', float('nan')):.5g} | {r.get('train_loss', float('nan')):.4f} | {tr} | "
                     f"{ta} | {r.get('train_spikes_per_layer', '')} |")
    return "\n".join(lines) + "\n"
