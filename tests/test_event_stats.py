"""Event statistics, the real-vs-synthetic comparison, and the event pictures; on hand-built events only."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from snnbp.cli import data_compare as cli_compare
from snnbp.data.event_stats import compare, dataset_statistics, describe_source, nmnist_files
from snnbp.data.events import EVENT_DTYPE, NMNIST_SENSOR, SensorSize
from snnbp.data.nmnist_format import write_events
from snnbp.errors import DataError
from snnbp.cli import show as cli_show
from snnbp.report.events_plot import animate_events, plot_event_frames, plot_spike_raster

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_events(x, y, p, t_us) -> np.ndarray:
    ev = np.zeros(len(t_us), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = x, y, p, t_us
    return ev


def three_bursts(seed: int, n_per_burst: int = 300) -> np.ndarray:
    """Random events in three bursts centred at 50, 155, 260 ms, in a 20 x 20 patch of the sensor."""
    rng = np.random.default_rng(seed)
    t = np.sort(np.concatenate([rng.normal(c, 15e3, n_per_burst) for c in (50e3, 155e3, 260e3)]).clip(0, 305e3))
    n = len(t)
    return make_events(rng.integers(7, 27, n), rng.integers(7, 27, n), rng.integers(0, 2, n), np.rint(t).astype(np.int64))


# --------------------------------------------------------------------------------------------- statistics


def test_statistics_of_a_hand_built_sample():
    #            pixel (1,1) twice (10 ms apart), then four other pixels
    ev = make_events(x=[1, 1, 2, 3, 4, 5], y=[1, 1, 2, 3, 4, 5], p=[1, 0, 1, 0, 1, 1],
                     t_us=[0, 10_000, 100_000, 110_000, 200_000, 250_000])  # fmt: skip
    s = dataset_statistics([ev])
    assert s["samples"] == 1 and s["events_per_sample"] == {"min": 6, "median": 6, "max": 6, "mean": 6}
    assert s["on_fraction"] == pytest.approx(4 / 6)
    assert s["duration_ms"]["max"] == pytest.approx(250.0) and s["first_event_ms"] == 0.0
    assert s["thirds"] == pytest.approx([3 / 6, 2 / 6, 1 / 6])
    assert s["iei_us"]["median"] == pytest.approx(50_000) and s["iei_us"]["p90"] == pytest.approx(90_000)
    assert s["pixel_isi_us"]["median"] == pytest.approx(10_000)  # only pixel (1, 1) fires twice
    assert s["x_std"] == pytest.approx(np.std([1, 1, 2, 3, 4, 5]))
    assert s["bbox_w"] == 5 and s["bbox_h"] == 5
    assert s["active_pixel_fraction"] == pytest.approx(5 / (34 * 34))
    assert s["rate_hz_per_pixel"] == pytest.approx(6 / (34 * 34 * 0.25))
    assert sum(s["profile_10ms"]) == pytest.approx(1.0) and s["profile_10ms"][:2] == pytest.approx([1 / 6, 1 / 6])
    assert np.isnan(s["centroid_range_x"])  # no 10 ms window has enough events for a centroid


def test_statistics_accept_labelled_pairs_and_empty_samples():
    a, b = three_bursts(0), three_bursts(1)
    s = dataset_statistics([(a, 3), (b, 4), (np.zeros(0, EVENT_DTYPE), 5)])
    assert s["samples"] == 3 and s["empty_samples"] == 1
    assert s["events_per_sample"]["median"] == 900
    assert all(0.25 < f < 0.42 for f in s["thirds"])
    assert dataset_statistics([]) == {"samples": 0, "empty_samples": 0}


# ------------------------------------------------------------------------------------------------ folders


@pytest.fixture
def two_folders(tmp_path):
    """A 'real' folder (no marker) and a synthetic one (SYNTHETIC.json), both in N-MNIST layout."""
    real, synth = tmp_path / "real", tmp_path / "synth" / "nmnist-synthetic"
    for i, (digit, index) in enumerate([(5, 1), (0, 2), (4, 3), (1, 4)]):
        write_events(real / "Train" / str(digit) / f"{index:05d}.bin", three_bursts(i))
        write_events(synth / "Train" / str(digit) / f"{index:05d}.bin", three_bursts(10 + i, 200))
    write_events(synth / "Test" / "7" / "00001.bin", three_bursts(99))
    (synth / "SYNTHETIC.json").write_text(json.dumps({"generator": "test", "generator_version": "0", "seed": 7}))
    return real, synth


def test_files_are_ordered_by_split_and_index_across_digits(two_folders):
    real, synth = two_folders
    assert [p.stem for p in nmnist_files(real)] == ["00001", "00002", "00003", "00004"]
    assert [p.parent.parent.name for p in nmnist_files(synth)] == ["Train"] * 4 + ["Test"]
    assert len(nmnist_files(synth, limit=2)) == 2
    assert len(nmnist_files(real / "Train")) == 4  # a split folder works too
    with pytest.raises(DataError):
        nmnist_files(real / "missing")


def test_compare_labels_real_and_synthetic(two_folders):
    real, synth = two_folders
    assert describe_source(real).startswith("REAL")
    assert describe_source(synth / "Train" / "5").startswith("SYNTHETIC")
    text = compare(real, synth, limit=3)
    assert "REAL" in text and "SYNTHETIC" in text and "seed 7" in text
    assert "3 files" in text and "events/sample median" in text and "ON fraction" in text
    assert "900" in text and "600" in text  # 3 x 300 and 3 x 200 events per sample


def test_compare_matched_uses_common_files_only(two_folders):
    real, synth = two_folders
    text = compare(real, synth, matched=True)
    assert text.count("4 files") == 2  # Test/7/00001.bin exists only in the synthetic folder
    other = real.parent / "other"
    write_events(other / "Test" / "3" / "00009.bin", three_bursts(5))
    with pytest.raises(DataError, match="in common"):
        compare(real, other, matched=True)


def test_cli_compare_prints_the_table(two_folders, capsys):
    real, synth = two_folders
    parser = argparse.ArgumentParser()
    cli_compare.register(parser.add_subparsers())
    args = parser.parse_args(["compare", str(real), str(synth), "--limit", "2"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "REAL" in out and "SYNTHETIC" in out and "2 files" in out


# ------------------------------------------------------------------------------------------------- plots


def test_event_frames_and_animation_are_written(tmp_path):
    ev = three_bursts(0)
    png = plot_event_frames(ev, NMNIST_SENSOR, tmp_path / "f" / "frames.png", n_frames=4)
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000
    gif = animate_events(ev, NMNIST_SENSOR, tmp_path / "a.gif", frame_ms=20)
    assert gif.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames > 5 and im.size == (34 * 8, 34 * 8)  # identical frames may be merged
    empty = plot_event_frames(np.zeros(0, EVENT_DTYPE), NMNIST_SENSOR, tmp_path / "empty.png")
    assert empty.stat().st_size > 0


def test_spike_raster_accepts_pairs_and_two_column_arrays(tmp_path):
    rng = np.random.default_rng(0)
    layers = [(rng.integers(0, 100, 400), rng.uniform(0, 3e5, 400)), np.c_[rng.integers(0, 10, 30), rng.uniform(0, 3e5, 30)]]
    png = plot_spike_raster(layers, tmp_path / "raster.png", input_events=three_bursts(1), sensor=SensorSize(34, 34))
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000
    assert plot_spike_raster(layers[:1], tmp_path / "r2.png").stat().st_size > 1000


def test_cli_show_writes_png_and_gif(two_folders, tmp_path, capsys):
    real, synth = two_folders
    parser = argparse.ArgumentParser()
    cli_show.register(parser.add_subparsers())
    args = parser.parse_args(["show", str(synth / "Train" / "5" / "00001.bin"), "--out", str(tmp_path / "show")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out
    assert (tmp_path / "show" / "00001_frames.png").stat().st_size > 1000
    assert (tmp_path / "show" / "00001.gif").stat().st_size > 100
    args = parser.parse_args(["show", str(tmp_path / "nope.bin")])
    with pytest.raises(DataError):
        args.func(args)
