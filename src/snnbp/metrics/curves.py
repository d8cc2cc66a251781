"""Accuracy as a function of time since stimulus onset and of operations spent, against a baseline.

``snnbp eval CHECKPOINT --curves`` (cli/train.py) runs the test set once with readouts at
``readout_grid`` times and writes RUN_DIR/curves.json:

  time_ms[r]                    readout time t_r (ms since the start of the presentation)
  accuracy[r]                   test accuracy of argmax(output counts up to t_r) (metrics/evaluate.py)
  synops_per_sample[r]          mean synaptic operations per test sample up to t_r
  lateral_ops_per_sample[r]     mean lateral-inhibition updates up to t_r
  ops_per_sample[r]             their sum: the x-axis of the accuracy-vs-operations curve
  time_stepped_membrane_updates[r]  sum_l N_l x t_r / dt, what a clocked simulator pays by t_r

All operation columns are cumulative, hence non-decreasing in r. With a baseline (a conventional
network's summary: test accuracy A_b, MACs per sample M_b) it adds ``crossing``: the first readout
at which the SNN's accuracy reaches A_b, the time and operations there, and M_b / operations (how many
times fewer operations the SNN needs for the baseline's accuracy); null when the SNN never reaches it,
reported as such. The same is given for A_b - 0.5 and A_b - 1 percentage points, so a near miss is
visible (docs/efficiency.md).
"""

from __future__ import annotations

import numpy as np

from snnbp.metrics.operations import time_stepped_membrane_updates

N_READOUTS = 40


def readout_grid(end_ms: float, n: int = N_READOUTS) -> np.ndarray:
    """n readout times over (0, end_ms]: denser early, where accuracy rises (a square-root spacing)."""
    if end_ms <= 0:
        raise ValueError(f"readout_grid: the presentation must be longer than 0 ms, got {end_ms}")
    u = np.linspace(0.0, 1.0, n + 1)[1:]
    return end_ms * u ** 2


def test_presentation_ms(source) -> float:
    """The longest test presentation of a source (MNIST: data.test_ms; recordings: their last event)."""
    if hasattr(source, "test_ms"):
        return float(source.test_ms)
    _, times, offsets = source.test_streams
    last = times[np.maximum(offsets[1:] - 1, 0)][np.diff(offsets) > 0]
    return float(last.max()) / 1000.0 if len(last) else 1.0


def build_curves(ev: dict, sizes: list[int], dt_ms: float) -> dict:
    """curves.json's columns (module doc) from ``evaluate(..., readout_ms=...)``'s output."""
    c = ev["latency_curve"]
    t = np.asarray(c["time_ms"], float)
    syn = np.asarray(c["synops_per_sample"], float)
    lat = np.asarray(c["lateral_ops_per_sample"], float)
    return {
        "time_ms": t.tolist(),
        "accuracy": list(map(float, c["accuracy"])),
        "synops_per_sample": syn.tolist(),
        "lateral_ops_per_sample": lat.tolist(),
        "ops_per_sample": (syn + lat).tolist(),
        "time_stepped_membrane_updates": [time_stepped_membrane_updates(sizes, float(v), dt_ms) for v in t],
        "dt_ms": dt_ms,
        "test_accuracy": ev["test_accuracy"],
        "n_test": ev["n_test"],
    }


def first_crossing(curves: dict, target: float) -> dict | None:
    """The first readout whose accuracy is >= target: {time_ms, ops_per_sample, accuracy}; None if none."""
    for r, a in enumerate(curves["accuracy"]):
        if a >= target:
            return {"time_ms": curves["time_ms"][r], "ops_per_sample": curves["ops_per_sample"][r],
                    "synops_per_sample": curves["synops_per_sample"][r], "accuracy": a}
    return None


def compare_with_baseline(curves: dict, baseline: dict) -> dict:
    """``crossing`` entries for the baseline's accuracy and 0.5 / 1 point below it (module doc)."""
    acc_b, macs = float(baseline["test_accuracy"]), float(baseline["macs_per_sample"])
    out = {"baseline": {"run_dir": baseline.get("run_dir"), "network": baseline.get("network"),
                        "test_accuracy": acc_b, "macs_per_sample": macs},
           "full_presentation": {"ops_per_sample": curves["ops_per_sample"][-1],
                                 "macs_ratio": macs / curves["ops_per_sample"][-1] if curves["ops_per_sample"][-1] else None}}
    for name, drop in (("at_baseline", 0.0), ("baseline_minus_0.5", 0.005), ("baseline_minus_1", 0.01)):
        hit = first_crossing(curves, acc_b - drop)
        if hit is not None:
            hit["target_accuracy"] = acc_b - drop
            hit["fewer_ops_factor"] = macs / hit["ops_per_sample"] if hit["ops_per_sample"] else None
        out[name] = hit
    return out


def ratio_words(factor: float) -> str:
    """baseline MACs / SNN operations in words: "3.10x fewer operations" or "1.23x more operations"."""
    if factor >= 1.0:
        return f"{factor:.2f}x fewer operations than the baseline's MACs"
    return f"{1.0 / factor:.2f}x more operations than the baseline's MACs"


def describe_comparison(cmp: dict) -> list[str]:
    """Lines a user reads: when and at how many operations the SNN reaches its baseline's accuracy."""
    b = cmp["baseline"]
    lines = [f"baseline {b['network']}: {100 * b['test_accuracy']:.2f} % at {b['macs_per_sample']:,.0f} MACs per sample"]
    for key, label in (("at_baseline", "its accuracy"), ("baseline_minus_0.5", "0.5 points below it"),
                       ("baseline_minus_1", "1 point below it")):
        hit = cmp[key]
        if hit is None:
            lines.append(f"  the SNN never reaches {label} within the presentation")
        else:
            lines.append(f"  the SNN reaches {label} ({100 * hit['target_accuracy']:.2f} %) after {hit['time_ms']:.1f} ms "
                         f"and {hit['ops_per_sample']:,.0f} operations per sample: {ratio_words(hit['fewer_ops_factor'])}")
    full = cmp["full_presentation"]
    lines.append(f"  whole presentation: {full['ops_per_sample']:,.0f} operations per sample "
                 f"(baseline MACs / SNN operations = {full['macs_ratio']:.2f})")
    return lines
