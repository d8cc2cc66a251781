"""The run directory: what a run writes besides checkpoints, and what may resume it.

Layout of a run directory:
    config.toml        resolved configuration
    metrics.jsonl      one JSON object per epoch (with per-layer health signals)
    last.safetensors   checkpoint after every epoch / on Ctrl-C (resumable, atomic; serialization.py)
    model.safetensors  final network
    summary.json       final numbers (also printed as the last stdout line by the CLI)

A finished run (summary.json written) is never resumed unless an override extends it (a larger
train.epochs or train.max_minutes); the network's shape (model.*) cannot change on resume.

Surviving any kill: the checkpoint is the commit point. Each epoch appends its metrics line first and
then writes the checkpoint, which records how many metrics lines it covers (``Progress.metrics_rows``);
on resume metrics.jsonl is cut back to those lines (``drop_unfinished_rows``), so a kill between the
two, or in the middle of a line, never records an epoch twice. Temporary files of interrupted atomic
writes are removed on resume (``remove_stale_tmp``). A new run never writes into a directory that
already holds a run's files (``check_fresh_out_dir``): that needs ``--resume``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snnbp.config import Config, load_config, to_dict
from snnbp.errors import ConfigError, RunFinished
from snnbp.files import read_jsonl, write_text_atomic
from snnbp.serialization import FINAL, LAST, load_tensors


def git_commit() -> str:
    """Short hash of the checkout's HEAD, with "+dirty" when tracked files differ from it."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=here, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=here, timeout=5).stdout.strip()
        return (head + ("+dirty" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


@dataclass
class Progress:
    epoch: int = 0  # epoch in progress
    next_sample: int = 0  # position within the epoch's order
    train_wall_s: float = 0.0
    samples_seen: int = 0
    partial: dict | None = None  # running statistics of the interrupted epoch (ChunkStats.to_dict)
    metrics_rows: int | None = None  # metrics.jsonl lines this checkpoint covers (None: written before it was kept)
    unwritten: list | None = None  # records of epochs whose line waits for a background test (train/metrics_lines.py)


# What a run writes into its directory; any of them present means the directory holds a run.
RUN_FILES = ("config.toml", "metrics.jsonl", LAST, FINAL, "summary.json")


def drop_unfinished_rows(metrics_path: Path, prog: Progress) -> int:
    """Cut metrics.jsonl back to the lines the checkpoint covers (atomic rewrite).

    Lines past ``prog.metrics_rows`` were appended after the checkpoint was written (a kill between the
    two); a torn last line is an append cut off by a kill; lines of epochs the checkpoint has not completed
    (a budget stop mid-epoch) are dropped as well. Returns the number of lines kept.
    """
    if not metrics_path.is_file():
        return 0
    rows, torn = read_jsonl(metrics_path)
    keep = rows if prog.metrics_rows is None else rows[: prog.metrics_rows]
    # A line of an epoch the checkpoint has not completed (a train.max_minutes stop mid-epoch) goes too:
    # the resumed run writes that epoch's line when it completes it.
    keep = [r for r in keep if r.get("epoch", 0) <= prog.epoch]
    if len(keep) != len(rows) or torn:
        write_text_atomic(metrics_path, "".join(json.dumps(r) + "\n" for r in keep))
    return len(keep)


def remove_stale_tmp(out_dir: Path) -> list[Path]:
    """Delete temporary files of this run's atomic writes that a kill left behind; returns them."""
    stale = [p for p in Path(out_dir).glob("*.tmp") if p.is_file() and p.name.startswith(RUN_FILES)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def check_fresh_out_dir(out_dir: Path) -> None:
    """ConfigError unless ``out_dir`` can take a new run: absent, or a directory without a run's files."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file, not a directory; choose a directory for the run")
    if not out_dir.is_dir():
        return
    if (out_dir / LAST).is_file():
        raise ConfigError(f"{out_dir} already holds a run; pass --resume {out_dir} to continue it or choose another --out")
    used = [name for name in RUN_FILES if (out_dir / name).exists()]
    used += sorted(p.name for p in out_dir.glob("*.tmp") if p.name.startswith(RUN_FILES))
    if used:
        raise ConfigError(f"{out_dir} already holds files of a run ({', '.join(used)}) but no checkpoint to resume; "
                          "delete the directory or choose another --out")


def summarize(out_dir: Path, cfg: Config, data_name: str, prog: Progress, last_eval: dict | None,
              commit: str) -> dict:
    rows, _ = read_jsonl(out_dir / "metrics.jsonl")
    accs = [r["test_accuracy"] for r in rows if "test_accuracy" in r and r["epoch"] > cfg.train.epochs - cfg.train.eval_last]
    s = {
        "name": cfg.name,
        "data": data_name,
        "network": f"{cfg.model.layers or cfg.model.hidden}",
        "epochs": prog.epoch,
        "samples_seen": prog.samples_seen,
        "train_wall_s": round(prog.train_wall_s, 1),
        "wall_s": round(prog.train_wall_s + sum(r.get("eval_wall_s", 0) for r in rows), 1),
        "samples_per_s": round(prog.samples_seen / prog.train_wall_s, 1) if prog.train_wall_s else None,
        "test_accuracy": last_eval["test_accuracy"] if last_eval else None,
        "synops_per_sample": last_eval["synops_per_sample"] if last_eval else None,
        "commit": commit,
        "machine": machine(),
        "run_dir": str(out_dir),
    }
    if accs:
        s["test_accuracy_last_epochs"] = {"n": len(accs), "min": min(accs), "mean": float(np.mean(accs)), "max": max(accs)}
    return s


def _check_resume_overrides(saved: Config, cfg: Config) -> None:
    """--resume may change the schedule's length, not the network: refuse model.* changes, naming the key."""
    old, new = to_dict(saved)["model"], to_dict(cfg)["model"]
    for key in old:
        if old[key] != new[key]:
            raise ConfigError(f"--resume cannot change model.{key} ({old[key]!r} -> {new[key]!r}): the network is "
                              "loaded from the checkpoint; start a new run with --out to train another shape")


def check_resumable(out_dir: Path, overrides: list[str]) -> Config:
    """The config a ``--resume`` of out_dir with these overrides would run; refuses what must not run.

    ConfigError: no checkpoint, or a model.* key changed. RunFinished: the run has finished
    (summary.json) and the overrides do not extend it (a larger train.epochs or train.max_minutes, where
    0 = no limit is the largest budget).
    """
    out_dir = Path(out_dir)
    if not (out_dir / LAST).is_file():
        raise ConfigError(f"{out_dir} holds no resumable run ({LAST} is missing); check the path")
    _, meta = load_tensors(out_dir / LAST)  # a spiking or a conventional (model.kind = "ann") checkpoint
    progress, saved_dict = meta.get("progress", {}), meta.get("config", {})
    saved = load_config(None, [], base=saved_dict)
    cfg = load_config(None, overrides, base=saved_dict)
    _check_resume_overrides(saved, cfg)
    if (out_dir / "summary.json").is_file():
        def budget(minutes: float) -> float:  # train.max_minutes = 0 means no limit: larger than any budget
            return math.inf if minutes <= 0 else minutes

        extends = (cfg.train.epochs > saved.train.epochs
                   or budget(cfg.train.max_minutes) > budget(saved.train.max_minutes))
        more_epochs = progress.get("epoch", 0) < cfg.train.epochs
        if not (extends and more_epochs):
            raise RunFinished(f"{out_dir} is a finished run ({progress.get('epoch', 0)} epochs, summary.json written); "
                              "it is left untouched - to train it further pass a larger --set train.epochs=N")
    return cfg
