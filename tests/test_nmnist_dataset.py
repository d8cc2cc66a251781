"""N-MNIST dataset: folder and zip sources, subsets, bad files, preloading, crops, `snnbp data nmnist`."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest

from snnbp.cli import main
from snnbp.data import nmnist as nm
from snnbp.data.events import EVENT_DTYPE, events_to_channels
from snnbp.data.nmnist import NMNIST, crop_events, load_all
from snnbp.data.nmnist_format import write_events
from snnbp.data.paths import resolve_nmnist
from snnbp.errors import DataError

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/nmnist-sample"
needs_sample = pytest.mark.skipif(not (SAMPLE / "Train").is_dir(), reason=f"real N-MNIST sample not found at {SAMPLE}")


def random_events(rng: np.random.Generator, n: int) -> np.ndarray:
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"], events["y"] = rng.integers(0, 34, n), rng.integers(0, 34, n)
    events["p"], events["t"] = rng.integers(0, 2, n), np.sort(rng.integers(0, 300_000, n))
    return events


def make_tree(root: Path, per_class: int = 2, splits=("Train", "Test"), digits=range(10), seed: int = 0) -> dict:
    """Write a tiny N-MNIST tree with our own writer; return {name: events}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split in splits:
        for d in digits:
            for k in range(per_class):
                name = f"{split}/{d}/{10 * d + k + 1:05d}.bin"
                written[name] = random_events(rng, int(rng.integers(50, 400)))
                write_events(root / name, written[name])
    return written


def zip_tree(root: Path, zip_path: Path, split: str, prefix: str | None = None) -> Path:
    """Zip root/<split> as the official archive does (members under ``<split>/``) or with another prefix."""
    prefix = split if prefix is None else prefix
    with zipfile.ZipFile(zip_path, "w") as z:
        for f in sorted((root / split).rglob("*.bin")):
            rel = f.relative_to(root / split).as_posix()
            z.write(f, f"{prefix}/{rel}" if prefix else rel)
    return zip_path


def corrupt(path: Path, fault: str) -> None:
    raw = bytearray(path.read_bytes())
    if fault == "size":
        raw = raw[:-2]
    elif fault == "x":
        raw[5] = 40  # x of event 1
    elif fault == "time":
        raw[5 * 3 + 2 : 5 * 3 + 5] = b"\x7f\xff\xff"  # event 3 at 2**23 - 1 us, event 4 then goes back in time
    path.write_bytes(bytes(raw))


# ----------------------------------------------------------------------------------------------- sources


def test_folder_and_zip_give_identical_datasets(tmp_path):
    written = make_tree(tmp_path / "data")
    zips = tmp_path / "zips"
    zips.mkdir()
    zip_tree(tmp_path / "data", zips / "Train.zip", "Train")
    zip_tree(tmp_path / "data", zips / "Test.zip", "Test", prefix="")  # no top-level folder inside
    for split in ("train", "test"):
        a, b = NMNIST(tmp_path / "data", split), NMNIST(zips, split)
        assert a.names == b.names and len(a) == 20
        np.testing.assert_array_equal(a.labels, b.labels)
        for i in range(len(a)):
            np.testing.assert_array_equal(a[i][0], b[i][0])
            np.testing.assert_array_equal(a[i][0], written[a.names[i]])
        for x, y in zip(load_all(a, progress=False), load_all(b, progress=False)):
            np.testing.assert_array_equal(x, y)


def test_zip_given_directly_and_zip_holding_both_splits(tmp_path):
    make_tree(tmp_path / "data")
    train_zip = zip_tree(tmp_path / "data", tmp_path / "Train.zip", "Train")
    assert len(NMNIST(train_zip, "train")) == 20
    with pytest.raises(DataError, match="holds no Test recordings"):
        NMNIST(train_zip, "test")
    both = tmp_path / "nmnist.zip"
    with zipfile.ZipFile(both, "w") as z:
        for f in sorted((tmp_path / "data").rglob("*.bin")):
            z.write(f, "N-MNIST/" + f.relative_to(tmp_path / "data").as_posix())
    assert NMNIST(both, "test").names == NMNIST(tmp_path / "data", "test").names


