"""Statistics of event datasets, and a side-by-side comparison of two N-MNIST-layout folders.

Used to check that synthetic N-MNIST looks like the real recordings: events per sample, ON/OFF balance,
the three saccade bursts, spatial spread and motion, inter-event intervals, event rate per pixel.
Every printed comparison says which data it used: a folder with ``SYNTHETIC.json`` (in it or in one of
its two parents) is synthetic, any other folder is taken to hold real recordings.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from snnbp.data.events import NMNIST_SENSOR, SensorSize
from snnbp.errors import DataError

THIRD_EDGES_MS = (105.0, 210.0)  # the three ~100 ms saccades of N-MNIST
PROFILE_BIN_MS = 10.0
PROFILE_END_MS = 340.0  # the longest real N-MNIST samples end at about 336 ms
CENTROID_MIN_EVENTS = 20  # a 10 ms window needs this many events for its centroid to mean anything


def _events_of(item) -> np.ndarray:
    """Accept a structured event array or an (events, label) pair, as datasets yield."""
    return item[0] if isinstance(item, tuple) else item


def _sample_stats(ev: np.ndarray, sensor: SensorSize) -> dict:
    """Per-sample numbers; times in ms or us as named, lengths in pixels."""
    t_us = ev["t"].astype(np.int64)
    t_ms = t_us / 1000.0
    x = ev["x"].astype(np.float64)
    y = ev["y"].astype(np.float64)
    n = len(ev)
    thirds = np.histogram(t_ms, bins=[-np.inf, *THIRD_EDGES_MS, np.inf])[0] / n
    edges = np.arange(0.0, PROFILE_END_MS + PROFILE_BIN_MS, PROFILE_BIN_MS)
    profile = np.histogram(np.minimum(t_ms, PROFILE_END_MS - 1e-9), bins=edges)[0] / n
    iei = np.diff(t_us)
    duration_ms = float(t_ms.max()) if n else 0.0
    pix = ev["y"].astype(np.int64) * sensor.width + ev["x"]
    order = np.lexsort((t_us, pix))
    same = pix[order][1:] == pix[order][:-1]
    return {
        "n": n,
        "on": float(ev["p"].mean()),
        "first_ms": float(t_ms.min()),
        "duration_ms": duration_ms,
        "thirds": thirds,
        "profile": profile,
        "x_std": float(x.std()),
        "y_std": float(y.std()),
        "bbox_w": float(x.max() - x.min() + 1),
        "bbox_h": float(y.max() - y.min() + 1),
        "extent_w": float(np.percentile(x, 95) - np.percentile(x, 5)),
        "extent_h": float(np.percentile(y, 95) - np.percentile(y, 5)),
        **_centroid_range(x, y, t_ms),
        "iei_median": float(np.median(iei)) if len(iei) else np.nan,
        "iei_p90": float(np.percentile(iei, 90)) if len(iei) else np.nan,
        "pixel_isi": np.diff(t_us[order])[same],
        "rate_hz_px": n / (sensor.width * sensor.height * max(duration_ms, 1e-3) * 1e-3),
        "active_px": len(np.unique(pix)) / (sensor.width * sensor.height),
    }


def _centroid_range(x: np.ndarray, y: np.ndarray, t_ms: np.ndarray) -> dict:
    """How far the event centroid travels: max - min over 10 ms windows of the window centroid (px)."""
    win = (t_ms // PROFILE_BIN_MS).astype(np.int64)
    counts = np.bincount(win)
    ok = counts >= CENTROID_MIN_EVENTS
    if not ok.any():
        return {"centroid_range_x": np.nan, "centroid_range_y": np.nan}
    cx = np.bincount(win, weights=x)[ok] / counts[ok]
    cy = np.bincount(win, weights=y)[ok] / counts[ok]
    return {"centroid_range_x": float(cx.max() - cx.min()), "centroid_range_y": float(cy.max() - cy.min())}


def _nanmedian(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(np.median(values)) if values.size else float("nan")


def dataset_statistics(samples: Iterable, sensor: SensorSize = NMNIST_SENSOR) -> dict:
    """Summary statistics of a set of recordings.

    samples: iterable of structured event arrays (x, y, p, t in us) or (events, label) pairs; empty
    samples are counted but otherwise skipped. Returns a dict of plain floats / lists:
    samples; events_per_sample {min, median, max, mean}; on_fraction (mean of per-sample ON fractions);
    first_event_ms and duration_ms {min, median, max} (last timestamp); thirds (mean fraction of events in
    [0, 105), [105, 210), [210, end) ms) and thirds_min (smallest per-sample fraction of each); profile_10ms
    (mean fraction per 10 ms bin up to 340 ms); x_std, y_std, bbox_w, bbox_h, extent_w, extent_h (5-95 %
    range), centroid_range_x/y (px, means over samples); iei_us {median, p90} (medians over samples of
    each sample's inter-event interval median / 90th percentile); pixel_isi_us {p5, median} (pooled
    intervals between consecutive events of one pixel); rate_hz_per_pixel and active_pixel_fraction.
    """
    per = []
    empty = 0
    for item in samples:
        ev = _events_of(item)
        if len(ev) == 0:
            empty += 1
            continue
        per.append(_sample_stats(ev, sensor))
    if not per:
        return {"samples": empty, "empty_samples": empty}

    def col(key):
        return np.array([s[key] for s in per], dtype=np.float64)

    def mean(key):  # NaN (no warning) when no sample defines it, e.g. too few events for a centroid
        values = col(key)
        return float(values[~np.isnan(values)].mean()) if (~np.isnan(values)).any() else float("nan")

    counts = col("n")
    thirds = np.stack([s["thirds"] for s in per])
    isi = np.concatenate([s["pixel_isi"] for s in per])
    return {
        "samples": len(per) + empty,
        "empty_samples": empty,
        "events_per_sample": {"min": float(counts.min()), "median": float(np.median(counts)),
                              "max": float(counts.max()), "mean": float(counts.mean())},
        "on_fraction": mean("on"),
        "first_event_ms": float(np.median(col("first_ms"))),
        "duration_ms": {"min": float(col("duration_ms").min()), "median": float(np.median(col("duration_ms"))),
                        "max": float(col("duration_ms").max())},
        "thirds": thirds.mean(axis=0).tolist(),
        "thirds_min": thirds.min(axis=0).tolist(),
        "profile_10ms": np.stack([s["profile"] for s in per]).mean(axis=0).tolist(),
        **{k: mean(k) for k in ("x_std", "y_std", "bbox_w", "bbox_h", "extent_w", "extent_h",
                                "centroid_range_x", "centroid_range_y")},
        "iei_us": {"median": _nanmedian(col("iei_median")), "p90": _nanmedian(col("iei_p90"))},
        "pixel_isi_us": {"p5": float(np.percentile(isi, 5)) if len(isi) else np.nan,
                         "median": float(np.median(isi)) if len(isi) else np.nan},
        "rate_hz_per_pixel": mean("rate_hz_px"),
        "active_pixel_fraction": mean("active_px"),
    }


# ------------------------------------------------------------------------------------------- folders


def nmnist_files(directory: str | Path, limit: int | None = None) -> list[Path]:
    """The .bin files of an N-MNIST-layout folder, ordered by (split, MNIST index), at most ``limit``.

    Accepts the dataset root (``Train/``, ``Test/`` inside), one split folder (digit folders inside), or
    a folder of .bin files. Ordering by index (not by digit) makes the first N a mix of all digits, and
    the same MNIST digits in a real and a synthetic folder.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory} is not a folder; give a folder in N-MNIST layout (Train/<digit>/<NNNNN>.bin).")
    files = [*directory.glob("*/[0-9]/*.bin"), *directory.glob("[0-9]/*.bin"), *directory.glob("*.bin")]
    split_rank = {"train": 0, "test": 1}

    def key(p: Path):
        split = p.parent.parent.name.lower() if p.parent.name.isdigit() else ""
        stem = int(p.stem) if p.stem.isdigit() else 10**9
        return (split_rank.get(split, 2), stem, str(p))

    files = sorted(set(files), key=key)
    if not files:
        raise DataError(f"{directory} holds no .bin files in N-MNIST layout (Train/<digit>/<NNNNN>.bin).")
    return files if limit is None else files[: int(limit)]


