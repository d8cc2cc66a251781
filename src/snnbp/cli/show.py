"""`snnbp show FILE.bin [--out DIR]`: ON/OFF frames (PNG) and an animation (GIF) of one N-MNIST recording."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``show`` subcommand to ``snnbp``."""
    parser = subparsers.add_parser(
        "show",
        help="draw one N-MNIST .bin recording as PNG frames and a GIF",
        description=(
            "Read one recording in the official N-MNIST format and write FILE_frames.png (ON red, OFF blue, "
            "equal time slices) and FILE.gif (real-time animation) into --out. Says whether the recording "
            "is real or synthetic (SYNTHETIC.json next to its dataset)."
        ),
    )
    parser.add_argument("file", type=Path, metavar="FILE.bin", help="recording in N-MNIST format")
    parser.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="output folder (default: .)")
    parser.add_argument("--frames", type=int, default=6, metavar="N", help="time slices in the PNG (default 6)")
    parser.add_argument("--frame-ms", type=float, default=10.0, metavar="MS", help="GIF frame length (default 10)")
    parser.add_argument("--checkpoint", type=Path, metavar="CKPT",
                        help="also run the recording through this trained network and draw its spike raster")
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    from snnbp.data.event_stats import describe_source
    from snnbp.data.events import NMNIST_SENSOR, SensorSize
    from snnbp.data.nmnist_format import read_events
    from snnbp.errors import DataError
    from snnbp.report.events_plot import animate_events, plot_event_frames

    if not args.file.is_file():
        raise DataError(f"{args.file} does not exist; give the path of an N-MNIST .bin recording.")
    if args.frames < 1 or args.frame_ms <= 0:
        raise DataError("--frames must be at least 1 and --frame-ms positive.")
    events = read_events(args.file)
    sensor = NMNIST_SENSOR
    if len(events) and (events["x"].max() >= sensor.width or events["y"].max() >= sensor.height):
        sensor = SensorSize(int(events["x"].max()) + 1, int(events["y"].max()) + 1, 2)  # not a 34 x 34 recording
    source = describe_source(args.file.parent)
    title = f"{args.file.name}: {len(events)} events, {source} (ON red, OFF blue)"
    png = plot_event_frames(events, sensor, args.out / f"{args.file.stem}_frames.png", n_frames=args.frames, title=title)
    gif = animate_events(events, sensor, args.out / f"{args.file.stem}.gif", frame_ms=args.frame_ms)
    print(f"{args.file}: {source}, {len(events)} events")
    print(png)
    print(gif)
    if args.checkpoint is not None:
        print(_raster(args, events, sensor, source))
    return 0


def _raster(args: argparse.Namespace, events, sensor, source: str) -> Path:
    """Run the recording through a trained network (event engine) and draw input and spike rasters."""
    import numpy as np

    from snnbp.data.events import EventBatch, events_to_channels
    from snnbp.errors import DataError
    from snnbp.event_engine.engine import run_events
    from snnbp.serialization import load_network
    from snnbp.report.events_plot import plot_spike_raster

    ckpt = args.checkpoint / "model.safetensors" if args.checkpoint.is_dir() else args.checkpoint
    net, _ = load_network(ckpt)
    if net.n_inputs != sensor.channels:
        raise DataError(f"{ckpt} expects {net.n_inputs} inputs but the recording has {sensor.channels} channels")
    t = events["t"].astype(np.float64)
    batch = EventBatch.from_lists([events_to_channels(events, sensor)], [t], [float(t[-1]) if len(t) else 0.0])
    res = run_events(net, batch, record_spikes=200_000)
    log = res.spike_log[0]
    layers = [np.stack([log[log[:, 0] == l, 1], log[log[:, 0] == l, 2]], axis=1) for l in range(net.n_layers)]
    names = [f"hidden {l + 1} ({n})" for l, n in enumerate(net.sizes[:-1])] + ["output (10)"]
    pred = int(res.predictions()[0])
    title = f"{args.file.name} ({source}): predicted {pred}, output counts {res.output_counts[0].tolist()}"
    return plot_spike_raster(layers, args.out / f"{args.file.stem}_raster.png", input_events=events, sensor=sensor,
                             layer_names=names, title=title)