def test_split_folder_itself_and_its_sibling(tmp_path):
    make_tree(tmp_path)
    assert NMNIST(tmp_path / "Train", "train").names == NMNIST(tmp_path, "train").names
    assert NMNIST(tmp_path / "Train", "test").names[0] == "Test/0/00001.bin"  # looked beside Train/


def test_missing_split_or_path_is_a_data_error(tmp_path):
    make_tree(tmp_path, splits=("Train",))
    with pytest.raises(DataError, match="no Test/ folder or Test.zip"):
        NMNIST(tmp_path, "test")
    with pytest.raises(DataError, match="does not exist"):
        NMNIST(tmp_path / "absent", "train")
    with pytest.raises(DataError, match="split must be"):
        NMNIST(tmp_path, "valid")


def test_subsets(tmp_path):
    make_tree(tmp_path, per_class=3, splits=("Train",))
    few = NMNIST(tmp_path, files=["3/00031.bin", "Train/7/00072.bin", "0/00003.bin"])
    assert few.names == ["Train/0/00003.bin", "Train/3/00031.bin", "Train/7/00072.bin"]
    assert few.labels.tolist() == [0, 3, 7]
    assert len(few[2][0]) > 0 and few[2][1] == 7
    assert NMNIST(tmp_path, digits=[2, 5]).counts() == {**dict.fromkeys(nm.CLASSES, 0), "2": 3, "5": 3}
    limited = NMNIST(tmp_path, limit_per_class=1)
    assert len(limited) == 10 and all(n.endswith("1.bin") for n in limited.names)
    with pytest.raises(DataError, match="Train/4/00099.bin .* not found"):
        NMNIST(tmp_path, files=["4/00099.bin"])


def test_dataset_attributes(tmp_path):
    make_tree(tmp_path, per_class=1, splits=("Train",))
    ds = NMNIST(tmp_path)
    assert ds.sensor_size.width == 34 and ds.sensor_size.height == 34 and ds.sensor_size.polarities == 2
    assert ds.classes == tuple("0123456789")
    assert Path(ds.paths[3]) == tmp_path / "Train/3/00031.bin"
    assert ds.labels.dtype == np.int64


# --------------------------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("fault, match", [("size", "not a multiple of 5"), ("x", "x = 40 at event 1"),
                                          ("time", "timestamp decreases at event 4")])
def test_each_fault_raises_when_read(tmp_path, fault, match):
    make_tree(tmp_path, per_class=1, splits=("Train",))
    corrupt(tmp_path / "Train/5/00051.bin", fault)
    ds = NMNIST(tmp_path)  # on_bad="error": found when read, naming the file
    assert len(ds) == 10
    with pytest.raises(DataError, match=rf"Train/5/00051.bin: .*{match}"):
        ds[5]
    with pytest.raises(DataError, match="Train/5/00051.bin"):
        load_all(ds, progress=False)


def test_skip_counts_every_bad_file(tmp_path, caplog):
    make_tree(tmp_path, per_class=2, splits=("Train",))
    for name, fault in [("1/00011.bin", "size"), ("4/00042.bin", "x"), ("9/00091.bin", "time")]:
        corrupt(tmp_path / "Train" / name, fault)
    with caplog.at_level(logging.WARNING, logger="snnbp.data.nmnist"):
        ds = NMNIST(tmp_path, on_bad="skip")
    assert len(ds) == 17
    assert [name for name, _ in ds.skipped] == ["Train/1/00011.bin", "Train/4/00042.bin", "Train/9/00091.bin"]
    assert "not a multiple of 5" in ds.skipped[0][1] and "timestamp decreases" in ds.skipped[2][1]
    assert "skipped 3 bad N-MNIST file(s) of 20" in caplog.text
    arrays = load_all(ds, progress=False)
    assert len(arrays.labels) == 17 and np.bincount(arrays.labels).tolist() == [2, 1, 2, 2, 1, 2, 2, 2, 2, 1]