def describe_source(directory: str | Path) -> str:
    """One line saying whether a folder holds real or synthetic N-MNIST, from its SYNTHETIC.json."""
    from snnbp.data.synthetic.writer import read_marker

    marker = read_marker(directory)
    if marker is None:
        return "REAL recordings (no SYNTHETIC.json)"
    return (f"SYNTHETIC ({marker.get('generator', '?')} v{marker.get('generator_version', '?')}, "
            f"seed {marker.get('seed', '?')})")


def folder_statistics(directory: str | Path, limit: int | None = None, files: list[Path] | None = None) -> dict:
    """dataset_statistics over the files of an N-MNIST folder, read with the official reader."""
    from snnbp.data.nmnist_format import read_events

    files = nmnist_files(directory, limit) if files is None else files
    return dataset_statistics(read_events(p) for p in files)


_ROWS = [  # (label, getter, format)
    ("events/sample min", lambda s: s["events_per_sample"]["min"], "{:,.0f}"),
    ("events/sample median", lambda s: s["events_per_sample"]["median"], "{:,.0f}"),
    ("events/sample max", lambda s: s["events_per_sample"]["max"], "{:,.0f}"),
    ("events/sample mean", lambda s: s["events_per_sample"]["mean"], "{:,.0f}"),
    ("ON fraction", lambda s: s["on_fraction"], "{:.3f}"),
    ("first event (ms, median)", lambda s: s["first_event_ms"], "{:.1f}"),
    ("duration (ms) min", lambda s: s["duration_ms"]["min"], "{:.1f}"),
    ("duration (ms) median", lambda s: s["duration_ms"]["median"], "{:.1f}"),
    ("duration (ms) max", lambda s: s["duration_ms"]["max"], "{:.1f}"),
    ("events in 0-105 ms", lambda s: s["thirds"][0], "{:.3f}"),
    ("events in 105-210 ms", lambda s: s["thirds"][1], "{:.3f}"),
    ("events in 210+ ms", lambda s: s["thirds"][2], "{:.3f}"),
    ("smallest third, any sample", lambda s: min(s["thirds_min"]), "{:.3f}"),
    ("x std (px)", lambda s: s["x_std"], "{:.2f}"),
    ("y std (px)", lambda s: s["y_std"], "{:.2f}"),
    ("bbox w x h (px)", lambda s: (s["bbox_w"], s["bbox_h"]), "{:.1f} x {:.1f}"),
    ("5-95% extent w x h (px)", lambda s: (s["extent_w"], s["extent_h"]), "{:.1f} x {:.1f}"),
    ("centroid range x, y (px)", lambda s: (s["centroid_range_x"], s["centroid_range_y"]), "{:.1f}, {:.1f}"),
    ("inter-event interval median (us)", lambda s: s["iei_us"]["median"], "{:.1f}"),
    ("inter-event interval p90 (us)", lambda s: s["iei_us"]["p90"], "{:.1f}"),
    ("same-pixel interval p5 (us)", lambda s: s["pixel_isi_us"]["p5"], "{:,.0f}"),
    ("same-pixel interval median (us)", lambda s: s["pixel_isi_us"]["median"], "{:,.0f}"),
    ("rate per pixel (Hz)", lambda s: s["rate_hz_per_pixel"], "{:.2f}"),
    ("active pixel fraction", lambda s: s["active_pixel_fraction"], "{:.3f}"),
]


