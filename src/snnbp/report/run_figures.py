"""The figures of `snnbp report` (report/run_report.py), one function per PNG.

Every figure is drawn with matplotlib's object API on an Agg canvas (no pyplot state, works without a
display). Conventions: axes carry units; layer l has the colour ``layer_color(l)`` in every figure
(spikes, thresholds, health signals, rasters), the input is grey, references (the conventional
baseline, the paper) are black dashed lines.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
INPUT_COLOR = "#7f7f7f"


def layer_color(l: int) -> str:
    """The colour of layer l (0 = first hidden layer) in every figure of a report."""
    return _PALETTE[l % len(_PALETTE)]


def layer_name(l: int, n_layers: int) -> str:
    return "output" if l == n_layers - 1 else f"hidden {l + 1}"


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path)
    return path.name


def training_figure(rows: list[dict], path: Path, title: str) -> str:
    """Accuracy (train running, test), loss and spikes per layer over epochs."""
    fig = _figure(14, 3.8)
    ax = fig.subplots(1, 3)
    ep = [r["epoch"] for r in rows]
    test = [(r["epoch"], 100 * r["test_accuracy"]) for r in rows if "test_accuracy" in r]
    if test:
        ax[0].plot(*zip(*test), "o-", color="black", ms=3, label="test")
    if any("train_accuracy" in r for r in rows):
        ax[0].plot(ep, [100 * r.get("train_accuracy", math.nan) for r in rows], ".-", color=INPUT_COLOR,
                   label="train (running, on training presentations)")
    ax[0].set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax[0].legend(fontsize=7)
    ax[1].plot(ep, [r.get("train_loss", math.nan) for r in rows], ".-", color="black")
    ax[1].set(xlabel="epoch", ylabel="training loss per sample", title="loss", yscale="log")
    spikes = [r.get("train_spikes_per_layer") for r in rows]
    if spikes and spikes[0]:
        L = len(spikes[0])
        for l in range(L):
            ax[2].plot(ep, [max(s[l], 1e-3) for s in spikes], ".-", color=layer_color(l), label=layer_name(l, L))
        ax[2].set(yscale="log")
        ax[2].legend(fontsize=7)
    else:
        ax[2].text(0.5, 0.5, "no spiking layers (conventional network)", ha="center", va="center",
                   transform=ax[2].transAxes)
    ax[2].set(xlabel="epoch", ylabel="spikes per training sample", title="activity")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def health_figure(rows: list[dict], path: Path) -> str:
    """Per-layer health signals over epochs (metrics/health.py): thresholds, floor and dead units,
    weight norms, and the share of training samples without output error."""
    hr = [(r["epoch"], r["health"]) for r in rows if "health" in r]
    ep = [e for e, _ in hr]
    L = len(hr[0][1]["layers"])
    fig = _figure(17, 3.8)
    ax = fig.subplots(1, 4)
    for l in range(L):
        c, name = layer_color(l), layer_name(l, L)
        get = lambda k: [h["layers"][l][k] for _, h in hr]  # noqa: E731
        ax[0].plot(ep, get("th_mean"), "-", color=c, label=f"{name} mean")
        ax[0].fill_between(ep, get("th_min"), get("th_max"), color=c, alpha=0.15)
        ax[1].plot(ep, [100 * v for v in get("at_floor")], "--", color=c, label=f"{name} at floor")
        ax[1].plot(ep, [100 * v for v in get("dead")], "-", color=c, label=f"{name} silent")
        ax[2].plot(ep, get("wnorm2_q50"), "-", color=c, label=f"{name} median")
        ax[2].fill_between(ep, get("wnorm2_q05"), get("wnorm2_q95"), color=c, alpha=0.15)
    ax[3].plot(ep, [100 * h["zero_error_fraction"] for _, h in hr], ".-", color="black")
    ax[0].set(xlabel="epoch", ylabel="V_th (band: min to max)", title="thresholds", yscale="log")
    ax[1].set(xlabel="epoch", ylabel="% of the layer's neurons", title="held at the floor / no spike in the epoch")
    ax[2].set(xlabel="epoch", ylabel="|W_i|^2 (band: 5-95 %)", title="squared weight norm per neuron")
    ax[3].set(xlabel="epoch", ylabel="% of training samples", title="samples with zero output error")
    for a in ax[:3]:
        a.legend(fontsize=7)
    return _save(fig, path)


def confusion_figure(confusion: list[list[int]], path: Path, title: str) -> str:
    """Test-set confusion matrix: rows true digit, columns predicted, each row normalized to 100 %."""
    m = np.asarray(confusion, np.float64)
    share = 100 * m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig = _figure(5.6, 4.8)
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
    n = m.shape[0]
    for i in range(n):
        for j in range(n):
            if m[i, j]:
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=6,
                        color="white" if share[i, j] > 50 else "black")
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted digit", ylabel="true digit", title=title)
    fig.colorbar(im, ax=ax, label="% of the true digit's test samples")
    return _save(fig, path)


def raster_figure(rasters: dict, path: Path) -> str:
    """Spike rasters of a few test samples: one column per sample, one row per layer (input on top)."""
    samples = rasters["samples"]
    L = len(rasters["layer_sizes"])
    fig = _figure(4.2 * len(samples), 1.0 + 1.6 * (L + 1))
    axes = fig.subplots(L + 1, len(samples), squeeze=False, sharex="col")
    for c, smp in enumerate(samples):
        ev = np.asarray(smp["input"], np.float64).reshape(-1, 2)
        axes[0, c].scatter(ev[:, 1], ev[:, 0], s=1, color=INPUT_COLOR, marker=".", linewidths=0)
        axes[0, c].set_title(f"test sample {smp['index']}: digit {smp['label']}, predicted {smp['prediction']}"
                             + (" (input cut)" if smp.get("input_truncated") else ""), fontsize=8)
        sp = np.asarray(smp["spikes"], np.float64).reshape(-1, 3)
        for l in range(L):
            a = axes[l + 1, c]
            sel = sp[sp[:, 0] == l]
            n_l = rasters["layer_sizes"][l]
            a.scatter(sel[:, 2] / 1000.0, sel[:, 1], s=2 if n_l > 50 else 12, color=layer_color(l),
                      marker="." if n_l > 50 else "|", linewidths=0 if n_l > 50 else 1)
            a.set_ylim(-0.5, rasters["layer_sizes"][l] - 0.5)
            if c == 0:
                a.set_ylabel(f"{layer_name(l, L)}\nneuron", fontsize=8)
        axes[-1, c].set_xlabel("time since stimulus onset (ms)")
    axes[0, 0].set_ylabel("input\nchannel", fontsize=8)
    if rasters.get("truncated"):
        fig.suptitle(f"spikes after the first {rasters['max_spikes']} of a sample are not drawn", fontsize=8)
    return _save(fig, path)


def weights_figure(w: np.ndarray, input_shape: tuple[int, ...] | None, path: Path, title: str, n: int = 40) -> str:
    """The first n neurons' input weights as images: fc (M, N) columns reshaped to the input map
    (two polarities side by side), conv (C, C_in, K, K) filters (input channels side by side)."""
    if w.ndim == 4:
        imgs = [np.concatenate(list(f), axis=1) for f in w[:n]]
    else:
        # the input map when known (report/run_report._input_map), else one row of M weights
        shape = input_shape if input_shape and math.prod(input_shape) == w.shape[0] else (1, 1, w.shape[0])
        imgs = [np.concatenate(list(w[:, i].reshape(shape)), axis=1) for i in range(min(n, w.shape[1]))]
    cols = min(10, len(imgs))
    rows = math.ceil(len(imgs) / cols)
    h, wd = imgs[0].shape
    fig = _figure(1.25 * cols * max(1.0, wd / h / 1.5), 1.3 * rows + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for a in axes:
        a.axis("off")
    for a, img, i in zip(axes, imgs, range(len(imgs))):
        lim = float(np.abs(img).max()) or 1.0
        a.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
        a.set_title(str(i), fontsize=6)
    sides = ""
    if w.ndim == 2 and input_shape is not None and input_shape[0] == 2:
        sides = "; left: OFF events (polarity 0), right: ON events (polarity 1)"
    elif w.ndim == 4 and w.shape[1] > 1:
        sides = "; input maps side by side"
    fig.suptitle(title + f" (red > 0 > blue, each image on its own scale{sides})", fontsize=9)
    return _save(fig, path)


def curves_figure(curves: dict, path: Path) -> str:
    """Accuracy vs time since onset and vs cumulative operations per sample, with the baseline."""
    fig = _figure(12, 4.0)
    ax = fig.subplots(1, 2)
    t = curves["time_ms"]
    acc = [100 * a for a in curves["accuracy"]]
    ax[0].plot(t, acc, "o-", ms=3, color="black", label="SNN (output counts so far)")
    ax[1].plot(curves["ops_per_sample"], acc, "o-", ms=3, color="black", label="SNN: synaptic + lateral operations")
    ax[1].plot(curves["synops_per_sample"], acc, ".--", ms=3, color=INPUT_COLOR, label="SNN: synaptic operations only")
    cmp = curves.get("comparison")
    if cmp:
        b = cmp["baseline"]
        for a in ax:
            a.axhline(100 * b["test_accuracy"], color="black", ls="--", lw=1,
                      label=f"baseline {b['network']}: {100 * b['test_accuracy']:.2f} %")
        ax[1].axvline(b["macs_per_sample"], color="black", ls=":", lw=1,
                      label=f"baseline: {b['macs_per_sample']:,.0f} MACs per sample")
        hit = cmp.get("at_baseline")
        if hit:
            ax[1].plot([hit["ops_per_sample"]], [100 * hit["accuracy"]], "*", ms=12, color="#d62728",
                       label=f"reaches the baseline: MACs / ops = {hit['fewer_ops_factor']:.2f}")
            ax[0].axvline(hit["time_ms"], color="#d62728", ls=":", lw=1, label=f"after {hit['time_ms']:.0f} ms")
    lo = max(0.0, min(acc) - 2)
    for a in ax:
        a.set_ylim(lo, 100.5)
        a.legend(fontsize=7, loc="lower right")
    ax[0].set(xlabel="time since stimulus onset (ms)", ylabel="test accuracy (%)", title="accuracy vs time")
    ax[1].set(xlabel="operations per sample so far (log scale)", ylabel="test accuracy (%)",
              title="accuracy vs operations", xscale="log")
    return _save(fig, path)