# ----------------------------------------------------------------------------------------------- preload


def test_load_all_matches_per_sample_reads(tmp_path):
    written = make_tree(tmp_path, per_class=1, splits=("Test",))
    ds = NMNIST(tmp_path, "test")
    channels, times, offsets, labels = load_all(ds, progress=False)
    assert (channels.dtype, times.dtype, offsets.dtype, labels.dtype) == (np.int16, np.int32, np.int64, np.int64)
    assert offsets[0] == 0 and offsets[-1] == len(channels) == sum(len(e) for e in written.values())
    for b, name in enumerate(ds.names):
        s, e = offsets[b], offsets[b + 1]
        np.testing.assert_array_equal(channels[s:e], events_to_channels(written[name], ds.sensor_size))
        np.testing.assert_array_equal(times[s:e], written[name]["t"])
    assert labels.tolist() == list(range(10))


def test_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    make_tree(tmp_path / "d", per_class=1, splits=("Train",))
    cache = tmp_path / "cache"
    first = NMNIST(tmp_path / "d").to_event_batch_arrays(progress=False, cache_dir=cache)
    assert len(list(cache.glob("nmnist-train-*.npz"))) == 1
    monkeypatch.setattr(nm, "_read_all", lambda *a: pytest.fail("cache not used"))
    again = load_all(NMNIST(tmp_path / "d"), progress=False, cache_dir=cache)
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    monkeypatch.undo()
    # A different file list is a different key: a subset gets its own cache file.
    load_all(NMNIST(tmp_path / "d", digits=[1]), progress=False, cache_dir=cache)
    assert len(list(cache.glob("nmnist-train-*.npz"))) == 2


# ----------------------------------------------------------------------------------------------- crops


def test_crops_have_300_events_inside_the_stream():
    rng = np.random.default_rng(0)
    n = np.array([300, 301, 1_000, 5_000] * 500)
    start, stop = crop_events(n, 300, rng)
    assert np.all(stop - start == 300)
    assert np.all(start >= 0) and np.all(stop <= n)
    assert np.all(start[n == 300] == 0)
    starts_301 = start[n == 301]
    assert set(starts_301.tolist()) == {0, 1}  # both possible starts occur
    s1000 = start[n == 1_000]
    assert s1000.min() < 50 and s1000.max() > 650  # uniform over 0..700, not stuck at the start


