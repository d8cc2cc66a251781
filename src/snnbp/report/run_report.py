"""`snnbp report RUN_DIR`: figures (PNG) and a Markdown summary of a training run.

Reads only what the run wrote (metrics.jsonl, summary.json, config.toml, optional latency.json written by
``snnbp eval --latency --save``), so a report can be regenerated at any time without the data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from snnbp.errors import DataError
from snnbp.files import read_jsonl


def _rows(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise DataError(f"{run} has no metrics.jsonl; pass the directory of a run made by `snnbp train`")
    rows, torn = read_jsonl(path)  # a torn last line is a run killed mid-append (files.read_jsonl)
    if torn:
        print(f"snnbp: note: the last line of {path} is cut off (the run was killed while writing it); left out",
              file=sys.stderr)
    if not rows:
        raise DataError(f"{path} holds no complete epoch yet; report a run after its first epoch")
    return rows


def write_report(run: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run)
    rows = _rows(run)
    out = run / "report"
    out.mkdir(exist_ok=True)
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    ep = [r["epoch"] for r in rows]
    test = [(r["epoch"], 100 * r["test_accuracy"]) for r in rows if "test_accuracy" in r]

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    if test:
        ax[0].plot(*zip(*test), "o-", label="test (full presentation)")
    ax[0].plot(ep, [100 * r.get("train_accuracy", float("nan")) for r in rows], ".-", label="train (running)")
    ax[0].set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax[0].legend()
    ax[1].plot(ep, [r.get("train_loss", float("nan")) for r in rows], ".-")
    ax[1].set(xlabel="epoch", ylabel="0.5 |o - y|^2", title="training loss")
    spikes = [r.get("train_spikes_per_layer") for r in rows]
    if spikes and spikes[0]:
        for l in range(len(spikes[0])):
            ax[2].plot(ep, [s[l] for s in spikes], ".-", label=f"layer {l + 1}")
    ax[2].set(xlabel="epoch", ylabel="spikes per training sample", title="activity")
    ax[2].legend()
    fig.suptitle(f"{summary.get('name', run.name)} - {summary.get('data', '')}")
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=110)
    plt.close(fig)

    figures = ["training.png"]
    if any("health" in r for r in rows):
        _health_figure(rows, out / "health.png", plt)
        figures.append("health.png")
    lat = run / "latency.json"
    if lat.is_file():
        curve = json.loads(lat.read_text())["latency_curve"]
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
        ax[0].plot(curve["time_ms"], [100 * a for a in curve["accuracy"]], "o-")
        ax[0].set(xlabel="presentation time (ms)", ylabel="accuracy (%)", title="accuracy vs latency")
        ax[1].plot([s / 1e6 for s in curve["synops_per_sample"]], [100 * a for a in curve["accuracy"]], "o-")
        ax[1].set(xlabel="synaptic operations per sample (millions)", ylabel="accuracy (%)", title="accuracy vs operations")
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)
        figures.append("latency.png")

    lines = [f"# Run report: {summary.get('name', run.name)}", "",
             f"- data: {summary.get('data', 'unknown')}",
             f"- epochs: {summary.get('epochs', len(rows))}, training wall time {summary.get('train_wall_s')} s, "
             f"{summary.get('samples_per_s')} samples/s",
             f"- final test accuracy: {summary.get('test_accuracy')}",
             f"- synaptic operations per test sample: {summary.get('synops_per_sample')}",
             f"- commit {summary.get('commit')}, machine: {summary.get('machine')}"]
    if "test_accuracy_last_epochs" in summary:
        s = summary["test_accuracy_last_epochs"]
        lines.append(f"- test accuracy over the last {s['n']} epochs [min, mean, max]: "
                     f"[{100 * s['min']:.2f}, {100 * s['mean']:.2f}, {100 * s['max']:.2f}] %")
    lines += ["", "| epoch | lr | train loss | train acc | test acc | hidden spikes/sample |", "|---|---|---|---|---|---|"]
    for r in rows:
        ta = f"{100 * r['test_accuracy']:.2f}" if "test_accuracy" in r else ""
        sp = r.get("train_spikes_per_layer", [""])
        lines.append(f"| {r['epoch']} | {r['lr']:.5f} | {r.get('train_loss', float('nan')):.4f} | "
                     f"{100 * r.get('train_accuracy', float('nan')):.2f} | {ta} | {sp[0]} |")
    lines += [""] + [f"![{f}]({f})" for f in figures]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    return out


def _health_figure(rows: list[dict], path: Path, plt) -> None:
    """Per-layer health signals over epochs (metrics.health): thresholds, floor, dead units, weight norms."""
    hr = [(r["epoch"], r["health"]) for r in rows if "health" in r]
    ep = [e for e, _ in hr]
    n_layers = len(hr[0][1]["layers"])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(1, 4, figsize=(17, 3.6))
    for l in range(n_layers):
        c = colors[l % len(colors)]
        get = lambda k: [h["layers"][l][k] for _, h in hr]  # noqa: E731
        ax[0].plot(ep, get("th_mean"), "-", color=c, label=f"layer {l + 1} mean")
        ax[0].fill_between(ep, get("th_min"), get("th_max"), color=c, alpha=0.15)
        ax[1].plot(ep, [100 * v for v in get("at_floor")], "--", color=c, label=f"layer {l + 1} at floor")
        ax[1].plot(ep, [100 * v for v in get("dead")], "-", color=c, label=f"layer {l + 1} dead")
        ax[2].plot(ep, get("wnorm2_q50"), "-", color=c, label=f"layer {l + 1} median")
        ax[2].fill_between(ep, get("wnorm2_q05"), get("wnorm2_q95"), color=c, alpha=0.15)
    ax[3].plot(ep, [100 * h["zero_error_fraction"] for _, h in hr], ".-", color="black")
    ax[0].set(xlabel="epoch", ylabel="V_th (min-max band)", title="thresholds", yscale="log")
    ax[1].set(xlabel="epoch", ylabel="% of neurons", title="held at the floor / no training spike")
    ax[2].set(xlabel="epoch", ylabel="|W_i|^2 (5-95 % band)", title="squared weight norms")
    ax[3].set(xlabel="epoch", ylabel="% of training samples", title="samples with zero output error")
    for a in ax[:3]:
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
