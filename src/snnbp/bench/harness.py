"""`snnbp bench`: the engines against their baselines, side by side in one run, ratios from that run.

Every measurement runs in its own fresh Python process (``python -m snnbp.bench --child SPEC``), so
its peak memory is its own: ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the kernel's high-water
mark of the resident set, which counts every allocation (numpy, numba, torch's allocator) and does
not depend on tracemalloc (which sees none of those); on CUDA also torch.cuda.max_memory_allocated.
Each child prints one JSON record; the parent collects them, prints a summary table with ratios
computed from measurements of the *same* run and writes records + table to ``--out``.

    bench_specs.py      what is measured: measurements, groups (mnist, nmnist, dense, conv), ratios
    bench_workloads.py  how one measurement runs (the protocol is documented there)
    bench.py            this harness: child processes, the table, the results file, the CLI
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from snnbp.bench.specs import (DEFAULT_GROUPS, GROUPS, MEASUREMENTS, PAPER_SIZES, QUICK, RATE_HZ, RATIOS,  # noqa: F401
                               build_specs, expand_which)
from snnbp.bench.workloads import measure, peak_rss_mb  # noqa: F401

RECORD_FIELDS = ("name", "engine", "samples_per_s", "peak_rss_mb", "presentation_ms", "batch", "T", "threads",
                 "n_samples", "wall_s", "device", "data")


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


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def _memory(r: dict) -> tuple[float, float, str]:
    """(peak, workload delta, what) of a record: GPU allocator peak on CUDA, else peak RSS (MiB)."""
    if r.get("cuda_peak_mb") is not None:
        return r["cuda_peak_mb"], r.get("cuda_delta_mb", 0.0), "GPU peak allocated"
    return r["peak_rss_mb"], r["rss_delta_mb"], "peak RSS"


def _presentation(r: dict) -> str:
    return r.get("presentation") or f"{r['presentation_ms']:g} ms"


def _sps(r: dict) -> str:
    runs = r.get("samples_per_s_runs")
    return f"{r['samples_per_s']:.1f}" + (f" [{min(runs):.1f}-{max(runs):.1f}]" if runs and len(runs) > 1 else "")


def summary_table(records: list[dict]) -> str:
    """Markdown table of all records, then ratios computed only from these records (per group present)."""
    ok = {r["name"]: r for r in records if "error" not in r and "skipped" not in r}
    lines = ["| measurement | engine | device | presentation | batch | T | threads | samples | samples/s | peak RSS MiB "
             "| RSS delta MiB | GPU peak MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if "error" in r or "skipped" in r:
            what = f"FAILED: {r['error'][:80]}" if "error" in r else f"SKIPPED: {r['skipped'][:80]}"
            lines.append(f"| {r['name']} | {r['engine']} | | {what} | | | | | | | | |")
            continue
        gpu = f"{r['cuda_peak_mb']:.0f}" if r.get("cuda_peak_mb") is not None else ""
        lines.append(f"| {r['name']} | {r['engine']} | {r.get('device', 'cpu')} | {_presentation(r)} | {r['batch']} "
                     f"| {r['T'] if r['T'] is not None else 'event'} | {r['threads']} | {r['n_samples']} "
                     f"| {_sps(r)} | {r['peak_rss_mb']:.0f} | {r['rss_delta_mb']:.0f} | {gpu} |")
    names = {r["name"] for r in records}
    ratios = []
    for group, rows in RATIOS.items():
        if not names & set(GROUPS[group]):
            continue
        for label, kind, a, b in rows:
            ra, rb = ok.get(a), ok.get(b)
            if kind == "speed":
                ratios.append((label, _ratio(ra and ra["samples_per_s"], rb and rb["samples_per_s"])))
                continue
            if not (ra and rb):
                ratios.append((label, "n/a"))
                continue
            (pa, da, what), (pb, db, _) = _memory(ra), _memory(rb)
            if ra["batch"] != rb["batch"]:
                label += f" (batch {rb['batch']} vs {ra['batch']})"
            ratios.append((label, f"{_ratio(pa, pb)} ({what} {pb:.0f} -> {pa:.0f} MiB; workload delta {db:.0f} -> {da:.0f} MiB)"))
    lines += ["", "| ratio (same run) | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in ratios]
    return "\n".join(lines)


def aggregate(runs: list[dict]) -> dict:
    """One record from repeated runs of a measurement: median samples/s; memory fields (peak, baseline,
    delta, GPU) from the run with the smallest peak RSS (a run that compiled numba code or filled a
    cache has a higher ru_maxrss that says nothing about the workload; nothing makes it lower); the
    other fields from the median run; every run's samples/s and peak RSS listed beside them.

    A failed or skipped run makes the whole measurement failed or skipped (its record is returned).
    """
    bad = [r for r in runs if "error" in r] or [r for r in runs if "skipped" in r]
    if bad or len(runs) == 1:
        return dict((bad or runs)[0])
    sps = [r["samples_per_s"] for r in runs]
    out = dict(sorted(runs, key=lambda r: r["samples_per_s"])[(len(runs) - 1) // 2])  # the (lower) median run
    out["samples_per_s"] = statistics.median(sps)
    out["samples_per_s_runs"] = sps
    out["repeats"] = len(runs)
    out.pop("repetition", None)
    low = min(runs, key=lambda r: r["peak_rss_mb"])
    for key in ("peak_rss_mb", "rss_baseline_mb", "rss_delta_mb", "cuda_peak_mb", "cuda_baseline_mb", "cuda_delta_mb"):
        if key in low:
            out[key] = low[key]
    out["peak_rss_mb_runs"] = [r["peak_rss_mb"] for r in runs]
    out["load_avg_1m_runs"] = [r.get("load_avg_1m_before") for r in runs]
    return out


def _default_out(which: list[str] | None) -> Path:
    date = _dt.date.today().isoformat()
    if which and all(w in GROUPS for w in which):
        return Path("benchmarks") / f"results-{date}-{'-'.join(which)}.md"
    return Path("benchmarks") / f"results-{date}.md"


def write_results(path: Path, records: list[dict], table: str, header: str, runs: list[dict] | None = None) -> None:
    """records: one per measurement; runs (with --repeat): every run, written after them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    runs = runs if runs and len(runs) > len(records) else []
    if path.suffix == ".jsonl":
        body = ("".join(json.dumps(r) + "\n" for r in records + runs)
                + json.dumps({"summary_markdown": table, "header": header}) + "\n")
    else:
        body = (f"# snnbp bench\n\n{header}\n\n{table}\n\n## Records (one JSON object per measurement)\n\n```jsonl\n"
                + "".join(json.dumps(r) + "\n" for r in records) + "```\n")
        if runs:
            body += ("\n## Every run (--repeat)\n\n```jsonl\n" + "".join(json.dumps(r) + "\n" for r in runs) + "```\n")
    path.write_text(body)


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def run_bench(args: argparse.Namespace) -> int:
    threads = int(args.threads or os.cpu_count() or 1)
    device = getattr(args, "device", "cpu")
    specs = build_specs(args.which, args.quick, threads, args.data, device)
    out = Path(args.out) if args.out else _default_out(args.which)
    load = _load()
    header = (f"{_dt.datetime.now().isoformat(timespec='seconds')}, {os.cpu_count()} CPUs, threads={threads}, "
              f"load average at start {load:.2f}, python {sys.version.split()[0]}, which={' '.join(args.which or DEFAULT_GROUPS)}"
              + (f", device={device} (dense engines)" if device != "cpu" else "") + (", --quick" if args.quick else ""))
    if load > 0.5 and threads > 1:
        header += (f"; WARNING: the machine was busy (load {load:.2f}) and {threads} threads were requested: "
                   "with oversubscribed cores, multi-threaded timings (torch/OpenMP, numba prange) can be several "
                   "times too slow; rerun on an idle machine or with --threads 1")
    print(f"# {header}", flush=True)
    repeat = max(1, int(getattr(args, "repeat", 1) or 1))
    runs = []
    for rep in range(repeat):  # round robin: each repetition measures every spec once, in order
        for spec in specs:
            load_before = _load()
            rec = run_child(spec, args.timeout)
            rec["load_avg_1m_before"] = load_before
            rec["load_avg_1m_after"] = _load()
            if repeat > 1:
                rec["repetition"] = rep + 1
            runs.append(rec)
            print(json.dumps(rec), flush=True)
    records = [aggregate([r for r in runs if r["name"] == spec["name"]]) for spec in specs]
    loads = ([r["load_avg_1m_before"] for r in runs] + [runs[-1]["load_avg_1m_after"]]) if runs else [load]
    header += f"; load average (1 min) during the run: {min(loads):.2f} to {max(loads):.2f}"
    if repeat > 1:
        header += (f"; --repeat {repeat}: every measurement ran {repeat} times, round robin, each in a fresh process; "
                   "samples/s is the median of the runs ([min-max] beside it); memory is that of the run with the "
                   "smallest peak RSS")
    table = summary_table(records)
    print()
    print(table)
    write_results(out, records, table, header, runs)
    print(f"\nwrote {out}")
    return 1 if any("error" in r for r in records) else 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="small batches and sample counts (smoke test, ~2 min)")
    p.add_argument("--out", default=None,
                   help="results file (.md or .jsonl; default benchmarks/results-DATE[-GROUPS].md)")
    p.add_argument("--which", nargs="+", default=None, metavar="NAME",
                   help=f"groups ({', '.join(GROUPS)}; default: {' '.join(DEFAULT_GROUPS)}) or measurement names: "
                        f"{', '.join(MEASUREMENTS)}")
    p.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: all cores)")
    p.add_argument("--device", default="cpu", help="device of the dense-engine measurements (dense, conv): cpu | cuda")
    p.add_argument("--data", choices=("auto", "mnist", "random"), default="auto",
                   help="auto: cached MNIST if present (N-MNIST: synthetic recordings of MNIST digits), "
                        "else random images (N-MNIST: of random strokes)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run every measurement N times (round robin, fresh processes); report the median samples/s")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per measurement")


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="time the engines against their BPTT baselines (ratios from one run)")
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
