"""`snnbp reproduce ROW`: one command per row of the paper's results, and the table that collects them.

A row names an embedded preset (snnbp/configs/paper/*.toml) and the paper's numbers for it
(Lee et al. 2016, v1 Table 2 and the Frontiers version; docs/paper-readings.md says which is which).
``reproduce`` trains the preset into ``RESULTS/ROW/`` (the run directory itself: config.toml,
metrics.jsonl, last.safetensors while unfinished, model.safetensors and summary.json at the end) and
writes ``RESULTS/ROW/record.json`` with the command, commit, machine and wall time. Running the same
command again continues an unfinished row (exact resume, train/loop.py) and leaves a finished one
untouched. ``write_table`` regenerates RESULTS/README.md from the records alone: every measured
number in it is read from a record, none is typed.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from snnbp.errors import ConfigError
from snnbp.files import read_jsonl, write_json_atomic


@dataclass(frozen=True)
class PaperRow:
    """A result of the paper: the preset that reproduces it and the paper's [min, mean, max] (%)."""

    preset: str
    task: str
    network: str
    protocol: str
    paper: tuple[float | None, float, float | None] | None  # [min, mean, max]; None where the paper gives one number
    source: str
    baseline: str | None = None  # the row of the conventional network of the same shape and data (model.kind = "ann")


ROWS: dict[str, PaperRow] = {
    "mnist-800": PaperRow("paper/mnist-800.toml", "PI-MNIST", "784-800-10", "SGD, batch 1", (98.56, 98.64, 98.71),
                          "v1 Table 2", "ann-mnist-800"),
    "mnist-500-500": PaperRow("paper/mnist-500-500.toml", "PI-MNIST", "784-500-500-10", "SGD, batch 1",
                              (98.63, 98.70, 98.76), "v1 Table 2"),
    "mnist-300-300-adam": PaperRow("paper/mnist-300-300-adam.toml", "PI-MNIST", "784-300-300-10", "ADAM",
                                   (98.71, 98.77, 98.88), "v1 Table 2"),
    "mnist-300-300-sgd": PaperRow("paper/mnist-300-300-sgd.toml", "PI-MNIST", "784-300-300-10",
                                  "SGD, batch 1 (the ADAM row's network; deviation)", (98.71, 98.77, 98.88),
                                  "v1 Table 2 (ADAM row)"),
    "nmnist-800": PaperRow("paper/nmnist-800.toml", "N-MNIST", "2312-800-10", "SGD, batch 1", (None, 98.66, None),
                           "Frontiers (as cited)", "ann-nmnist-800"),
    "nmnist-500": PaperRow("paper/nmnist-500.toml", "N-MNIST", "2312-500-10", "SGD, batch 1", (98.45, 98.53, 98.61),
                           "v1 Table 2"),
    "mnist-conv": PaperRow("paper/mnist-conv.toml", "MNIST", "28x28-20C5-P2-50C5-P2-200-10", "ADAM",
                           (None, 99.31, None), "Frontiers (as cited)", "ann-mnist-conv"),
    "main-job": PaperRow("quick-mnist-800.toml", "PI-MNIST", "784-800-10", "ADAM, 5 min budget", (None, 97.5, None),
                         "snnbp target (>= 97.5 %)", "ann-mnist-800"),
    # Conventional baselines (model.kind = "ann"): same shape, same data, MACs per sample recorded.
    "ann-mnist-800": PaperRow("paper/ann-mnist-800.toml", "PI-MNIST", "784-800-10 ReLU MLP", "ADAM, batch 100",
                              (None, 98.4, None), "v1 text (shallow MLP cited)"),
    "ann-nmnist-800": PaperRow("paper/ann-nmnist-800.toml", "N-MNIST", "2312-800-10 ReLU MLP", "ADAM, batch 100",
                               None, "snnbp baseline (event counts)"),
    "ann-mnist-conv": PaperRow("paper/ann-mnist-conv.toml", "MNIST", "28x28-20C5-P2-50C5-P2-200-10 ReLU CNN",
                               "ADAM, batch 100", None, "snnbp baseline"),
    "ann-nmnist-conv": PaperRow("paper/ann-nmnist-conv.toml", "N-MNIST", "2x34x34-20C5-P2-50C4-P2-200-10 ReLU CNN",
                                "ADAM, batch 100", (None, 98.3, None), "v1 Table 2 (Neil & Liu 2016 CNN, centred)"),
}


def row(name: str) -> PaperRow:
    if name not in ROWS:
        raise ConfigError(f"unknown row '{name}'; known rows: {', '.join(ROWS)}")
    return ROWS[name]


