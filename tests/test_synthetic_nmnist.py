"""Synthetic N-MNIST: determinism, realistic statistics, files in the official format. No network, no MNIST:
the tests draw their own digit-like images and write them as a tiny MNIST cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from snnbp.data.synthetic import simulator as sim, writer
from snnbp.data.events import EVENT_DTYPE
from snnbp.data.idx import write_idx
from snnbp.data.mnist import FILE_NAMES, record_mnist
from snnbp.errors import DataError

# Ranges the real recordings span (docs/synthetic-nmnist.md, measured on 1,100 files).
REAL_EVENTS = (1100, 7200)
REAL_END_MS = (297.0, 336.0)


def _stroke(img: np.ndarray, p0, p1, width: float = 1.6) -> None:
    """Draw an anti-aliased line segment (x, y in pixels) of the given half-width into a float image."""
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]].astype(np.float64)
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    u = np.clip(((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1]) / (d @ d), 0, 1)
    dist = np.hypot(xx - p0[0] - u * d[0], yy - p0[1] - u * d[1])
    np.maximum(img, np.clip(width + 0.5 - dist, 0, 1), out=img)


def drawn_digit(kind: int) -> np.ndarray:
    """A 28 x 28 uint8 MNIST-like digit (white strokes on black, centred in the 20 x 20 middle)."""
    img = np.zeros((28, 28))
    if kind == 0:  # an oval made of segments
        angles = np.linspace(0, 2 * np.pi, 17)
        pts = np.stack([14 + 6 * np.cos(angles), 14 + 9 * np.sin(angles)], axis=1)
        for a, b in zip(pts[:-1], pts[1:]):
            _stroke(img, a, b)
    elif kind == 1:
        _stroke(img, (15, 4), (12, 23))
    elif kind == 7:
        _stroke(img, (7, 6), (21, 6))
        _stroke(img, (21, 6), (11, 23))
    else:  # a "4"
        _stroke(img, (16, 4), (7, 16))
        _stroke(img, (7, 16), (21, 16))
        _stroke(img, (17, 8), (17, 24))
    return np.rint(255 * img).astype(np.uint8)


DIGITS = [(drawn_digit(k), k if k in (0, 1, 7) else 4) for k in (0, 1, 7, 4)]


def test_synthesize_sample_is_deterministic_by_seed():
    img = DIGITS[0][0]
    a = sim.synthesize_sample(img, 5)
    b = sim.synthesize_sample(img, np.random.default_rng(5))
    c = sim.synthesize_sample(img, 6)
    assert a.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)


def test_sample_rng_depends_on_seed_split_and_index_only():
    draw = lambda *key: sim.sample_rng(*key).integers(0, 2**62)  # noqa: E731
    assert draw(0, "train", 3) == draw(0, "train", 3)
    assert len({draw(0, "train", 3), draw(1, "train", 3), draw(0, "test", 3), draw(0, "train", 4)}) == 4


@pytest.mark.parametrize("img,label", DIGITS)
def test_statistics_fall_in_real_ranges(img, label):
    ev = sim.synthesize_sample(img, sim.sample_rng(0, "train", label))
    assert REAL_EVENTS[0] <= len(ev) <= REAL_EVENTS[1]
    assert 0.4 <= ev["p"].mean() <= 0.6  # ON and OFF about balanced
    assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].min() >= 0
    assert REAL_END_MS[0] <= ev["t"].max() / 1000 <= REAL_END_MS[1]
    assert ev["x"].max() < 34 and ev["y"].max() < 34
    thirds = np.histogram(ev["t"] / 1000, bins=[0, 105, 210, 400])[0] / len(ev)
    assert np.all(thirds > 0.2), thirds  # three saccades, each a burst of its own
    # between saccades the sensor is nearly quiet: far fewer events than at a saccade's peak
    rate = np.histogram(ev["t"] / 1000, bins=np.arange(0, 320, 10))[0]
    assert rate[9] < 0.3 * rate[3:7].max() and rate[20] < 0.3 * rate[13:17].max()


def test_saccades_move_the_digit_a_few_pixels():
    ev = sim.synthesize_sample(DIGITS[2][0], 0)
    t = ev["t"] / 1000

    def centroid(a, b):
        m = (t >= a) & (t < b)
        return np.array([ev["x"][m].mean(), ev["y"][m].mean()])

    # image moves mostly down in saccade 1 and mostly left in saccade 3 (fitted to the real files)
    d1 = centroid(60, 80) - centroid(10, 30)
    d3 = centroid(270, 300) - centroid(225, 245)
    assert d1[1] > 1.5 and abs(d1[1]) > abs(d1[0])
    assert d3[0] < -1.5 and abs(d3[0]) > abs(d3[1])


def test_params_change_the_output_as_documented():
    img = DIGITS[0][0]
    base = sim.synthesize_sample(img, 1)
    high = sim.synthesize_sample(img, 1, sim.SynthParams(threshold_on=0.6, threshold_off=0.6))
    quiet = sim.synthesize_sample(np.zeros((28, 28), np.uint8), 1)  # blank screen: only noise
    assert len(high) < 0.7 * len(base)
    expected_noise = sim.DEFAULT_PARAMS.noise_rate_hz * 34 * 34 * 0.31
    assert 0.5 * expected_noise < len(quiet) < 1.5 * expected_noise


# ------------------------------------------------------------------------------------ dataset writing


@pytest.fixture
def mnist_root(tmp_path):
    """A tiny MNIST cache (6 train, 3 test images) in the layout load_mnist reads."""
    root = tmp_path / "data"
    imgs = np.stack([DIGITS[i % 4][0] for i in range(6)])
    labels = np.array([DIGITS[i % 4][1] for i in range(6)], np.uint8)
    write_idx(root / "mnist" / FILE_NAMES[("train", "images")], imgs)
    write_idx(root / "mnist" / FILE_NAMES[("train", "labels")], labels)
    write_idx(root / "mnist" / FILE_NAMES[("test", "images")], imgs[3:])
    write_idx(root / "mnist" / FILE_NAMES[("test", "labels")], labels[3:])
    record_mnist(root / "mnist")  # as `snnbp data mnist` does: load_mnist refuses unrecorded files
    return root, imgs, labels


def test_generate_writes_official_files_and_marker(tmp_path, mnist_root):
    from snnbp.data.nmnist_format import read_events

    root, imgs, labels = mnist_root
    out = writer.generate_synthetic_nmnist(tmp_path / "out", mnist_root=root, seed=3, limit=4, workers=1, progress=False)
    assert out == tmp_path / "out" / "nmnist-synthetic"
    train = sorted(out.glob("Train/*/*.bin"))
    assert sorted(p.name for p in train) == [f"{i:05d}.bin" for i in range(1, 5)]  # 1-based MNIST index
    for i in range(4):
        path = out / "Train" / str(labels[i]) / f"{i + 1:05d}.bin"
        expected = sim.synthesize_sample(imgs[i], sim.sample_rng(3, "train", i))
        np.testing.assert_array_equal(read_events(path), expected)
    assert len(list(out.glob("Test/*/*.bin"))) == 3  # limit caps at the split size
    marker = json.loads((out / writer.MARKER).read_text())
    assert marker["complete"] and marker["seed"] == 3 and marker["limit"] == 4
    assert marker["generator_version"] == sim.GENERATOR_VERSION
    assert marker["samples"] == {"Train": 4, "Test": 3}
    assert marker["params"]["threshold_on"] == sim.DEFAULT_PARAMS.threshold_on
    assert writer.read_marker(out / "Train" / "0") is not None  # found from inside the dataset too


def test_files_do_not_depend_on_worker_count(tmp_path, mnist_root, monkeypatch):
    root = mnist_root[0]
    monkeypatch.setattr(writer, "_CHUNK", 2)  # several tasks, so the process pool really shares the work
    one = writer.generate_synthetic_nmnist(tmp_path / "w1", mnist_root=root, seed=0, workers=1, progress=False)
    two = writer.generate_synthetic_nmnist(tmp_path / "w2", mnist_root=root, seed=0, workers=2, progress=False)
    files = sorted(p.relative_to(one) for p in one.glob("*/*/*.bin"))
    assert len(files) == 9
    assert files == sorted(p.relative_to(two) for p in two.glob("*/*/*.bin"))
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes()


def test_same_recipe_is_not_redone_and_smaller_limit_leaves_no_extra_files(tmp_path, mnist_root):
    root = mnist_root[0]
    out = writer.generate_synthetic_nmnist(tmp_path, mnist_root=root, limit=3, workers=1, progress=False)
    first = out / "Train" / str(mnist_root[2][0]) / "00001.bin"
    stamp = first.stat().st_mtime_ns
    writer.generate_synthetic_nmnist(tmp_path, mnist_root=root, limit=3, workers=1, progress=False)
    assert first.stat().st_mtime_ns == stamp
    writer.generate_synthetic_nmnist(tmp_path, mnist_root=root, limit=2, workers=1, progress=False)
    assert len(list(out.glob("Train/*/*.bin"))) == 2


def test_refuses_to_mix_with_files_that_are_not_its_own(tmp_path, mnist_root):
    foreign = tmp_path / "nmnist-synthetic" / "Train" / "0" / "00001.bin"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"\x00" * 5)
    with pytest.raises(DataError, match="SYNTHETIC.json"):
        writer.generate_synthetic_nmnist(tmp_path, mnist_root=mnist_root[0], limit=1, workers=1, progress=False)


def test_missing_mnist_is_a_data_error(tmp_path):
    with pytest.raises(DataError):
        writer.generate_synthetic_nmnist(tmp_path, mnist_root=tmp_path / "nothing", limit=1, progress=False)
