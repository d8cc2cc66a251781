"""`snnbp data nmnist`: check and record the user's N-MNIST copy, or make a synthetic one.

``--from DIR_OR_ZIP`` reads every file of both splits (folder or the official zips, never unpacked),
prints counts per split and class and any bad file, and records where the data is in
``<data root>/nmnist/index.json`` so that training configs can say ``data.source = "nmnist"`` without a
path (``snnbp.data.paths.resolve_nmnist``). ``--synthetic`` writes a synthetic N-MNIST made from MNIST.
Nothing is downloaded: the official archives must be fetched by hand.

The index is written last, and only on success: a split that is present but unreadable or empty, or bad
files without ``--skip-bad``, leave any earlier index untouched. Only a split that is absent altogether
(just Train.zip given) is reported and left out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from snnbp.errors import DataError


def register(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``nmnist`` subcommand to ``snnbp data``."""
    parser = data_subparsers.add_parser(
        "nmnist",
        help="check and record your N-MNIST copy (--from) or make a synthetic one (--synthetic)",
        description=(
            "Prepare N-MNIST. --from checks every file of your copy (a folder holding Train/ and Test/, or "
            "Train.zip / Test.zip, read without unpacking), prints counts per split and class, and records "
            "its location under <root>/nmnist/ so configs can use data.source = \"nmnist\". snnbp does not "
            "download N-MNIST: download Train.zip and Test.zip from the N-MNIST site and pass --from. "
            "--synthetic instead simulates recordings from MNIST (needs `snnbp data mnist` first). "
            "A recording longer than 10 s or with more than 1,000,000 events is a bad file; set "
            "SNNBP_NMNIST_MAX_DURATION_S / SNNBP_NMNIST_MAX_EVENTS to raise these limits."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="from_path", type=Path, default=None, metavar="DIR_OR_ZIP",
                        help="your N-MNIST: folder with Train/ and Test/ (or the zips), a split folder, or a zip")
    source.add_argument("--synthetic", action="store_true", help="make a synthetic N-MNIST from MNIST")
    parser.add_argument("--root", type=Path, default=None, metavar="DIR",
                        help="data root (default: $SNNBP_DATA or ~/.cache/snnbp)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="record the data even if some files are corrupt (they are listed, then skipped)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="--from: check only the first N files of each class; "
                             "--synthetic: make only the first N samples of each split")
    parser.add_argument("--seed", type=int, default=0, help="--synthetic: random seed (default 0)")
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise DataError(f"--limit must be at least 1, got {args.limit}")
    if args.synthetic:
        return _run_synthetic(args)
    return _run_from(args)


def _record_path(given: Path) -> Path:
    """The path to record: a lone Train.zip with Test.zip beside it stands for their folder."""
    given = given.expanduser()
    if not given.exists():  # checked first: resolve() raises RuntimeError on a symlink loop
        raise DataError(f"{given} does not exist or cannot be followed (a symlink loop?); pass the N-MNIST folder "
                        "or Train.zip / Test.zip")
    given = given.resolve()
    if given.is_file() and given.stem.lower() in ("train", "test"):
        other = "Test" if given.stem.lower() == "train" else "Train"
        if any(p.name.lower() == f"{other.lower()}.zip" for p in given.parent.iterdir()):
            return given.parent
    return given


def _run_from(args: argparse.Namespace) -> int:
    from snnbp.data.nmnist import NMNIST, SplitNotFound
    from snnbp.data.paths import SPLIT_DIRS, write_index

    path = _record_path(args.from_path)
    splits, missing, n_bad, limits = {}, {}, 0, None
    for split in SPLIT_DIRS:
        try:
            ds = NMNIST(path, split, limit_per_class=args.limit, on_bad="skip", progress=True)
        except SplitNotFound as err:  # absent, not damaged: record the other split (any other error stops here)
            missing[split] = str(err)
            continue
        splits[split] = {"source": ds.source, "files": len(ds), "per_class": ds.counts(),
                         "bad": [list(s) for s in ds.skipped]}
        n_bad += len(ds.skipped)
        limits = ds.limits
        _print_split(SPLIT_DIRS[split], ds)
        if not len(ds):
            raise DataError(
                f"every one of the {len(ds.skipped)} {SPLIT_DIRS[split]} recordings in {ds.source} is bad (listed "
                "above), so there is nothing to record; re-extract the data"
            )
    if not splits:
        raise DataError(next(iter(missing.values())))
    for split, reason in missing.items():
        print(f"{SPLIT_DIRS[split]}: not found ({reason})")
    if n_bad and not args.skip_bad:
        raise DataError(
            f"{n_bad} corrupt N-MNIST file(s) in {path} (listed above); re-extract them, or pass --skip-bad to "
            "record the data anyway and skip them"
        )
    record = {"kind": "real", "path": str(path), "splits": splits, "checked_limit_per_class": args.limit,
              "skip_bad": bool(args.skip_bad), "limits": limits._asdict()}
    index = write_index(record, args.root)
    print(f"recorded in {index}")
    print(path)
    return 0


def _print_split(split_dir: str, ds) -> None:
    per_class = " ".join(f"{c}:{n}" for c, n in ds.counts().items())
    print(f"{split_dir}: {len(ds)} recordings from {ds.source} ({per_class})")
    for _name, reason in ds.skipped:  # each reason starts with the file's name
        print(f"  bad: {reason}")
    if ds.skipped:
        print(f"  {len(ds.skipped)} bad file(s) skipped")


def _run_synthetic(args: argparse.Namespace) -> int:
    from snnbp.data.nmnist import NMNIST
    from snnbp.data.paths import SPLIT_DIRS, data_root
    from snnbp.data.synthetic.writer import generate_synthetic_nmnist  # heavy (numba): only when asked

    out = generate_synthetic_nmnist(data_root(args.root), mnist_root=args.root, seed=args.seed, limit=args.limit,
                                    progress=True)
    for split in SPLIT_DIRS:
        _print_split(SPLIT_DIRS[split], NMNIST(out, split))
    print(out)
    return 0
