"""`snnbp show FILE.bin [--out DIR]`: ON/OFF frames (PNG) and an animation (GIF) of one N-MNIST recording.

Memory is bounded whatever the file holds: the reader refuses recordings past the size limits
(``snnbp.data.nmnist_format.read_limits``: 10 s and 1,000,000 events unless raised through the environment),
and the GIF (about 0.2 MB per frame while it is built) and the PNG are capped in frames.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from snnbp.errors import DataError

MAX_PNG_FRAMES = 60  # panels 2 inches wide each: more makes an unreadable, huge figure
MAX_GIF_FRAMES = 1_500  # 272 x 272 RGB frames held at once: about 330 MB; a 10 s recording at 10 ms is 1,001


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``show`` subcommand to ``snnbp``."""
    parser = subparsers.add_parser(
        "show",
        help="draw one N-MNIST .bin recording as PNG frames and a GIF",
        description=(
            "Read one recording in the official N-MNIST format and write FILE_frames.png (ON red, OFF blue, "
            "equal time slices) and FILE.gif (real-time animation) into --out. Says whether the recording "
            "is real or synthetic (SYNTHETIC.json next to its dataset). A recording longer than 10 s or with "
            "more than 1,000,000 events is refused; set SNNBP_NMNIST_MAX_DURATION_S / SNNBP_NMNIST_MAX_EVENTS to "
            "raise these limits."
        ),
    )
    parser.add_argument("file", type=Path, metavar="FILE.bin", help="recording in N-MNIST format")
    parser.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="output folder (default: .)")
    parser.add_argument("--frames", type=int, default=6, metavar="N",
                        help=f"time slices in the PNG, 1..{MAX_PNG_FRAMES} (default 6)")
    parser.add_argument("--frame-ms", type=float, default=10.0, metavar="MS", help="GIF frame length (default 10)")
    parser.add_argument("--checkpoint", type=Path, metavar="CKPT",
                        help="also run the recording through this trained network and draw its spike raster")
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    from snnbp.data.event_stats import describe_source
    from snnbp.data.events import NMNIST_SENSOR, SensorSize
    from snnbp.data.nmnist_format import read_events, read_limits
    from snnbp.report.events_plot import animate_events, plot_event_frames

    if not 1 <= args.frames <= MAX_PNG_FRAMES or not 0 < args.frame_ms < math.inf:
        raise DataError(f"--frames must be 1..{MAX_PNG_FRAMES} and --frame-ms a positive number; "
                        f"got {args.frames} and {args.frame_ms}")
    # DataError for a missing file, a folder, a link loop, or a recording past the limits (refused unread if too big)
    events = read_events(args.file, limits=read_limits())
    _check_gif_frames(events, args.frame_ms, str(args.file))
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


def _check_gif_frames(events, frame_ms: float, name: str) -> None:
    """DataError if the GIF would need more than MAX_GIF_FRAMES frames of ``frame_ms`` milliseconds."""
    end_ms = (int(events["t"][-1]) + 1) / 1000.0 if len(events) else 0.0  # last event time, ms
    n_frames = math.ceil(end_ms / frame_ms) + 1  # as animate_events slices it, rounded up
    if n_frames > MAX_GIF_FRAMES:
        raise DataError(
            f"{name}: lasts {end_ms / 1000:,.1f} s, which at --frame-ms {frame_ms:g} is {n_frames:,} GIF frames, "
            f"more than {MAX_GIF_FRAMES:,}; pass --frame-ms {math.ceil(end_ms / (MAX_GIF_FRAMES - 1))} or more"
        )


def _raster(args: argparse.Namespace, events, sensor, source: str) -> Path:
    """Run the recording through a trained network (event engine) and draw input and spike rasters."""
    import numpy as np

    from snnbp.data.events import EventBatch, events_to_channels
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