def preset_path(name: str) -> Path:
    from snnbp.config import embedded_config

    return embedded_config(row(name).preset)


def reproduce(name: str, results: Path, overrides: list[str], log=print) -> dict:
    """Train row ``name`` into results/name (continuing it if unfinished); return its summary."""
    from snnbp.serialization import LAST
    from snnbp.train.loop import run_from_args
    from snnbp.train.run_dir import git_commit, machine

    from snnbp.errors import RunFinished
    from snnbp.train.run_dir import check_resumable

    run_dir = Path(results) / name
    record_path = run_dir / "record.json"
    resume = (run_dir / LAST).is_file()
    if resume:
        try:
            check_resumable(run_dir, overrides)
        except RunFinished:
            log(f"{run_dir} is finished; left untouched (see {record_path}); a larger --set train.epochs=N extends it")
            return json.loads((run_dir / "summary.json").read_text())
    record = json.loads(record_path.read_text()) if record_path.is_file() else {
        "row": name, "preset": row(name).preset, "command": [], "sessions": []}
    record["command"].append(" ".join(["snnbp", "reproduce", name, *(f"--set {shlex.quote(o)}" for o in overrides)]))
    session = {"commit_start": git_commit(), "machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    record["sessions"].append(session)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record_path, record)
    t0 = time.perf_counter()
    try:
        if resume:
            summary = run_from_args(None, overrides, None, str(run_dir))
        else:
            summary = run_from_args(str(preset_path(name)), overrides, str(run_dir), None)
    finally:
        session["wall_s"] = round(time.perf_counter() - t0, 3)  # ms: a tiny run on a fast machine is under 0.05 s
        session["commit_end"] = git_commit()
        write_json_atomic(record_path, record)
    return summary


def _rows_of(run_dir: Path) -> list[dict]:
    p = run_dir / "metrics.jsonl"
    return read_jsonl(p)[0] if p.is_file() else []  # a row still training may have a torn last line


def _fmt_triple(t) -> str:
    if t is None:
        return "-"
    lo, mean, hi = t
    if lo is None:
        return f"{mean:.2f}"
    return f"[{lo:.2f}, {mean:.2f}, {hi:.2f}]"


def row_status(name: str, run_dir: Path) -> dict:
    """What a row's record says: measured [min, mean, max] (%), progress, wall time, commits."""
    from snnbp.config import load_config

    rows = _rows_of(run_dir)
    record = json.loads((run_dir / "record.json").read_text()) if (run_dir / "record.json").is_file() else {}
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else None
    cfg = load_config(run_dir / "config.toml") if (run_dir / "config.toml").is_file() else None
    epochs = cfg.train.epochs if cfg else None
    last_n = cfg.train.eval_last if cfg else 0
    tested = [r for r in rows if "test_accuracy" in r]
    window = [100 * r["test_accuracy"] for r in tested if epochs and last_n and r["epoch"] > epochs - last_n]
    out = {
        "row": name, "finished": summary is not None, "epochs_done": rows[-1]["epoch"] if rows else 0,
        "epochs": epochs, "eval_last": last_n,
        "window": (min(window), sum(window) / len(window), max(window)) if window else None,
        "n_window": len(window),
        "latest": (tested[-1]["epoch"], 100 * tested[-1]["test_accuracy"]) if tested else None,
        # time spent in the recorded epochs (training + evaluation), also while a row is running
        "wall_s": sum(r.get("epoch_wall_s", 0.0) for r in rows),
        "commits": sorted({c for s in record.get("sessions", []) for c in (s.get("commit_start"), s.get("commit_end")) if c}),
        "machines": sorted({s["machine"] for s in record.get("sessions", []) if "machine" in s}),
        "command": record.get("command", []),
        "data": summary.get("data") if summary else None,
        # a row trained on the synthetic N-MNIST (data.source = "nmnist-synthetic") says so in the table
        "synthetic": bool(cfg and cfg.data.source == "nmnist-synthetic"),
    }
    return out


def _operations_cells(run_dir: Path, r: PaperRow) -> tuple[str, str]:
    """The table's "ops / test sample" and "vs baseline" cells of a row, read from its records."""
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    if "macs_per_sample" in summary:
        return f"{summary['macs_per_sample'] / 1e6:.2f} M MACs", "-"
    curves = json.loads((run_dir / "curves.json").read_text()) if (run_dir / "curves.json").is_file() else None
    if curves is None:
        return "-", "-"
    ops = f"{curves['ops_per_sample'][-1] / 1e6:.2f} M SynOps + lateral"
    cmp = curves.get("comparison")
    if not cmp:
        return ops, "no baseline"
    base = f"[{r.baseline}]" if r.baseline else ""
    acc_b = 100 * cmp["baseline"]["test_accuracy"]
    hit = cmp.get("at_baseline")
    if hit:
        return ops, (f"MACs / ops = {hit['fewer_ops_factor']:.2f} at {acc_b:.2f} % ({hit['time_ms']:.0f} ms) {base}")
    near = cmp.get("baseline_minus_0.5") or cmp.get("baseline_minus_1")
    text = f"never reaches {acc_b:.2f} % {base}"
    if near:
        text += (f"; MACs / ops = {near['fewer_ops_factor']:.2f} at {100 * near['target_accuracy']:.2f} % "
                 f"({near['time_ms']:.0f} ms)")
    return ops, text


def write_table(results: Path) -> Path:
    """Regenerate results/README.md from the row records under ``results`` (module doc)."""
    results = Path(results)
    lines = [
        "# Reproduction records",
        "",
        "Generated by `snnbp reproduce --table` from the records in this folder; do not edit by hand.",
        "Each row is trained by `snnbp reproduce ROW` (the same command continues an unfinished row).",
        "Measured = test accuracy (%) on the full test set, [min, mean, max] over the last `eval_last` epochs",
        "of the schedule (the paper's statistic), or the final test of a row without that window (eval_last = 0);",
        "`unfinished` rows (a run in progress or stopped; its README says which) give their epochs done and",
        "`latest`, the newest evaluated epoch.",
        "Operations per test sample (docs/efficiency.md): a spiking row's synaptic operations plus lateral-inhibition",
        "updates over the whole test presentation, from `snnbp eval results/ROW --curves` (curves.json); a",
        "conventional row's (`ann-*`) multiply-accumulates. `vs baseline`: when the spiking row's accuracy over time",
        "first reaches its conventional baseline's (row in brackets), the baseline's MACs / the operations spent by then",
        "(above 1: the SNN needs fewer operations; below 1: more).",
        "",
        "| row | task | network | protocol | paper | measured | status | ops / test sample | vs baseline | wall time | commits | source |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in ROWS.items():
        d = results / name
        if not d.is_dir():
            lines.append(f"| {name} | {r.task} | {r.network} | {r.protocol} | {_fmt_triple(r.paper)} | - | not run | - | - | - | - "
                         f"| {r.source} |")
            continue
        st = row_status(name, d)
        measured = _fmt_triple(st["window"]) if st["window"] and st["finished"] else "-"
        if st["finished"] and not st["eval_last"] and st["latest"]:  # a single-number row (main job): its final test
            measured = f"{st['latest'][1]:.2f} (final test)"
        if st["finished"]:
            status = f"finished, {st['epochs_done']} epochs"
            if st["window"] and st["n_window"] < st["eval_last"]:
                status += f" (window of {st['n_window']} evaluations)"
        else:
            status = f"unfinished: epoch {st['epochs_done']}/{st['epochs']}"
            if st["latest"]:
                status += f", latest {st['latest'][1]:.2f} % (epoch {st['latest'][0]})"
        wall = f"{st['wall_s'] / 3600:.2f} h" if st["wall_s"] else "-"
        task = f"{r.task} (synthetic)" if st["synthetic"] else r.task
        ops, versus = _operations_cells(d, r)
        lines.append(f"| [{name}]({name}/) | {task} | {r.network} | {r.protocol} | {_fmt_triple(r.paper)} | "
                     f"{measured} | {status} | {ops} | {versus} | {wall} | {', '.join(st['commits']) or '-'} | {r.source} |")
    lines += ["", "Machines:", ""]
    machines = sorted({m for name in ROWS if (results / name).is_dir() for m in row_status(name, results / name)["machines"]})
    lines += [f"- {m}" for m in machines] or ["- (none yet)"]
    lines += ["", "Commands:", ""]
    for name in ROWS:
        if (results / name).is_dir():
            for c in row_status(name, results / name)["command"]:
                lines.append(f"- `{c}`")
    others = sorted(p.name for p in results.glob("*.md") if p.name != "README.md")
    others += sorted(f"{p.name}/" for p in results.iterdir() if p.is_dir() and p.name not in ROWS and (p / "README.md").is_file())
    if others:
        lines += ["", "Other records in this folder (earlier sessions, short runs; each states its command):", ""]
        lines += [f"- [{o}]({o})" for o in others]
    out = results / "README.md"
    out.write_text("\n".join(lines) + "\n")
    return out
