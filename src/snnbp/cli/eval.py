"""`snnbp eval CHECKPOINT [--curves] [--baseline RUN_DIR]`: test a trained network, spiking or conventional.

A spiking checkpoint prints test accuracy and operation counts per sample (metrics/operations.py);
``--curves`` also records accuracy against time and against operations into RUN_DIR/curves.json
(metrics/curves.py) and compares with the conventional baseline of the same shape and data: given by
``--baseline``, else the row's baseline next to it under results/ (train/reproduce.ROWS). A
conventional checkpoint (model.kind = "ann") prints its accuracy and MACs per sample.
"""

from __future__ import annotations

import json
from pathlib import Path

from snnbp.errors import ConfigError, DataError
from snnbp.files import write_json_atomic

# What evaluation may change: the test data and the engine that runs the trained network, never the
# network itself (model.*) or how it was trained, which the checkpoint fixes.
_EVAL_KEYS = ("data.", "train.engine", "train.device", "train.dt_ms")
RASTER_SAMPLES = 3  # test samples whose spikes --curves keeps for the report's rasters


def register(sub) -> None:
    e = sub.add_parser("eval", help="evaluate a checkpoint on its test set (--curves: accuracy vs time and operations)")
    e.add_argument("checkpoint", help="a .safetensors file (model.safetensors or last.safetensors) or a run directory")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a data key (or train.engine / train.device / train.dt_ms), "
                        "e.g. --set data.test_limit=1000")
    e.add_argument("--curves", action="store_true",
                   help="record accuracy vs time since onset and vs operations per sample into RUN_DIR/curves.json "
                        "(drawn by `snnbp report`), and compare with the baseline")
    e.add_argument("--baseline", metavar="RUN_DIR", action="append", default=[],
                   help="with --curves: a conventional network (a model.kind = \"ann\" run) to compare with; "
                        "repeatable, the first is the table's (default: the row's baseline beside it under results/)")
    e.set_defaults(func=_eval)


def _checkpoint_path(arg: str) -> Path:
    path = Path(arg)
    if path.is_dir():
        path = path / "model.safetensors" if (path / "model.safetensors").exists() else path / "last.safetensors"
    return path


def _check_eval_overrides(overrides: list[str]) -> None:
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in _EVAL_KEYS):
            raise ConfigError(f"snnbp eval cannot change '{key}': the network and its training come from the "
                              "checkpoint; only data.* keys and train.engine / train.device / train.dt_ms may be set")


def _eval(args) -> int:
    from snnbp.serialization import load_tensors
    from snnbp.train.ann_trainer import ANN_HEADER

    path = _checkpoint_path(args.checkpoint)
    _check_eval_overrides(args.overrides)
    _, meta = load_tensors(path)
    if args.baseline and not args.curves:
        raise ConfigError("--baseline is the reference of --curves; add --curves")
    if ANN_HEADER in meta:
        if args.curves:
            raise ConfigError(f"{path} is a conventional network: it answers once per sample, so it has no accuracy-"
                              "vs-time curve; run --curves on a spiking checkpoint and pass this run as --baseline")
        out = _eval_ann(path, args.overrides)
    else:
        out = _eval_snn(path, args)
    print(json.dumps(out))
    return 0


def _eval_ann(path: Path, overrides: list[str]) -> dict:
    from snnbp.ann.features import dense_inputs
    from snnbp.config import load_config, to_dict
    from snnbp.data.sources import make_source
    from snnbp.train.ann_trainer import ann_accuracy, load_ann

    model, cfg, meta = load_ann(path)
    cfg = load_config(None, overrides, base=to_dict(cfg))
    source = make_source(cfg.data, cfg.train.seed)
    X, y = dense_inputs(source, "test")
    return {"test_accuracy": ann_accuracy(model, X, y), "n_test": len(y),
            "macs_per_sample": meta["ann"]["macs_per_sample"], "network": meta["ann"]["describe"],
            "checkpoint": str(path), "data": source.name}


def _eval_snn(path: Path, args) -> dict:
    from snnbp.config import load_config
    from snnbp.data.sources import make_source
    from snnbp.metrics.curves import build_curves, compare_with_baseline, describe_comparison, readout_grid, \
        test_presentation_ms
    from snnbp.metrics.rasters import raster_samples, record_rasters
    from snnbp.serialization import load_checkpoint
    from snnbp.train.build import make_evaluator

    net, _, _, _, saved_config = load_checkpoint(path)
    if not saved_config:
        raise DataError(f"{path} is not an snnbp run checkpoint (it needs a network and a config header)")
    cfg = load_config(None, args.overrides, base=saved_config)
    source = make_source(cfg.data, cfg.train.seed)
    readout = readout_grid(test_presentation_ms(source)) if args.curves else None
    out = make_evaluator(cfg)(net, source, readout_ms=readout)  # the run's engine (train.engine)
    out.update(checkpoint=str(path), data=source.name)
    if args.curves:
        curves = build_curves(out, net.sizes, cfg.train.dt_ms)
        curves.update(checkpoint=str(path), data=source.name, network=net.describe(), engine=cfg.train.engine,
                      confusion=out["confusion"], layer_sizes=[int(n) for n in net.sizes])
        baselines = [_read_baseline(b) for b in args.baseline] or [b for b in [_row_baseline(path.parent)] if b]
        if baselines:
            curves["comparisons"] = [compare_with_baseline(curves, b) for b in baselines]
            curves["comparison"] = curves["comparisons"][0]  # the results table's
            for cmp in curves["comparisons"]:
                for line in describe_comparison(cmp):
                    print(line)
        else:
            print("no baseline to compare with: pass --baseline RUN_DIR (a run of a model.kind = \"ann\" preset, e.g. "
                  "`snnbp reproduce ann-mnist-800`)")
        write_json_atomic(path.parent / "curves.json", curves)  # `snnbp report` draws it
        picks = raster_samples(source.test_labels, RASTER_SAMPLES)
        write_json_atomic(path.parent / "rasters.json", record_rasters(net, source, picks))
        print(f"curves written to {path.parent / 'curves.json'}, spike rasters of {len(picks)} test samples to "
              f"{path.parent / 'rasters.json'}")
        out.pop("latency_curve", None)
    return out


def _read_baseline(given: str) -> dict:
    """The summary.json of a finished model.kind = "ann" run (a run directory or the file itself)."""
    p = Path(given)
    p = p / "summary.json" if p.is_dir() else p
    if not p.is_file():
        raise DataError(f"--baseline {given}: no summary.json there; pass the directory of a finished "
                        "model.kind = \"ann\" run (e.g. results/ann-mnist-800 after `snnbp reproduce ann-mnist-800`)")
    s = json.loads(p.read_text())
    if "macs_per_sample" not in s:
        raise DataError(f"--baseline {given} is not a conventional-network run (its summary has no macs_per_sample)")
    return s


def _row_baseline(run_dir: Path) -> dict | None:
    """The summary of the row's own baseline beside it under results/ (train/reproduce.ROWS), if trained."""
    from snnbp.train.reproduce import ROWS

    row = ROWS.get(run_dir.name)
    if row is None or row.baseline is None:
        return None
    p = run_dir.parent / row.baseline / "summary.json"
    return json.loads(p.read_text()) if p.is_file() else None