def test_crop_of_short_stream_is_the_whole_stream():
    assert crop_events(120, 300, np.random.default_rng(1)) == (0, 120)
    assert crop_events(0, 300, np.random.default_rng(1)) == (0, 0)
    start, stop = crop_events(4_000, 300, np.random.default_rng(2))
    assert isinstance(start, int) and stop - start == 300 and 0 <= start <= 3_700


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_from_records_an_index(tmp_path, capsys):
    make_tree(tmp_path / "data", per_class=1)
    root = tmp_path / "root"
    assert main(["data", "nmnist", "--from", str(tmp_path / "data"), "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "Train: 10 recordings" in out and "Test: 10 recordings" in out and "0:1 1:1" in out
    record = json.loads((root / "nmnist/index.json").read_text())
    assert record["kind"] == "real" and record["splits"]["test"]["files"] == 10
    assert record["splits"]["train"]["per_class"]["9"] == 1
    assert resolve_nmnist(root, split="test") == (tmp_path / "data").resolve()
    assert len(NMNIST(resolve_nmnist(root), "test")) == 10


def test_cli_from_a_lone_zip_with_its_sibling(tmp_path, capsys):
    make_tree(tmp_path / "data", per_class=1)
    zip_tree(tmp_path / "data", tmp_path / "Train.zip", "Train")
    zip_tree(tmp_path / "data", tmp_path / "Test.zip", "Test")
    assert main(["data", "nmnist", "--from", str(tmp_path / "Train.zip"), "--root", str(tmp_path / "r")]) == 0
    assert resolve_nmnist(tmp_path / "r") == tmp_path.resolve()
    assert "Test: 10 recordings from" in capsys.readouterr().out


def test_cli_from_refuses_bad_files_unless_skip_bad(tmp_path, capsys):
    make_tree(tmp_path / "data", per_class=1, splits=("Train",))
    corrupt(tmp_path / "data/Train/2/00021.bin", "x")
    root = tmp_path / "root"
    assert main(["data", "nmnist", "--from", str(tmp_path / "data"), "--root", str(root)]) == 2
    captured = capsys.readouterr()
    assert "1 corrupt N-MNIST file(s)" in captured.err and "--skip-bad" in captured.err
    assert "Train/2/00021.bin" in captured.out and "Test: not found" in captured.out
    assert not (root / "nmnist/index.json").exists()
    assert main(["data", "nmnist", "--from", str(tmp_path / "data"), "--root", str(root), "--skip-bad"]) == 0
    record = json.loads((root / "nmnist/index.json").read_text())
    assert record["splits"]["train"]["files"] == 9 and record["splits"]["train"]["bad"][0][0] == "Train/2/00021.bin"
    with pytest.raises(DataError, match="has no Test split"):
        resolve_nmnist(root, split="test")


def test_cli_needs_exactly_one_source(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["data", "nmnist", "--root", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["data", "nmnist", "--from", str(tmp_path), "--synthetic"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_cli_synthetic_calls_the_generator(tmp_path, monkeypatch, capsys):
    import snnbp.data.synthetic.writer as synth

    calls = {}

    def fake_generate(root, mnist_root=None, seed=0, limit=None, workers=None, progress=True):
        calls.update(root=root, seed=seed, limit=limit)
        out = Path(root) / "nmnist-synthetic"
        make_tree(out, per_class=1)
        (out / "SYNTHETIC.json").write_text(json.dumps({"complete": True}))
        return out

    monkeypatch.setattr(synth, "generate_synthetic_nmnist", fake_generate)
    assert main(["data", "nmnist", "--synthetic", "--root", str(tmp_path), "--limit", "20", "--seed", "3"]) == 0
    assert calls == {"root": tmp_path, "seed": 3, "limit": 20}
    assert "Train: 10 recordings" in capsys.readouterr().out
    assert resolve_nmnist(tmp_path, kind="synthetic") == tmp_path / "nmnist-synthetic"


def test_resolve_says_which_command_to_run(tmp_path):
    with pytest.raises(DataError, match=r"snnbp data nmnist --from DIR_OR_ZIP"):
        resolve_nmnist(tmp_path)
    with pytest.raises(DataError, match=r"snnbp data nmnist --synthetic"):
        resolve_nmnist(tmp_path, kind="synthetic")


# ----------------------------------------------------------------------------------------------- real data


@needs_sample
def test_real_sample_from_folder_and_zip(tmp_path):
    ds = NMNIST(SAMPLE)
    assert len(ds) == 20 and ds.counts() == dict.fromkeys(nm.CLASSES, 2)
    zip_tree(SAMPLE, tmp_path / "Train.zip", "Train")
    from_zip = NMNIST(tmp_path / "Train.zip")
    assert from_zip.names == ds.names
    for x, y in zip(load_all(ds, progress=False), load_all(from_zip, progress=False)):
        np.testing.assert_array_equal(x, y)
    three = NMNIST(SAMPLE, files=["0/00002.bin", "5/00001.bin", "9/00020.bin"])
    assert len(three) == 3 and three.labels.tolist() == [0, 5, 9]
    events, label = three[1]
    start, stop = crop_events(len(events), 300, np.random.default_rng(0))
    assert stop - start == 300 and len(events[start:stop]) == 300 and label == 5
