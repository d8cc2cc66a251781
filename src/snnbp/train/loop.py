"""The training loop: epochs of training (either engine), evaluation, metrics and checkpoints.

What a run directory holds and when it may be resumed: train/run_dir.py.

Schedules (docs/method.md 5): lr and rho are multiplied by ``decay_per_epoch`` after every epoch; the first
epoch may use longer warm-up presentations. Divergence (NaN, runaway firing) stops training with a
TrainingDiverged error and leaves the last good checkpoint in place.

Resume is exact: every draw is a pure function of (seed, epoch, sample), chunks start at multiples
of ``train.chunk`` within an epoch, and an interrupted epoch's running statistics travel in the
checkpoint, so a run stopped (Ctrl-C, kill -9) and resumed writes the same metrics as one never
stopped.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from snnbp.config import Config, load_config, to_dict, to_toml
from snnbp.data.sources import make_source
from snnbp.errors import ConfigError, SnnbpError, TrainingDiverged
from snnbp.files import write_json_atomic, write_text_atomic
from snnbp.gradient.revival import SilentUnitRevival
from snnbp.metrics.health import epoch_health
from snnbp.model import Network
from snnbp.serialization import FINAL, LAST, load_checkpoint, save_checkpoint, save_network
from snnbp.train.background_eval import snapshot
from snnbp.train.build import build_network, make_background_evaluator, make_evaluator, make_trainer, run_context
from snnbp.train.metrics_lines import MetricsLines
from snnbp.train.prefetch import prefetched
from snnbp.train.progress_lines import ProgressLines
from snnbp.train.protocol import ChunkStats
from snnbp.train.run_dir import (Progress, check_fresh_out_dir, check_resumable, drop_unfinished_rows, git_commit,
                                 remove_stale_tmp, summarize)


def _check_health(net: Network, stats: ChunkStats, cfg: Config, presentation_ms: float) -> str | None:
    for l, (w, th) in enumerate(zip(net.weights, net.thresholds)):
        if not (np.isfinite(w).all() and np.isfinite(th).all()):
            return f"layer {l} has non-finite weights or thresholds"
    rate = stats.spikes[:-1].sum() / max(1, stats.samples) / max(1, sum(net.sizes[:-1])) / (presentation_ms / 1000)
    if net.n_layers > 1 and rate > cfg.train.max_rate_hz:
        return f"mean hidden firing rate {rate:.0f} Hz exceeds train.max_rate_hz={cfg.train.max_rate_hz:g}"
    return None


def train(cfg: Config, out_dir: Path, resume: bool = False, progress_bar: bool = True, log=print) -> dict:
    """Train according to ``cfg`` into ``out_dir``; returns the summary dict (also saved).

    A new run that stops with a user-facing error before its first checkpoint (data refused, diverged
    in the first chunks) removes the directory it created, so nothing half-made is left to trip the
    next run.
    """
    out_dir = Path(out_dir)
    # Only the process that writes the directory judges it (under torchrun the others would see rank 0's files).
    writes_files = os.environ.get("RANK", "0") == "0"
    if not resume and writes_files:
        check_fresh_out_dir(out_dir)
    created = not resume and writes_files and not out_dir.exists()
    try:
        return _train(cfg, out_dir, resume, progress_bar, log)
    except SnnbpError:
        if created and out_dir.is_dir() and not (out_dir / LAST).exists():
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _train(cfg: Config, out_dir: Path, resume: bool, progress_bar: bool, log) -> dict:
    commit = git_commit()  # the code this run starts from
    dist = run_context(cfg)  # torchrun: join the process group; only rank 0 writes files and logs
    is_main = dist.is_main
    log = log if is_main else (lambda *a, **k: None)
    progress_bar = progress_bar and is_main
    evaluate = make_evaluator(cfg, dist)
    source = make_source(cfg.data, cfg.train.seed)
    prog = Progress()
    opt_t: dict = {}
    if resume:
        net, opt_t, opt_m, p, _ = load_checkpoint(out_dir / LAST)
        prog = Progress(**p)
        trainer = make_trainer(cfg, net, dist)
        trainer.load_state_tensors(opt_t, opt_m)
    else:
        prog.metrics_rows = 0
        net = build_network(cfg, source.n_inputs)
        trainer = make_trainer(cfg, net, dist)
    if net.n_inputs != source.n_inputs:
        raise ConfigError(f"the network has {net.n_inputs} inputs but data '{cfg.data.source}' has {source.n_inputs}")
    background = make_background_evaluator(cfg, dist, net, source, lambda n: evaluate(n, source, progress_bar=False), log)
    try:
        return _epochs(cfg, out_dir, resume, progress_bar, log, commit, dist, evaluate, source, prog, opt_t, net,
                       trainer, background)
    finally:
        if background is not None:
            background.close()


def _epochs(cfg, out_dir, resume, progress_bar, log, commit, dist, evaluate, source, prog, opt_t, net, trainer,
            background) -> dict:
    from tqdm import tqdm

    is_main = dist.is_main
    metrics_path = out_dir / "metrics.jsonl"
    if resume and is_main:
        prog.metrics_rows = drop_unfinished_rows(metrics_path, prog)
        remove_stale_tmp(out_dir)
        # An extended run is unfinished again until it ends: a summary left from its earlier end would
        # make a later plain `--resume` (after a kill) refuse it as finished.
        (out_dir / "summary.json").unlink(missing_ok=True)
    lines = MetricsLines(metrics_path, prog, background, log)
    if resume:
        log(f"resuming {out_dir} at epoch {prog.epoch + 1}, sample {prog.next_sample}")
        lines.resubmit(opt_t, net, lambda n: evaluate(n, source, progress_bar=progress_bar))
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / "config.toml", to_toml(cfg))
    cfg_dict = to_dict(cfg)
    # Silent-unit revival (optim.revive_after > 0): its counters are state, saved with every checkpoint.
    revival = SilentUnitRevival(net, cfg.optim.revive_after, cfg.optim.revive_rate) if cfg.optim.revive_after > 0 else None
    if revival is not None and resume:
        revival.load_state_tensors(opt_t)

    def checkpoint(partial: ChunkStats | None = None) -> None:
        if not is_main:
            return
        t, m = trainer.state_tensors()
        if revival is not None:
            t = {**t, **revival.state_tensors()}
        prog.partial = None
        if partial is not None:
            prog.partial, unit = partial.to_dict()
            t = {**t, **{f"partial.unit_spikes.{l}": u for l, u in enumerate(unit)}}
        prog.unwritten, kept = lines.checkpoint_parts()
        save_checkpoint(out_dir / LAST, net, {**t, **kept}, m, prog.__dict__, cfg_dict)
        prog.unwritten = None

    n_train = len(source.train_labels)
    tc, oc = cfg.train, cfg.optim
    log(f"data: {source.name}; {n_train} training / {len(source.test_labels)} test samples; network " + net.describe()
        + ("; tests run in a background process" if background is not None else ""))
    stopped_early = False
    partial = None  # the running statistics of an epoch cut short, for its checkpoint
    while prog.epoch < tc.epochs:
        epoch = prog.epoch
        decay = oc.decay_per_epoch ** epoch
        lr, rho = oc.lr * decay, oc.rho * decay
        warmup = epoch == 0 and tc.warmup_ms > 0
        pres_ms = tc.warmup_ms if warmup else getattr(source, "train_ms", 0.0)
        order = np.random.default_rng([tc.seed, epoch]).permutation(n_train)
        total = None
        if prog.partial is not None:  # the statistics of this epoch before the interruption
            total = ChunkStats.from_dict(prog.partial, [opt_t[f"partial.unit_spikes.{l}"] for l in range(net.n_layers)])
            prog.partial = None
        bar = tqdm(total=n_train, initial=prog.next_sample, desc=f"epoch {epoch + 1}/{tc.epochs}",
                   disable=not (progress_bar and sys.stderr.isatty()), unit="sample", leave=False)
        t_epoch = time.perf_counter()
        progress_lines = ProgressLines(f"epoch {epoch + 1}/{tc.epochs}", n_train, log,
                                        tc.log_every_s if (progress_bar and bar.disable) else 0.0)
        # Chunks start at multiples of train.chunk (resume exactness); the next is drawn while this one trains.
        chunks = prefetched(range(prog.next_sample, n_train, tc.chunk),
                            lambda lo: source.train_batch(order[lo: lo + tc.chunk], epoch, pres_ms or None))
        try:
            for lo, batch in chunks:
                idx = order[lo: lo + tc.chunk]
                t0 = time.perf_counter()
                st = trainer.step_chunk(batch, source.train_labels[idx], lr, rho, warmup)
                if revival is not None:  # after the step: the Network's arrays hold the trained thresholds
                    revival.after_chunk(net, st.unit_spikes, len(idx), decay)
                prog.train_wall_s += time.perf_counter() - t0
                problem = _check_health(net, st, cfg, pres_ms or 300.0)
                if problem:
                    kept = (f"the last good checkpoint {out_dir / LAST} is kept" if (out_dir / LAST).exists()
                            else "no checkpoint had been written yet, so nothing is kept")
                    raise TrainingDiverged(f"training stopped at epoch {epoch + 1}: {problem}; {kept} - lower optim.lr "
                                           "or raise model.alpha and retry")
                total = st if total is None else total + st
                prog.next_sample += len(idx)
                prog.samples_seen += len(idx)
                bar.update(len(idx))
                progress_lines.after_chunk(prog.next_sample, len(idx), total)
                if background is not None:
                    background.poll()  # keep the worker busy with the next queued test
                if tc.max_minutes > 0 and dist.any(prog.train_wall_s > tc.max_minutes * 60):
                    stopped_early = True
                    break
        except KeyboardInterrupt:
            bar.close()
            checkpoint(total if prog.next_sample > 0 else None)
            log(f"interrupted; resumable checkpoint written: snnbp train --resume {out_dir}")
            raise
        finally:
            chunks.close()  # stop drawing (break on train.max_minutes, an error, Ctrl-C)
        bar.close()
        epoch_done = prog.next_sample >= n_train
        record = {"epoch": epoch + 1, "lr": lr, "rho": rho, "presentation_ms": pres_ms,
                  "epoch_wall_s": round(time.perf_counter() - t_epoch, 2), "train_wall_s": round(prog.train_wall_s, 2)}
        if total is not None:
            record.update(train_loss=total.loss / total.samples, train_accuracy=total.correct / total.samples,
                          train_samples=total.samples, train_synops_per_sample=total.synops / total.samples,
                          train_spikes_per_layer=(total.spikes / total.samples).round(2).tolist(),
                          health=epoch_health(net, total.samples, total.unit_spikes, total.zero_error))
        if revival is not None:  # threshold groups silent long enough to be lowered now (state: resume-exact)
            record["reviving_per_layer"] = revival.reviving().tolist()
        is_last = epoch + 1 >= tc.epochs or stopped_early
        due = (epoch + 1) % max(1, tc.eval_every) == 0 or epoch + 1 > tc.epochs - tc.eval_last or is_last
        if due and background is not None:
            background.submit(epoch + 1, snapshot(net))
            lines.add(record, epoch_done, awaiting=True)
        else:
            lines.add(record, epoch_done, ev=evaluate(net, source, progress_bar=progress_bar) if due else None)
        if epoch_done:
            prog.epoch += 1
            prog.next_sample = 0
        if is_main:  # the lines first, then the checkpoint that commits them (run_dir.py)
            lines.flush()
        # An epoch cut short by the budget keeps its running statistics in the checkpoint (as on Ctrl-C),
        # so a resume that lifts the budget records the whole epoch, not only its remainder.
        partial = total if not epoch_done and prog.next_sample > 0 else None
        checkpoint(partial)
        if stopped_early:
            log(f"stopped after train.max_minutes={tc.max_minutes} of training")
            break
    if background is not None and lines.waiting:
        log("training done; waiting for the background tests")
        background.drain()
        lines.flush()
        checkpoint(partial)
    if not is_main:
        return {}
    save_network(out_dir / FINAL, net, {"config": cfg_dict})
    summary = summarize(out_dir, cfg, source.name, prog, lines.last_eval, commit)
    write_json_atomic(out_dir / "summary.json", summary)
    return summary


def run_from_args(config_path: str | None, overrides: list[str], out: str | None, resume: str | None) -> dict:
    if resume:
        out_dir = Path(resume)
        return _train_any(check_resumable(out_dir, overrides), out_dir, resume=True)
    cfg = load_config(config_path, overrides)
    out_dir = Path(out) if out else Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return _train_any(cfg, out_dir)


def _train_any(cfg: Config, out_dir: Path, resume: bool = False) -> dict:
    """A spiking run (``train``) or, for model.kind = "ann", a conventional baseline (train/ann_trainer.py)."""
    if cfg.model.kind == "ann":
        from snnbp.train.ann_trainer import train_ann

        return train_ann(cfg, out_dir, resume=resume)
    return train(cfg, out_dir, resume=resume)
