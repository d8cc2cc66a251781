#!/usr/bin/env python
"""Run every fault probe of snnbp as a user would, and regenerate results/faults.md.

Each probe runs the real command line (``python -m snnbp ...``) in a child process on tiny data made
with the project's own writers (a fake 60-digit MNIST, a few N-MNIST recordings), and states what a
user sees: exit code, the error line, what was left on disk. A probe passes when a mistake gets one
clear error (exit 2, one ``snnbp: error:`` line, no traceback) and nothing is written or overwritten;
the kill probes pass when a run killed with SIGKILL at that point and then resumed records each epoch
once and ends with the metrics and network of a run never stopped.

    python scripts/faults.py                 # all probes, writes results/faults.md (about 2-4 minutes)
    python scripts/faults.py --only kill     # probes whose name contains "kill"; prints, writes nothing

Not part of the default tests (it is minutes, and its own record); each probe also has a unit test
(tests/test_run_faults.py, tests/test_nmnist_robustness.py, tests/test_mnist_integrity.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the fake-MNIST writer the tests use (project writers only)

TINY = ["model.hidden=[30]", "model.alpha=[2.0]", "train.epochs=6", "train.chunk=20", "train.eval_every=1",
        "data.test_ms=200.0", "optim.lr=0.004", "optim.rho=1e-3", "optim.decay_per_epoch=0.9"]
VOLATILE = {"epoch_wall_s", "train_wall_s", "eval_wall_s"}


@dataclass
class Outcome:
    probe: str
    outcome: str
    ok: bool


class Lab:
    """A scratch directory with tiny data, and a runner of snnbp commands in child processes."""

    def __init__(self, root: Path):
        from helpers_fake_mnist import write_fake_mnist

        self.root = root
        self.data = write_fake_mnist(root / "data", n_train=300)  # training, not startup, is most of a run
        self.env = {**os.environ, "SNNBP_DATA": str(self.data), "PYTHONPATH": str(REPO / "src")}
        self.reference_s = 10.0  # lifetime of the uninterrupted reference run's process (reference_run)

    def tiny(self, *extra: str) -> list[str]:
        out = []
        for kv in [*TINY, *extra]:
            out += ["--set", kv]
        return out

    def snnbp(self, *args: str, timeout: float = 120, prelude: str = "") -> subprocess.CompletedProcess:
        """``python -m snnbp ARGS``; ``prelude`` is Python run first in the child (fault injection)."""
        code = f"{prelude}\nimport sys\nfrom snnbp.cli import main\nsys.exit(main({list(args)!r}))"
        try:
            return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=self.env,
                                  cwd=self.root, timeout=timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, -9, "", f"(no answer within {timeout:.0f} s: killed)")


def one_clear_error(p: subprocess.CompletedProcess) -> tuple[bool, str]:
    """Exit 2 with exactly one 'snnbp: error:' line and no traceback -> (True, that line)."""
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("snnbp: error:")]
    ok = p.returncode == 2 and len(errors) == 1 and "Traceback" not in p.stderr
    shown = errors[0] if errors else (lines[-1] if lines else f"(exit {p.returncode}, no message)")
    return ok, shown


def _short(text: str, lab: Lab) -> str:
    text = text.replace(str(lab.root), "<tmp>").replace("|", "\\|")
    return text if len(text) < 260 else text[:257] + "..."


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def same_network(a: Path, b: Path) -> bool:
    import numpy as np
    from snnbp.serialization import load_tensors

    ta, _ = load_tensors(a / "model.safetensors")
    tb, _ = load_tensors(b / "model.safetensors")
    return ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)


# ---------------------------------------------------------------------------------------- the probes

def bad_value_probes(lab: Lab) -> list[Outcome]:
    out = []
    for kv in ["data.rate_hz=nan", "data.rate_hz=-5", "data.train_ms=-20", "train.epochs=0", "train.epochs=-3",
               "data.train_limit=-5", "optim.lr=inf", "model.alpha=[nan]"]:
        run = lab.root / f"bad-{len(out)}"
        p = lab.snnbp("train", "--out", str(run), *lab.tiny(kv), timeout=60)
        ok, line = one_clear_error(p)
        ok = ok and not run.exists()
        out.append(Outcome(f"`snnbp train T --set {kv}`", _short(line, lab) + ("" if not run.exists() else
                                                                                 "; run directory left"), ok))
    return out


def divergence_probe(lab: Lab) -> list[Outcome]:
    run = lab.root / "diverges"
    p = lab.snnbp("train", "--out", str(run), *lab.tiny("train.max_rate_hz=1e-6"))
    ok, line = one_clear_error(p)
    ok = ok and "no checkpoint had been written" in line and not run.exists()
    return [Outcome("a run that diverges in its first chunk (`--set train.max_rate_hz=1e-6`)", _short(line, lab), ok)]


def cli_mistake_probes(lab: Lab) -> list[Outcome]:
    out = []
    target = lab.root / "notes.txt"
    target.write_text("mine")
    p = lab.snnbp("train", "--out", str(target), *lab.tiny())
    ok, line = one_clear_error(p)
    out.append(Outcome("`--out` naming an existing file", _short(line, lab), ok and target.read_text() == "mine"))

    cfg = lab.root / "latin1.toml"
    cfg.write_bytes(b'name = "caf\xe9"\n')
    p = lab.snnbp("train", str(cfg), "--out", str(lab.root / "latin1-run"))
    ok, line = one_clear_error(p)
    out.append(Outcome("a config file that is not UTF-8", _short(line, lab), ok and not (lab.root / "latin1-run").exists()))

    run = lab.root / "for-eval"
    lab.snnbp("train", "--out", str(run), *lab.tiny("train.epochs=1"))
    p = lab.snnbp("eval", str(run), "--set", "model.alpha=[9.0]")
    ok, line = one_clear_error(p)
    out.append(Outcome("`snnbp eval RUN --set model.alpha=[9.0]`", _short(line, lab), ok))

    torn = lab.root / "torn"
    shutil.copytree(run, torn)
    with open(torn / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "lr": 0.00')
    p = lab.snnbp("report", str(torn))
    last = (p.stderr.strip().splitlines() or ["(no message)"])[-1]
    out.append(Outcome("`snnbp report` on a metrics.jsonl with a cut-off last line",
                       f"exit {p.returncode}: {_short(last, lab)}", p.returncode == 0 and "Traceback" not in p.stderr))

    damaged = lab.root / "damaged"
    damaged.mkdir()
    (damaged / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')
    p = lab.snnbp("report", str(damaged))
    ok, line = one_clear_error(p)
    out.append(Outcome("`snnbp report` on a metrics.jsonl damaged in the middle", _short(line, lab), ok))
    return out


def _kill_prelude(target: str, n: int) -> str:
    """Python for the child: SIGKILL itself on the n-th call of ``target`` (module.attr), before it runs."""
    module, attr = target.rsplit(".", 1)
    return textwrap.dedent(f"""
        import os, signal, importlib
        _m = importlib.import_module({module!r}); _real = getattr(_m, {attr!r}); _calls = [0]
        def _dying(*a, **k):
            _calls[0] += 1
            if _calls[0] == {n}:
                os.kill(os.getpid(), signal.SIGKILL)
            return _real(*a, **k)
        setattr(_m, {attr!r}, _dying)
    """)


def reference_run(lab: Lab) -> Path:
    """The uninterrupted run every killed run must end equal to; its process lifetime is kept in lab."""
    run = lab.root / "reference"
    if not (run / "summary.json").is_file():
        t0 = time.perf_counter()
        p = lab.snnbp("train", "--out", str(run), *lab.tiny())
        lab.reference_s = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(f"the uninterrupted reference run failed:\n{p.stderr}")
    return run


def resumed_equals_reference(lab: Lab, run: Path) -> tuple[bool, str]:
    for _ in range(5):
        if (run / "summary.json").is_file():
            break
        lab.snnbp("train", "--resume", str(run))
    ref = reference_run(lab)
    if not (run / "summary.json").is_file():
        return False, "did not finish after 5 resumes"
    epochs = [r["epoch"] for r in metrics(run)]
    ok = metrics(run) == metrics(ref) and same_network(run, ref)
    return ok, f"epochs recorded {epochs}; {'equal to' if ok else 'DIFFERENT from'} the run never stopped"


def kill_probes(lab: Lab) -> list[Outcome]:
    out = []
    # SIGKILL after epoch 2's metrics line, before its checkpoint.
    run = lab.root / "kill-after-line"
    lab.snnbp("train", "--out", str(run), *lab.tiny(), prelude=_kill_prelude("snnbp.train.loop.save_checkpoint", 2))
    before = [r["epoch"] for r in metrics(run)]
    ok, text = resumed_equals_reference(lab, run)
    out.append(Outcome("kill -9 between epoch 2's metrics line and its checkpoint, then `--resume`",
                       f"left epochs {before}; resumed: {text}", ok))

    # SIGKILL inside the first checkpoint write (its fsync): the temporary file is written, not yet renamed.
    run = lab.root / "kill-in-first-checkpoint"
    lab.snnbp("train", "--out", str(run), *lab.tiny(), prelude=_kill_prelude("os.fsync", 1))
    left = sorted(p.name for p in run.iterdir())
    snapshot = {p.name: p.read_bytes() for p in run.iterdir()}
    p = lab.snnbp("train", "--out", str(run), *lab.tiny())
    ok, line = one_clear_error(p)
    untouched = {q.name: q.read_bytes() for q in run.iterdir()} == snapshot
    out.append(Outcome("kill -9 during the first checkpoint write, then the same `--out` again",
                       f"left {left}; second run: {_short(line, lab)}", ok and untouched))

    # SIGKILL at random moments, resumed each time, up to five kills (at least two), then it runs to the end. Each kill comes at a
    # random moment within one epoch after the process committed its own first checkpoint, so it lands in
    # training (a kill during startup would only test the fresh-start path).
    rng = random.Random(12)
    reference_run(lab)
    run = lab.root / "kill-random"
    kills, resumes, args = [], 0, ["train", "--out", str(run), *lab.tiny()]
    epoch_s = 0.8 * lab.reference_s / 6  # training time of one tiny epoch (startup is the other ~20 %)
    for attempt in range(15):
        if (run / "summary.json").is_file():
            break
        ckpt = run / "last.safetensors"
        before = ckpt.stat().st_mtime_ns if ckpt.is_file() else None
        child = subprocess.Popen([sys.executable, "-m", "snnbp", *args], env=lab.env, cwd=lab.root,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.perf_counter()
        if len(kills) < 5:
            # Wait until this process has committed a checkpoint of its own (it is past startup and training),
            # then kill it at a random moment of the next epoch: mid-epoch, mid-evaluation or mid-write.
            while child.poll() is None and (not ckpt.is_file() or ckpt.stat().st_mtime_ns == before):
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, epoch_s))
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                kills.append(round(time.perf_counter() - t0, 2))
        child.wait()
        if ckpt.is_file():
            args = ["train", "--resume", str(run)]
            resumes += 1
        else:  # killed before its first checkpoint: nothing to resume; the user deletes the directory and starts again
            shutil.rmtree(run, ignore_errors=True)
            args = ["train", "--out", str(run), *lab.tiny()]
    ok, text = resumed_equals_reference(lab, run)
    ok = ok and len(kills) >= 2 and resumes >= 2
    out.append(Outcome(f"kill -9 at random moments ({len(kills)} kills at {kills} s of a {lab.reference_s:.1f} s run), "
                       "each followed by `--resume`", f"{resumes} resumes from a checkpoint; {text}", ok))
    return out


def _maxrss_prelude() -> str:
    """Python for the child: print its peak resident memory (MiB) to stderr when it exits."""
    return ("import atexit, resource, sys\n"
            "atexit.register(lambda: print(f'peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB',"
            " file=sys.stderr))")


def _index_state(root: Path) -> bytes | None:
    index = root / "nmnist" / "index.json"
    return index.read_bytes() if index.is_file() else None


def nmnist_probes(lab: Lab) -> list[Outcome]:
    """N-MNIST readers: absurd recordings, damaged zips, odd entries, empty splits (tests/test_nmnist_robustness.py
    builds the same inputs with the project's writers)."""
    import test_nmnist_robustness as t

    out = []
    base = lab.root / "nmnist"
    # A good earlier record that every failing `data nmnist` must leave byte for byte.
    t.make_tree(base / "good")
    root = base / "root"
    lab.snnbp("data", "nmnist", "--from", str(base / "good"), "--root", str(root))
    good = _index_state(root)

    def data_nmnist(source: Path, *extra: str, expect_ok: bool = False) -> tuple[bool, str]:
        p = lab.snnbp("data", "nmnist", "--from", str(source), "--root", str(root), *extra)
        if expect_ok:
            last = (p.stdout.strip().splitlines() or ["(no output)"])[-1]
            return p.returncode == 0 and "Traceback" not in p.stderr, f"exit {p.returncode}: {_short(last, lab)}"
        ok, line = one_clear_error(p)
        named = [l for l in (p.stdout + p.stderr).splitlines() if l.startswith("bad:")]
        shown = (_short(named[0], lab) + " / " if named else "") + _short(line, lab)
        return ok and _index_state(root) == good, shown

    # 270,000 overflow markers, then events: lasts 2,212 s.
    long_tree = base / "long"
    t.make_tree(long_tree)
    (long_tree / "Train" / "3" / "00031.bin").write_bytes(t.marker_stream(270_000))
    p = lab.snnbp("show", str(long_tree / "Train" / "3" / "00031.bin"), "--out", str(base / "show"), timeout=60,
                  prelude=_maxrss_prelude())
    ok, line = one_clear_error(p)
    peak = [l for l in p.stderr.splitlines() if l.startswith("peak memory")]
    out.append(Outcome("`snnbp show` on a recording of 270,000 overflow markers then events (2,212 s)",
                       _short(line, lab) + (f" ({peak[0]})" if peak else ""), ok and not (base / "show").exists()))
    ok, text = data_nmnist(long_tree)
    out.append(Outcome("`snnbp data nmnist --from` a folder holding that recording", text, ok))
    ok, text = data_nmnist(long_tree, "--skip-bad", expect_ok=True)
    out.append(Outcome("... the same with `--skip-bad`", text, ok))
    good = _index_state(root)  # --skip-bad recorded the folder: the new state later probes must keep

    # Damaged zip members.
    for fault, method in (("crc", t.zipfile.ZIP_STORED), ("deflate", t.zipfile.ZIP_DEFLATED)):
        zdir = base / f"zip-{fault}"
        zdir.mkdir()
        t.zip_split(base / "good", zdir / "Train.zip", "Train", method)
        t.zip_split(base / "good", zdir / "Test.zip", "Test", method)
        t.damage_member(zdir / "Train.zip", "Train/4/00041.bin", fault)
        ok, text = data_nmnist(zdir)
        out.append(Outcome(f"`snnbp data nmnist --from` a Train.zip with a {'bad CRC' if fault == 'crc' else 'corrupt deflate stream'}",
                           text, ok))
    ok, text = data_nmnist(base / "zip-crc", "--skip-bad", expect_ok=True)
    out.append(Outcome("... the bad-CRC zip with `--skip-bad`", text, ok))
    good = _index_state(root)

    # A folder named x.bin; a .bin symlink to itself.
    for kind in ("folder", "loop"):
        tree = base / f"odd-{kind}"
        t.make_tree(tree)
        if kind == "folder":
            (tree / "Train" / "2" / "x.bin").mkdir()
        else:
            os.symlink("loop.bin", tree / "Train" / "5" / "loop.bin")
        ok, text = data_nmnist(tree)
        out.append(Outcome(f"a {'directory named `x.bin`' if kind == 'folder' else '`.bin` symlink to itself'} in a class folder",
                           text, ok))

    # No recordings: an empty Train/, class folders that are symlink loops.
    for name, build in (("an empty `Train/`", t._empty_train), ("`Train/` whose class folders are symlink loops",
                                                                  t._looping_class_folders)):
        tree = base / f"empty-{len(out)}"
        t.make_tree(tree, splits=("Test",))
        build(tree)
        ok, text = data_nmnist(tree)
        out.append(Outcome(f"`snnbp data nmnist --from` {name}", text, ok))
    return out


def mnist_probes(lab: Lab) -> list[Outcome]:
    """Cached MNIST changed after `snnbp data mnist` recorded it: training must refuse it."""
    import numpy as np
    from helpers_fake_mnist import write_fake_mnist
    from snnbp.data.idx import read_idx, write_idx
    from snnbp.data.mnist import FILE_NAMES

    out = []
    for change in ("flipped pixels", "a changed label"):
        root = write_fake_mnist(lab.root / f"mnist-{len(out)}")
        kind = "images" if change == "flipped pixels" else "labels"
        path = root / "mnist" / FILE_NAMES[("train", kind)]
        array = read_idx(path)
        if kind == "images":
            array[0, :4, :4] = 255 - array[0, :4, :4]
        else:
            array[3] = (array[3] + 1) % 10
        write_idx(path, np.ascontiguousarray(array))
        run = lab.root / f"mnist-run-{len(out)}"
        p = lab.snnbp("train", "--out", str(run), *lab.tiny(f'data.root="{root}"'))
        ok, line = one_clear_error(p)
        out.append(Outcome(f"cached MNIST with {change}, then `snnbp train`", _short(line, lab),
                           ok and "snnbp data mnist" in line and not run.exists()))
    return out


PROBES = [bad_value_probes, divergence_probe, cli_mistake_probes, nmnist_probes, mnist_probes, kill_probes]


def write_table(results: list[Outcome], seconds: float, path: Path) -> None:
    from snnbp.train.run_dir import git_commit, machine

    passed = sum(r.ok for r in results)
    lines = ["# Fault probes", "",
             "Generated by `python scripts/faults.py`; do not edit by hand. Each probe runs the command line in a child",
             "process on tiny data; *holds* = one clear error (exit 2, one `snnbp: error:` line, no traceback) and",
             "nothing written, or, for kills, a resumed run equal to one never stopped.", "",
             f"{passed} of {len(results)} probes hold; {seconds:.0f} s on {machine()}, commit {git_commit()}.", "",
             "| probe | outcome | verdict |", "|---|---|---|"]
    lines += [f"| {r.probe} | {r.outcome} | {'holds' if r.ok else '**FAILS**'} |" for r in results]
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="run only probe groups whose function name contains this; prints, writes nothing")
    ap.add_argument("--out", default=str(REPO / "results" / "faults.md"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    results: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="snnbp-faults-") as tmp:
        lab = Lab(Path(tmp))
        for group in PROBES:
            if args.only and args.only not in group.__name__:
                continue
            for r in group(lab):
                print(f"[{'holds' if r.ok else 'FAILS'}] {r.probe}: {r.outcome}", flush=True)
                results.append(r)
    seconds = time.perf_counter() - t0
    if not args.only:
        write_table(results, seconds, Path(args.out))
        print(f"wrote {args.out} ({seconds:.0f} s)")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