def _fmt(stats: dict, getter, fmt: str) -> str:
    try:
        value = getter(stats)
    except (KeyError, TypeError, ValueError):
        return "-"
    return fmt.format(*value) if isinstance(value, tuple) else fmt.format(value)


def _profile_line(stats: dict, width: int = 2) -> str:
    """Event-rate profile in 20 ms bins as per-mille numbers, to show the three bursts in plain text."""
    prof = np.asarray(stats.get("profile_10ms", []))
    if prof.size == 0:
        return "-"
    pairs = prof[: prof.size // 2 * 2].reshape(-1, 2).sum(axis=1)
    return " ".join(f"{round(1000 * v):>{width + 1}d}" for v in pairs)


def format_comparison(stats_a: dict, stats_b: dict, label_a: str, label_b: str) -> str:
    """Two statistics dicts as a plain-text table (labels say what data each column is)."""
    lines = [f"A: {label_a}", f"B: {label_b}", ""]
    w = max(len(r[0]) for r in _ROWS) + 2
    lines.append(f"{'':<{w}}{'A':>16}{'B':>16}")
    lines.append(f"{'samples':<{w}}{stats_a.get('samples', 0):>16,}{stats_b.get('samples', 0):>16,}")
    for label, getter, fmt in _ROWS:
        lines.append(f"{label:<{w}}{_fmt(stats_a, getter, fmt):>16}{_fmt(stats_b, getter, fmt):>16}")
    lines += ["", "events per 20 ms bin (per mille), 0-340 ms:",
              f"A {_profile_line(stats_a)}", f"B {_profile_line(stats_b)}"]
    return "\n".join(lines)


def compare(a_dir: str | Path, b_dir: str | Path, limit: int | None = None, matched: bool = False) -> str:
    """Statistics of two N-MNIST-layout folders side by side, as text (each labelled real or synthetic).

    limit: use the first N files of each (by split, then MNIST index). matched: use only the files whose
    path relative to the folder (e.g. Train/5/00001.bin) exists in both, i.e. the same MNIST digits.
    """
    files_a, files_b = nmnist_files(a_dir), nmnist_files(b_dir)
    if matched:
        rel_b = {p.relative_to(b_dir).as_posix() for p in files_b}
        files_a = [p for p in files_a if p.relative_to(a_dir).as_posix() in rel_b]
        rel_a = {p.relative_to(a_dir).as_posix() for p in files_a}
        files_b = [p for p in files_b if p.relative_to(b_dir).as_posix() in rel_a]
        if not files_a:
            raise DataError(f"{a_dir} and {b_dir} have no file path in common; compare without --matched.")
    if limit is not None:
        files_a, files_b = files_a[: int(limit)], files_b[: int(limit)]
    label_a = f"{a_dir}  [{describe_source(a_dir)}], {len(files_a)} files"
    label_b = f"{b_dir}  [{describe_source(b_dir)}], {len(files_b)} files"
    return format_comparison(folder_statistics(a_dir, files=files_a), folder_statistics(b_dir, files=files_b),
                             label_a, label_b)
