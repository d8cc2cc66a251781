"""Pictures of event streams and spikes: ON/OFF frames (PNG), an animation (GIF), spike rasters (PNG).

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend change),
so this works on machines without a display and does not disturb a caller's own matplotlib setup.
Colours: ON events red, OFF events blue, on a white (PNG) or black (GIF) background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snnbp.data.events import SensorSize, events_to_channels

ON_RGB = np.array([0.85, 0.1, 0.1])
OFF_RGB = np.array([0.1, 0.3, 0.9])


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


def _counts(events: np.ndarray, sensor: SensorSize, t0_us: float, t1_us: float) -> np.ndarray:
    """(2, H, W) event counts of OFF (0) and ON (1) events with t0 <= t < t1 (us)."""
    sel = events[(events["t"] >= t0_us) & (events["t"] < t1_us)]
    out = np.zeros((2, sensor.height, sensor.width))
    np.add.at(out, (np.minimum(sel["p"], 1).astype(np.intp), sel["y"].astype(np.intp), sel["x"].astype(np.intp)), 1.0)
    return out


def _rgb(counts: np.ndarray, scale: float, background: str = "white") -> np.ndarray:
    """(H, W, 3) float image in [0, 1] from (2, H, W) OFF/ON counts; ``scale`` counts give full colour."""
    off = np.clip(counts[0] / scale, 0, 1)[..., None]
    on = np.clip(counts[1] / scale, 0, 1)[..., None]
    if background == "white":  # fade from white towards the polarity colours
        img = 1.0 - on * (1.0 - ON_RGB) - off * (1.0 - OFF_RGB)
    else:
        img = on * ON_RGB + off * OFF_RGB
    return np.clip(img, 0.0, 1.0)


def _end_us(events: np.ndarray) -> float:
    return float(events["t"].max()) + 1.0 if len(events) else 1.0


def plot_event_frames(events: np.ndarray, sensor: SensorSize, path: str | Path, n_frames: int = 6,
                      title: str | None = None) -> Path:
    """PNG of ``n_frames`` equal time slices of a recording, ON red and OFF blue; returns the path.

    events: structured array (x, y, p, t in us). Each panel is titled with its time slice in ms.
    """
    n_frames = max(1, int(n_frames))
    edges = np.linspace(0.0, _end_us(events), n_frames + 1)
    frames = [_counts(events, sensor, a, b) for a, b in zip(edges[:-1], edges[1:])]
    nz = np.concatenate([f[f > 0] for f in frames]) if len(events) else np.ones(1)
    scale = max(1.0, float(np.percentile(nz, 95)))  # robust: a few hot pixels must not wash the rest out
    fig = _figure(2.0 * n_frames, 2.4)
    axes = fig.subplots(1, n_frames, squeeze=False)[0]
    for ax, counts, a, b in zip(axes, frames, edges[:-1], edges[1:]):
        ax.imshow(_rgb(counts, scale), interpolation="nearest")
        ax.set_title(f"{a / 1000:.0f}-{b / 1000:.0f} ms\n{int(counts.sum())} ev", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"{len(events)} events (ON red, OFF blue)", fontsize=9)
    return _save(fig, path)


def animate_events(events: np.ndarray, sensor: SensorSize, path: str | Path, frame_ms: float = 10.0,
                   zoom: int = 8) -> Path:
    """Animated GIF, one frame per ``frame_ms`` of recording time played in real time; returns the path.

    Black background, ON red, OFF blue; each sensor pixel drawn as ``zoom`` x ``zoom`` screen pixels.
    """
    from PIL import Image

    step_us = max(1.0, 1000.0 * float(frame_ms))
    edges = np.arange(0.0, _end_us(events) + step_us, step_us)
    frames = []
    for a, b in zip(edges[:-1], edges[1:]):
        rgb = (255 * _rgb(_counts(events, sensor, a, b), scale=2.0, background="black")).astype(np.uint8)
        rgb = np.repeat(np.repeat(rgb, zoom, axis=0), zoom, axis=1)
        frames.append(Image.fromarray(rgb, mode="RGB"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # GIF frame durations are whole milliseconds (stored as 10 ms units by most writers)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=max(10, round(frame_ms)), loop=0)
    return path


def _as_pairs(spikes) -> tuple[np.ndarray, np.ndarray]:
    """(neuron_idx, t_us) from a pair of arrays or an (N, 2) array."""
    if isinstance(spikes, np.ndarray) and spikes.ndim == 2 and spikes.shape[1] == 2:
        return spikes[:, 0], spikes[:, 1]
    idx, t = spikes
    return np.asarray(idx), np.asarray(t)


def plot_spike_raster(spike_times_per_layer: list, path: str | Path, input_events: np.ndarray | None = None,
                      sensor: SensorSize | None = None, layer_names: list[str] | None = None,
                      title: str | None = None) -> Path:
    """PNG raster: one panel per layer (neuron index over time in ms), input events on top if given.

    spike_times_per_layer: one entry per layer, each (neuron_idx, t_us) arrays of equal length or an
    (N, 2) array. input_events: structured events drawn as input channels (ON red, OFF blue); their
    channel numbering needs ``sensor`` (default: the largest x, y seen).
    """
    panels = len(spike_times_per_layer) + (input_events is not None)
    fig = _figure(8.0, 1.0 + 1.8 * max(1, panels))
    axes = fig.subplots(max(1, panels), 1, squeeze=False, sharex=True)[:, 0]
    row = 0
    if input_events is not None:
        if sensor is None and len(input_events):
            sensor = SensorSize(int(input_events["x"].max()) + 1, int(input_events["y"].max()) + 1, 2)
        ax = axes[0]
        if len(input_events):
            ch = events_to_channels(input_events, sensor)
            on = input_events["p"] > 0
            t_ms = input_events["t"] / 1000.0
            ax.scatter(t_ms[on], ch[on], s=1, color=ON_RGB, marker=".", linewidths=0, label="ON")
            ax.scatter(t_ms[~on], ch[~on], s=1, color=OFF_RGB, marker=".", linewidths=0, label="OFF")
        ax.set_ylabel("input\nchannel", fontsize=8)
        row = 1
    names = layer_names or [f"layer {i + 1}" for i in range(len(spike_times_per_layer))]
    for ax, spikes, name in zip(axes[row:], spike_times_per_layer, names):
        idx, t_us = _as_pairs(spikes)
        ax.scatter(np.asarray(t_us, dtype=np.float64) / 1000.0, idx, s=2, color="k", marker=".", linewidths=0)
        ax.set_ylabel(f"{name}\nneuron", fontsize=8)
    axes[-1].set_xlabel("time (ms)")
    fig.suptitle(title or "spike raster", fontsize=9)
    return _save(fig, path)
