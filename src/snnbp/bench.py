"""`snnbp bench`: the event engine against a surrogate-gradient BPTT baseline, side by side in one run.

Every measurement runs in its own fresh Python process (``python -m snnbp.bench --child SPEC``), so
its peak memory is its own: ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the kernel's high-water
mark of the resident set, which counts every allocation (numpy, numba, torch's allocator) and does
not depend on tracemalloc (which sees none of those). Each child prints one JSON record; the parent
collects them, prints a summary table with ratios computed from measurements of the *same* run and
writes records + table to ``--out``.

Protocol of one measurement (``measure``):
  1. imports, data, model/trainer creation;
  2. warm-up step on 2 samples at the measured presentation length (excludes numba compilation and
     cache loading, torch's first-call costs); ``rss_baseline_mb`` = ru_maxrss here;
  3. one untimed step on a full batch/chunk (allocator warm-up; it counts towards the peak);
  4. timed: input encoding (Poisson events or frames) + training/inference steps over n_samples;
     ``samples_per_s`` = n_samples / wall_s; ``peak_rss_mb`` = ru_maxrss at the end,
     ``rss_delta_mb`` = peak - baseline (what the workload itself added).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from snnbp.errors import ConfigError

PAPER_SIZES = [784, 800, 10]
RATE_HZ = 5000.0

# name -> spec (full run); "quick" overrides shrink batch/sample counts for smoke tests.
MEASUREMENTS: dict[str, dict] = {
    "bptt-50ms": dict(engine="bptt", presentation_ms=50.0, batch=100, n_samples=1000),
    "bptt-1s": dict(engine="bptt", presentation_ms=1000.0, batch=100, n_samples=200),
    "event-sgd-50ms": dict(engine="event-sgd", presentation_ms=50.0, batch=1, chunk=100, n_samples=5000),
    "event-sgd-1s": dict(engine="event-sgd", presentation_ms=1000.0, batch=1, chunk=100, n_samples=500),
    "event-adam100-50ms": dict(engine="event-adam", presentation_ms=50.0, batch=100, chunk=100, n_samples=5000),
    "event-adam100-1s": dict(engine="event-adam", presentation_ms=1000.0, batch=100, chunk=100, n_samples=500),
    "bptt-infer-1s": dict(engine="bptt-infer", presentation_ms=1000.0, batch=100, n_samples=300),
    "event-infer-1s": dict(engine="event-infer", presentation_ms=1000.0, batch=1000, n_samples=2000,
                           pretrain_samples=1000),
}
QUICK: dict[str, dict] = {
    "bptt-50ms": dict(batch=20, n_samples=20),
    "bptt-1s": dict(batch=10, n_samples=10),
    "event-sgd-50ms": dict(chunk=20, n_samples=40),
    "event-sgd-1s": dict(chunk=10, n_samples=10),
    "event-adam100-50ms": dict(batch=20, chunk=20, n_samples=40),
    "event-adam100-1s": dict(batch=10, chunk=10, n_samples=10),
    "bptt-infer-1s": dict(batch=10, n_samples=10),
    "event-infer-1s": dict(batch=20, n_samples=20, pretrain_samples=0),
}
RECORD_FIELDS = ("name", "engine", "samples_per_s", "peak_rss_mb", "presentation_ms", "batch", "T", "threads",
                 "n_samples", "wall_s")


# ------------------------------------------------------------------------------------------- helpers


def peak_rss_mb() -> float:
    """ru_maxrss of this process in MiB (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def _data(n_in: int, n: int, split: str, source: str, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(n, n_in) uint8 images and int64 labels: the first n real MNIST images if possible, else random.

    Random images are MNIST-like: ~19 % of pixels lit with uniform uint8 intensity.
    """
    if n_in == 784 and source in ("auto", "mnist"):
        from snnbp.data.mnist import load_mnist
        from snnbp.errors import SnnbpError

        try:
            x, y = load_mnist(split)
            take = np.arange(n) % len(x)
            return x.reshape(len(x), -1)[take].copy(), y[take].astype(np.int64), "mnist-" + split
        except SnnbpError:
            if source == "mnist":
                raise
    rng = np.random.default_rng(seed)
    x = (rng.integers(1, 256, (n, n_in)) * (rng.random((n, n_in)) < 0.19)).astype(np.uint8)
    x[:, 0] = np.maximum(x[:, 0], 1)  # never an all-black image
    return x, rng.integers(0, 10, n).astype(np.int64), "random"


def _set_threads(threads: int) -> None:
    import numba
    import torch

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


# --------------------------------------------------------------------------------- one measurement


def measure(spec: dict) -> dict:
    """Run one measurement in this process and return its record (see module docstring).

    spec keys: name, engine (bptt | bptt-infer | event-sgd | event-adam | event-infer), presentation_ms,
    batch, n_samples, threads; optional: sizes ([784, 800, 10]), chunk (event training: samples per
    step_chunk call), pretrain_samples (event-infer), data (auto | mnist | random), seed.
    """
    t_start = time.perf_counter()
    s = dict(spec)
    engine = s["engine"]
    threads = int(s.get("threads") or os.cpu_count() or 1)
    _set_threads(threads)
    sizes = list(s.get("sizes") or PAPER_SIZES)
    n = int(s["n_samples"])
    ms = float(s["presentation_ms"])
    batch = int(s["batch"])
    if n <= 0 or batch <= 0 or ms <= 0:
        raise ConfigError(f"bench: n_samples, batch and presentation_ms must be positive, got {n}, {batch}, {ms}")
    split = "test" if engine.endswith("infer") else "train"
    n_data = n + int(s.get("pretrain_samples", 0))
    images, labels, data_name = _data(sizes[0], max(n_data, batch), split, s.get("data", "auto"), int(s.get("seed", 0)))
    if engine in ("bptt", "bptt-infer"):
        rec, extra = _measure_bptt(engine, sizes, images, labels, ms, batch, n)
    elif engine in ("event-sgd", "event-adam", "event-infer"):
        rec, extra = _measure_event(engine, sizes, images, labels, ms, batch, n, int(s.get("chunk", batch)),
                                    int(s.get("pretrain_samples", 0)))
    else:
        raise ConfigError(f"bench: unknown engine '{engine}' (bptt, bptt-infer, event-sgd, event-adam, event-infer)")
    peak = peak_rss_mb()
    out = {
        "name": s.get("name", engine),
        "engine": engine,
        "samples_per_s": n / rec["wall_s"],
        "peak_rss_mb": round(peak, 1),
        "presentation_ms": ms,
        "batch": batch,
        "T": rec["T"],
        "threads": threads,
        "n_samples": n,
        "wall_s": round(rec["wall_s"], 4),
        "rss_baseline_mb": round(rec["baseline"], 1),
        "rss_delta_mb": round(peak - rec["baseline"], 1),
        "sizes": sizes,
        "data": data_name,
        "child_wall_s": round(time.perf_counter() - t_start, 2),
    }
    out.update(extra)
    return out


def _measure_bptt(engine, sizes, images, labels, ms, batch, n):
    import torch

    from snnbp.baselines.bptt import BPTTNet, make_optimizer, poisson_frames, predict, train_step

    dt_ms = 1.0
    T = int(round(ms / dt_ms))
    net = BPTTNet(sizes, tau_ms=20.0, dt_ms=dt_ms)
    opt = make_optimizer(net, lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    lab = torch.from_numpy(labels)
    infer = engine == "bptt-infer"

    def step(lo, hi):
        frames = poisson_frames(images[lo:hi], T, dt_ms, RATE_HZ, gen)
        if infer:
            return int((predict(net, frames) == lab[lo:hi]).sum())
        return train_step(net, opt, frames, lab[lo:hi])

    step(0, 2)  # warm-up on 2 samples
    baseline = peak_rss_mb()
    step(0, batch)  # untimed full batch
    results = []
    t0 = time.perf_counter()
    for lo in range(0, n, batch):
        results.append(step(lo, min(lo + batch, n)))
    wall = time.perf_counter() - t0
    extra = {"optimizer": "none" if infer else "adam lr=1e-3", "loss": "" if infer else "cross-entropy on output spike counts",
             "surrogate": "fast-sigmoid slope 25", "dt_ms": dt_ms, "torch_threads": torch.get_num_threads()}
    if infer:
        extra["accuracy_untrained"] = sum(results) / n
    else:
        extra.update(loss_first=results[0], loss_last=results[-1])
    return {"wall_s": wall, "T": T, "baseline": baseline}, extra


def _measure_event(engine, sizes, images, labels, ms, batch, n, chunk, pretrain):
    import numba

    from snnbp.data.poisson import poisson_events, sample_seeds
    from snnbp.events.engine import run_events
    from snnbp.model import Network
    from snnbp.train.config import OptimConfig
    from snnbp.train.trainer import EventTrainer

    kappas = [-0.4] * (len(sizes) - 2) + [-1.0]
    net = Network.create(sizes[0], sizes[1:], kappas, alpha=[3.0], floor_alpha=0.25, seed=0)
    if engine == "event-adam":
        cfg = OptimConfig(name="adam", batch_size=batch, lr=1e-3, lr_th_ratio=1.0)
    else:
        cfg = OptimConfig(name="sgd", batch_size=1, lr=0.004, lam=0.01, rho=1e-4)
    lr, rho = cfg.lr, cfg.rho
    infer = engine == "event-infer"
    tr = EventTrainer(net, cfg)
    epoch = [0]

    def events(lo, hi, dur):
        idx = np.arange(lo, hi)
        return poisson_events(images[lo:hi], dur, RATE_HZ, sample_seeds(0, epoch[0], idx))

    if infer and pretrain:  # realistic activity: a briefly trained net, not a fresh one
        for lo in range(0, pretrain, 100):
            hi = min(lo + 100, pretrain)
            tr.step_chunk(events(lo, hi, 50.0), labels[lo:hi], lr, rho)
        images, labels = images[pretrain:], labels[pretrain:]
    epoch[0] = 1

    def step(lo, hi):
        b = events(lo, hi, ms)
        if infer:
            res = run_events(net, b)
            return int((res.predictions() == labels[lo:hi]).sum()), int(res.synops.sum())
        st = tr.step_chunk(b, labels[lo:hi], lr, rho)
        return st.loss, st.correct, st.synops

    per_call = batch if infer else chunk
    step(0, 2)  # warm-up: numba compilation / cache loading
    baseline = peak_rss_mb()
    step(0, min(per_call, n))  # untimed full chunk
    out = []
    t0 = time.perf_counter()
    for lo in range(0, n, per_call):
        out.append(step(lo, min(lo + per_call, n)))
    wall = time.perf_counter() - t0
    extra = {"numba_threads": numba.get_num_threads()}
    if infer:
        extra.update(accuracy=sum(o[0] for o in out) / n, synops_per_sample=sum(o[1] for o in out) / n,
                     pretrain_samples=pretrain, optimizer="none")
    else:
        extra.update(chunk=chunk, optimizer=f"{cfg.name} lr={cfg.lr} batch_size={cfg.batch_size}",
                     loss_mean=sum(o[0] for o in out) / n, train_accuracy=sum(o[1] for o in out) / n,
                     synops_per_sample=sum(o[2] for o in out) / n)
    return {"wall_s": wall, "T": None, "baseline": baseline}, extra


# ----------------------------------------------------------------------------------- parent / CLI


def run_child(spec: dict, timeout_s: float | None = None) -> dict:
    """Run ``measure(spec)`` in a fresh interpreter; returns its record or {'name', 'error'}."""
    env = dict(os.environ)
    threads = str(spec["threads"])
    env.update(NUMBA_NUM_THREADS=threads, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    cmd = [sys.executable, "-m", "snnbp.bench", "--child", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"name": spec["name"], "engine": spec["engine"], "error": f"timed out after {timeout_s} s"}
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"name": spec["name"], "engine": spec["engine"], "error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


def build_specs(which: list[str] | None, quick: bool, threads: int, data: str) -> list[dict]:
    names = which or list(MEASUREMENTS)
    unknown = [w for w in names if w not in MEASUREMENTS]
    if unknown:
        raise ConfigError(f"bench: unknown measurement(s) {', '.join(unknown)}; choose from {', '.join(MEASUREMENTS)}")
    specs = []
    for name in names:
        s = {"name": name, **MEASUREMENTS[name], "threads": threads, "data": data}
        if quick:
            s.update(QUICK[name])
        specs.append(s)
    return specs


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def summary_table(records: list[dict]) -> str:
    """Markdown table of all records, then ratios computed only from these records."""
    by = {r["name"]: r for r in records if "error" not in r}
    lines = ["| measurement | engine | presentation | batch | T | threads | samples | samples/s | peak RSS MiB | RSS delta MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['engine']} | FAILED: {r['error'][:80]} | | | | | | | |")
            continue
        lines.append(f"| {r['name']} | {r['engine']} | {r['presentation_ms']:g} ms | {r['batch']} | {r['T'] if r['T'] is not None else 'event'} "
                     f"| {r['threads']} | {r['n_samples']} | {r['samples_per_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['rss_delta_mb']:.0f} |")

    def sps(name):
        return by.get(name, {}).get("samples_per_s")

    ratios = [
        ("speed: event SGD bs1 / BPTT, 50 ms", _ratio(sps("event-sgd-50ms"), sps("bptt-50ms"))),
        ("speed: event Adam bs100 / BPTT, 50 ms", _ratio(sps("event-adam100-50ms"), sps("bptt-50ms"))),
        ("speed: event SGD bs1 / BPTT, 1 s", _ratio(sps("event-sgd-1s"), sps("bptt-1s"))),
        ("speed: event Adam bs100 / BPTT, 1 s", _ratio(sps("event-adam100-1s"), sps("bptt-1s"))),
        ("speed: event inference / BPTT inference, 1 s", _ratio(sps("event-infer-1s"), sps("bptt-infer-1s"))),
    ]
    for eng, a, b in (("BPTT", "bptt-1s", "bptt-50ms"), ("event SGD", "event-sgd-1s", "event-sgd-50ms"),
                      ("event Adam", "event-adam100-1s", "event-adam100-50ms")):
        if a in by and b in by:
            ra, rb = by[a], by[b]
            same_batch = "" if ra["batch"] == rb["batch"] else f" (batch {rb['batch']} vs {ra['batch']})"
            ratios.append((f"memory: {eng} peak RSS 1 s / 50 ms{same_batch}",
                           f"{_ratio(ra['peak_rss_mb'], rb['peak_rss_mb'])} ({rb['peak_rss_mb']:.0f} -> {ra['peak_rss_mb']:.0f} MiB;"
                           f" workload delta {rb['rss_delta_mb']:.0f} -> {ra['rss_delta_mb']:.0f} MiB)"))
    lines += ["", "| ratio (same run) | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in ratios]
    return "\n".join(lines)


def _default_out() -> Path:
    return Path("benchmarks") / f"results-{_dt.date.today().isoformat()}.md"


def write_results(path: Path, records: list[dict], table: str, header: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        body = "".join(json.dumps(r) + "\n" for r in records) + json.dumps({"summary_markdown": table, "header": header}) + "\n"
    else:
        body = (f"# snnbp bench\n\n{header}\n\n{table}\n\n## Records (one JSON object per measurement)\n\n```jsonl\n"
                + "".join(json.dumps(r) + "\n" for r in records) + "```\n")
    path.write_text(body)


def run_bench(args: argparse.Namespace) -> int:
    threads = int(args.threads or os.cpu_count() or 1)
    specs = build_specs(args.which, args.quick, threads, args.data)
    out = Path(args.out) if args.out else _default_out()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"{_dt.datetime.now().isoformat(timespec='seconds')}, {os.cpu_count()} CPUs, threads={threads}, "
              f"load average at start {load:.2f}, python {sys.version.split()[0]}"
              + (", --quick" if args.quick else ""))
    if load > 0.5 and threads > 1:
        header += (f"; WARNING: the machine was busy (load {load:.2f}) and {threads} threads were requested: "
                   "with oversubscribed cores, multi-threaded timings (torch/OpenMP, numba prange) can be several "
                   "times too slow; rerun on an idle machine or with --threads 1")
    print(f"# {header}", flush=True)
    records = []
    for spec in specs:
        load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        rec = run_child(spec, args.timeout)
        rec["load_avg_1m_before"] = load_before
        records.append(rec)
        print(json.dumps(rec), flush=True)
    table = summary_table(records)
    print()
    print(table)
    write_results(out, records, table, header)
    print(f"\nwrote {out}")
    return 1 if any("error" in r for r in records) else 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="small batches and sample counts (smoke test, ~1 min)")
    p.add_argument("--out", default=None, help="results file (.md or .jsonl; default benchmarks/results-DATE.md)")
    p.add_argument("--which", nargs="+", default=None, metavar="NAME",
                   help=f"measurements to run (default all): {', '.join(MEASUREMENTS)}")
    p.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: all cores)")
    p.add_argument("--data", choices=("auto", "mnist", "random"), default="auto",
                   help="auto: cached MNIST if present, else random MNIST-like images")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per measurement")


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="time the event engine against a surrogate-gradient BPTT baseline")
    add_arguments(p)
    p.set_defaults(func=run_bench)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(measure(json.loads(argv[1]))), flush=True)
        return 0
    parser = argparse.ArgumentParser(prog="python -m snnbp.bench", description="see `snnbp bench`")
    add_arguments(parser)
    return run_bench(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
