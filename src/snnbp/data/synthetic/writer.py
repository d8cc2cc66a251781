"""Writing a synthetic N-MNIST dataset: the simulator's samples as files in the real dataset's layout.

``generate_synthetic_nmnist`` makes ``<root>/nmnist-synthetic/{Train,Test}/<digit>/<NNNNN>.bin`` from the
cached MNIST, sharing the samples among worker processes (the files do not depend on how many). The
folder's ``SYNTHETIC.json`` marker (generator version, seed, limit, parameters) is written first and
completed last, so a half-made folder is never taken for real data; ``read_marker`` finds it. What makes
one sample's events is ``snnbp.data.synthetic.simulator``.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from snnbp.data.synthetic.simulator import DEFAULT_PARAMS, GENERATOR_VERSION, SynthParams, sample_rng, synthesize_sample
from snnbp.errors import DataError
from snnbp.files import write_json_atomic

SPLIT_DIRS = {"train": "Train", "test": "Test"}

MARKER = "SYNTHETIC.json"  # its presence is what tells every report that a folder is synthetic
SUBDIR = "nmnist-synthetic"
_CHUNK = 400  # samples per worker task: large enough to amortize the hand-off, small for a smooth progress bar


def _write_chunk(split: str, out_dir: str, start: int, images: np.ndarray, labels: np.ndarray, seed: int,
                 params: SynthParams) -> tuple[int, int]:
    """Worker: synthesize samples start.. start+len(images)-1 of a split, write them; return (samples, events)."""
    from snnbp.data.nmnist_format import write_events

    split_dir = Path(out_dir) / SPLIT_DIRS[split]
    n_events = 0
    for i, (image, label) in enumerate(zip(images, labels)):
        index = start + i
        events = synthesize_sample(image, sample_rng(seed, split, index), params)
        write_events(split_dir / str(int(label)) / f"{index + 1:05d}.bin", events)  # 1-based, as N-MNIST names files
        n_events += len(events)
    return len(images), n_events


def _metadata(seed: int, limit: int | None, params: SynthParams, counts: dict, complete: bool) -> dict:
    return {
        "dataset": "synthetic N-MNIST (simulated saccade recordings of MNIST digits, NOT real ATIS recordings)",
        "generator": "snnbp.data.synthetic_nmnist",
        "generator_version": GENERATOR_VERSION,
        "source": "MNIST (snnbp.data.mnist.load_mnist); file NNNNN.bin = MNIST index NNNNN (1-based)",
        "seed": int(seed),
        "limit": limit,
        "complete": complete,
        "samples": counts,
        "params": params.to_json(),
    }


def read_marker(directory: str | Path) -> dict | None:
    """The SYNTHETIC.json of a synthetic dataset folder, looked up in the folder and its two parents.

    Returns None when there is none, i.e. when the folder holds (or claims to hold) real recordings.
    """
    directory = Path(directory).resolve()
    for d in [directory, *list(directory.parents)[:2]]:
        path = d / MARKER
        if path.is_file():
            return _load_marker(path)
    return None


def _load_marker(path: Path) -> dict:
    """A marker's content; an unreadable one still marks the folder as synthetic."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"generator": f"unreadable {path.name}", "complete": False}


def _same_recipe(old: dict | None, new: dict) -> bool:
    keys = ("generator_version", "seed", "limit", "params")
    new = json.loads(json.dumps(new))  # as it would read back: tuples become lists
    return old is not None and old.get("complete") and all(old.get(k) == new.get(k) for k in keys)


def _prepare_dir(out: Path, meta: dict) -> bool:
    """Make ``out`` ready for writing; return False when it already holds this exact dataset."""
    marker = out / MARKER
    old = _load_marker(marker) if marker.is_file() else None
    if _same_recipe(old, meta):
        return False
    stale = sorted(out.glob("*/[0-9]/*.bin"))
    if stale and old is None:
        raise DataError(f"{out} holds N-MNIST files but no {MARKER}; move them away or choose another --root.")
    for path in stale:  # our own files from another recipe: a smaller `limit` must not leave extra samples
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return True


def _write_marker(out: Path, meta: dict) -> None:
    write_json_atomic(out / MARKER, meta)


def _progress_bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=not (progress and sys.stderr.isatty()))


def generate_synthetic_nmnist(root, mnist_root=None, seed: int = 0, limit: int | None = None,
                              workers: int | None = None, progress: bool = True,
                              params: SynthParams = DEFAULT_PARAMS) -> Path:
    """Write a synthetic N-MNIST dataset made from MNIST and return its folder ``<root>/nmnist-synthetic``.

    Layout as the real dataset: ``{Train,Test}/<digit>/<NNNNN>.bin`` (official 5-byte format, NNNNN the
    1-based MNIST index), plus ``SYNTHETIC.json`` (generator version, seed, limit, parameters). ``limit``
    keeps the first N samples of each split. ``workers`` processes (default: all usable cores) share the
    work; the files do not depend on their number. MNIST comes from ``load_mnist(split, mnist_root)``
    (raises DataError if it is not cached). If the folder already holds a complete dataset with the same
    recipe, nothing is done.
    """
    from snnbp.data.mnist import load_mnist

    out = Path(root) / SUBDIR
    data = {split: load_mnist(split, mnist_root) for split in SPLIT_DIRS}
    counts = {SPLIT_DIRS[s]: len(imgs) if limit is None else min(int(limit), len(imgs)) for s, (imgs, _) in data.items()}
    meta = _metadata(seed, limit, params, counts, complete=False)
    if not _prepare_dir(out, meta):
        return out
    _write_marker(out, meta)  # written first, so even a half-made folder is never taken for real data
    workers = workers or len(os.sched_getaffinity(0))
    tasks = []
    for split, (images, labels) in data.items():
        n = counts[SPLIT_DIRS[split]]
        for digit in range(10):
            (out / SPLIT_DIRS[split] / str(digit)).mkdir(parents=True, exist_ok=True)
        bounds = [(s, min(s + _CHUNK, n)) for s in range(0, n, _CHUNK)]
        tasks += [(split, str(out), s, images[s:e], labels[s:e], seed, params) for s, e in bounds]
    with _progress_bar(sum(counts.values()), "synthetic N-MNIST", progress) as bar:
        n_events = sum(_run_tasks(tasks, workers, bar))
    meta = _metadata(seed, limit, params, counts, complete=True)
    meta["events_total"] = n_events
    _write_marker(out, meta)
    if progress:
        print(f"snnbp: synthetic N-MNIST ({sum(counts.values())} samples, seed {seed}) written to {out}", file=sys.stderr)
    return out


def _run_tasks(tasks: list, workers: int, bar):
    """Run _write_chunk over tasks, in this process (workers == 1) or a process pool; yield event counts."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            done, n_events = _write_chunk(*task)
            bar.update(done)
            yield n_events
        return
    import multiprocessing

    # spawn, not fork: the caller may hold threads (torch, tqdm) that fork would copy in a broken state
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done, n_events in pool.map(_write_chunk, *zip(*tasks)):
            bar.update(done)
            yield n_events
