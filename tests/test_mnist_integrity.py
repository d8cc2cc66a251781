"""Training checks the MNIST it loads against the checksums `snnbp data mnist` recorded (tiny fake data)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import numpy as np
import pytest

from helpers_fake_mnist import write_fake_mnist
from snnbp.cli import main
from snnbp.config import load_config
from snnbp.data import integrity
from snnbp.data.idx import read_idx
from snnbp.data.mnist import FILE_NAMES, MnistFacts, load_mnist, mnist_dir
from snnbp.data.mnist_fetch import fetch_mnist
from snnbp.data.sources import make_source
from snnbp.errors import DataError

# What write_fake_mnist writes: 60 train and 20 test samples, labels 0,1,...,9,0,...
FAKE_FACTS = MnistFacts(
    train_count=60, test_count=20, first_train_label=0, first_test_label=0,
    train_histogram=None, test_histogram=None, idx_sha256=None,
)  # fmt: skip
TRAIN_IMAGES = FILE_NAMES[("train", "images")]
TRAIN_LABELS = FILE_NAMES[("train", "labels")]
HOUR_NS = 3600 * 10**9


def _source(root: Path):
    cfg = load_config(None, [f"data.root='{root}'"])
    return make_source(cfg.data, 0)


def _repair_command(root: Path) -> str:
    return f"snnbp data mnist --root {shlex.quote(str(root))}"


def _age(directory: Path) -> None:
    """Give the data files an mtime an hour back, then record them: the state of a cache made a while ago."""
    for name in FILE_NAMES.values():
        st = (directory / name).stat()
        os.utime(directory / name, ns=(st.st_atime_ns, st.st_mtime_ns - HOUR_NS))
    integrity.record_checksums(directory, FILE_NAMES.values())


def _edit(path: Path, offset: int, change) -> None:
    """Change one byte in place, keeping the size (the file stays a valid IDX file)."""
    data = bytearray(path.read_bytes())
    data[offset] = change(data[offset])
    path.write_bytes(bytes(data))


def _no_hashing(monkeypatch):
    def must_not_hash(path):
        raise AssertionError(f"{path} was hashed although its state matches the record")

    monkeypatch.setattr(integrity, "file_state", must_not_hash)


def test_recorded_fake_mnist_loads_and_the_record_names_every_file(tmp_path):
    root = write_fake_mnist(tmp_path / "data")
    record = json.loads((mnist_dir(root) / integrity.RECORD_NAME).read_text())
    assert record["format"] == 1 and record["from"] is None
    assert sorted(record["files"]) == sorted(FILE_NAMES.values())
    for name, entry in record["files"].items():
        st = (mnist_dir(root) / name).stat()
        assert (entry["size"], entry["mtime_ns"]) == (st.st_size, st.st_mtime_ns) and len(entry["sha256"]) == 64
    source = _source(root)
    assert source.train_images.shape == (60, 784) and source.test_labels.shape == (20,)


def test_flipped_pixels_are_refused_with_the_repair_command(tmp_path):
    root = write_fake_mnist(tmp_path / "data")
    path = mnist_dir(root) / TRAIN_IMAGES
    for pixel in (100, 2000, 30000):
        _edit(path, 16 + pixel, lambda v: 255 - v)
    assert read_idx(path).shape == (60, 28, 28)  # still a well-formed IDX file
    with pytest.raises(DataError) as info:
        _source(root)
    message = str(info.value)
    assert str(path) in message and "has changed since `snnbp data mnist` verified it" in message
    assert f"run `{_repair_command(root)}` to repair the cache" in message
    load_mnist("test", root)  # the untouched split still loads


def test_changed_label_stops_snnbp_train(tmp_path, capsys):
    root = write_fake_mnist(tmp_path / "data")
    path = mnist_dir(root) / TRAIN_LABELS
    _edit(path, 8 + 7, lambda v: (v + 1) % 10)  # label of sample 7, after the 8-byte header
    assert read_idx(path)[7] == 8
    rc = main(["train", "--out", str(tmp_path / "run"), "--set", f"data.root='{root}'", "--set", "train.epochs=1"])
    err = capsys.readouterr().err
    assert rc == 2 and not (tmp_path / "run" / "metrics.jsonl").exists()
    assert str(path) in err and _repair_command(root) in err
    assert len(err.strip().splitlines()) == 1  # one sentence, no traceback


def test_touched_but_unchanged_file_passes_and_is_re_recorded(tmp_path, monkeypatch):
    root = write_fake_mnist(tmp_path / "data")
    directory = mnist_dir(root)
    _age(directory)
    path = directory / TRAIN_IMAGES
    old = json.loads((directory / integrity.RECORD_NAME).read_text())["files"][TRAIN_IMAGES]
    os.utime(path, ns=(old["mtime_ns"] + 10**9, old["mtime_ns"] + 10**9))  # new mtime, same bytes
    images, _ = load_mnist("train", root)
    assert images.shape == (60, 28, 28)
    new = json.loads((directory / integrity.RECORD_NAME).read_text())["files"][TRAIN_IMAGES]
    assert new == dict(old, mtime_ns=old["mtime_ns"] + 10**9)
    _no_hashing(monkeypatch)  # the next load only stats the files
    load_mnist("train", root)
    load_mnist("test", root)


def test_unchanged_files_are_only_stat_ed(tmp_path, monkeypatch):
    root = write_fake_mnist(tmp_path / "data")
    _age(mnist_dir(root))
    _no_hashing(monkeypatch)
    _source(root)


def test_change_within_the_recorded_mtime_is_still_caught(tmp_path):
    # Same size, same mtime_ns as recorded (a write within one clock tick of the hashing): the stat alone
    # cannot tell, so files not older than the record are hashed again.
    root = write_fake_mnist(tmp_path / "data")
    directory = mnist_dir(root)
    path, record = directory / TRAIN_IMAGES, directory / integrity.RECORD_NAME
    tick = json.loads(record.read_text())["files"][TRAIN_IMAGES]["mtime_ns"]
    _edit(path, 16 + 500, lambda v: 255 - v)
    os.utime(path, ns=(tick, tick))
    os.utime(record, ns=(tick, tick))
    with pytest.raises(DataError, match="has changed since"):
        load_mnist("train", root)


def test_missing_record_is_refused_and_running_the_command_records_it(tmp_path):
    root = write_fake_mnist(tmp_path / "data")
    directory = mnist_dir(root)
    (directory / integrity.RECORD_NAME).unlink()  # an older cache, or files copied in by hand
    with pytest.raises(DataError) as info:
        _source(root)
    message = str(info.value)
    assert "have no checksum record" in message and str(directory) in message
    assert f"run `{_repair_command(root)}` once to verify and record them" in message
    assert f"`{_repair_command(root)} --from IDX_DIR`" in message
    # What the message says to run (offline, with the facts of this fake): it verifies and records.
    assert fetch_mnist(root, allow_network=False, progress=False, facts=FAKE_FACTS) == directory
    assert (directory / integrity.RECORD_NAME).is_file()
    _source(root)


def test_unusable_record_is_refused(tmp_path):
    root = write_fake_mnist(tmp_path / "data")
    record = mnist_dir(root) / integrity.RECORD_NAME
    record.write_text("{not json")
    with pytest.raises(DataError, match=r"checksum record .* is unusable .* run `snnbp data mnist --root"):
        load_mnist("train", root)
    record.write_text(json.dumps({"format": 1, "from": None, "files": {}}))
    with pytest.raises(DataError, match=f"no valid entry for {TRAIN_IMAGES}"):
        load_mnist("train", root)


def test_files_from_a_user_dir_name_it_in_the_repair_command_and_it_repairs(tmp_path):
    user = mnist_dir(write_fake_mnist(tmp_path / "user"))  # the user's own IDX files
    root = tmp_path / "data"
    directory = fetch_mnist(root, idx_dir=user, allow_network=False, progress=False, facts=FAKE_FACTS)
    assert json.loads((directory / integrity.RECORD_NAME).read_text())["from"] == str(user.resolve())
    good = load_mnist("train", root)[1].copy()
    _edit(directory / TRAIN_LABELS, 8, lambda v: 9)
    with pytest.raises(DataError) as info:
        load_mnist("train", root)
    message = str(info.value)
    assert f"run `{_repair_command(root)} --from {shlex.quote(str(user.resolve()))}` to restore it" in message
    # Running that command notices the change (although these fake facts alone would not) and rewrites.
    fetch_mnist(root, idx_dir=user, allow_network=False, progress=False, facts=FAKE_FACTS)
    np.testing.assert_array_equal(load_mnist("train", root)[1], good)


def test_changed_cache_is_rebuilt_by_snnbp_data_mnist(tmp_path, capsys):
    user = mnist_dir(write_fake_mnist(tmp_path / "user"))
    root = tmp_path / "data"
    fetch_mnist(root, idx_dir=user, allow_network=False, progress=False, facts=FAKE_FACTS)
    _edit(mnist_dir(root) / TRAIN_IMAGES, 16, lambda v: 1)
    fetch_mnist(root, idx_dir=user, allow_network=False, progress=True, facts=FAKE_FACTS)
    assert "differs from its recorded checksum" in capsys.readouterr().err
    np.testing.assert_array_equal(load_mnist("train", root)[0], read_idx(user / TRAIN_IMAGES))
