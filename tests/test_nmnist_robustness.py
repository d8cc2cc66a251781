"""N-MNIST readers on hostile input: size limits, damaged zips, odd folder entries, empty splits.

Each test reproduces a probe that once crashed or was accepted: a 1.35 MB file of 270,000 overflow
markers (2,212 s long), a zip member with a bad CRC or a corrupt deflate stream, a folder named x.bin and
a self-referencing symlink, an empty Train/. Every one must now be a DataError naming the culprit (exit
2 from the CLI, nothing recorded), and a bad file must be named and skipped under --skip-bad.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from snnbp.cli import main
from snnbp.data import nmnist_format
from snnbp.data.events import EVENT_DTYPE
from snnbp.data.nmnist import NMNIST, load_all
from snnbp.data.nmnist_format import (
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MAX_EVENTS,
    MAX_DURATION_ENV,
    MAX_EVENTS_ENV,
    OVERFLOW_Y,
    ReadLimits,
    decode_events,
    encode_events,
    read_events,
    read_limits,
    write_events,
)
from snnbp.errors import ConfigError, DataError

MARKER = bytes([0, OVERFLOW_Y, 0, 0, 0])  # one overflow marker: +8192 us for every later event


@pytest.fixture(autouse=True)
def _default_limits(monkeypatch):
    """Every test starts from the built-in limits, whatever the caller's environment says."""
    monkeypatch.delenv(MAX_DURATION_ENV, raising=False)
    monkeypatch.delenv(MAX_EVENTS_ENV, raising=False)


def events_of(n: int, seed: int = 0, t_max_us: int = 300_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"], events["y"], events["p"] = rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n)
    events["t"] = np.sort(rng.integers(0, t_max_us, n))
    return events


def make_tree(root: Path, splits=("Train", "Test")) -> None:
    """One small recording per class and split, written with the project's own writer."""
    for split in splits:
        for d in range(10):
            write_events(root / split / str(d) / f"{10 * d + 1:05d}.bin", events_of(50, seed=d))


def marker_stream(n_markers: int, n_events: int = 100) -> bytes:
    """``n_markers`` overflow markers then ``n_events`` events: lasts about n_markers x 8.192 ms."""
    return MARKER * n_markers + encode_events(events_of(n_events, seed=7))


def run_cli(argv, capsys) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def nmnist_cli(source: Path, root: Path, *extra: str) -> list[str]:
    return ["data", "nmnist", "--from", str(source), "--root", str(root), *extra]


# ------------------------------------------------------------------------------ probe 1: size limits


def test_defaults_are_far_above_real_nmnist():
    limits = read_limits()
    assert limits == ReadLimits(round(DEFAULT_MAX_DURATION_S * 1e6), DEFAULT_MAX_EVENTS)
    assert limits.max_duration_us >= 30 * 300_000 and limits.max_events >= 100 * 7_200  # real: 0.3 s, <7,200 events
    assert limits.max_bytes < 6_000_000  # the biggest accepted file stays small


def test_270000_markers_are_refused_at_decode():
    raw = marker_stream(270_000, 1_000)
    assert 1_350_000 <= len(raw) <= 1_360_000
    assert len(decode_events(raw)) == 1_000  # the bare codec is exact and unbounded
    with pytest.raises(DataError) as err:
        decode_events(raw, "Train/3/00031.bin", limits=read_limits())
    msg = str(err.value)
    assert msg.startswith("Train/3/00031.bin: lasts 2,212.1 s") and "past the limit of 10 s" in msg
    # 2,212 s is past what training can hold (int32 us), so raising the limit is not offered.
    assert "trim it or pass --skip-bad" in msg and "\n" not in msg


def test_duration_limit_names_the_value_to_raise_it_to(monkeypatch, tmp_path):
    raw = marker_stream(2_000)  # 2,000 x 8,192 us = 16.4 s
    path = tmp_path / "long.bin"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=rf"long.bin: lasts 16\.7 s .*past the limit of 10 s .*{MAX_DURATION_ENV}=17,"):
        read_events(path, limits=read_limits())
    monkeypatch.setenv(MAX_DURATION_ENV, "17")
    assert len(read_events(path, limits=read_limits())) == 100
    assert read_limits(max_duration_us=5_000_000).max_duration_us == 5_000_000  # a keyword beats the environment


def test_event_count_limit(monkeypatch):
    raw = encode_events(events_of(101))
    with pytest.raises(DataError, match=rf"f.bin: holds 101 events, past the limit of 100 per .*{MAX_EVENTS_ENV}=101"):
        decode_events(raw, "f.bin", limits=read_limits(max_events=100))
    monkeypatch.setenv(MAX_EVENTS_ENV, "100")
    with pytest.raises(DataError, match="holds 101 events"):
        decode_events(raw, "f.bin", limits=read_limits())
    assert len(decode_events(raw, limits=read_limits(max_events=101))) == 101


def test_too_big_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "huge.bin"
    with open(path, "wb") as f:
        f.truncate(50_000_000)  # ten times what any accepted recording can take (sparse where supported)
    monkeypatch.setattr(nmnist_format, "open", lambda *a, **k: pytest.fail("the file was opened"), raising=False)
    with pytest.raises(DataError, match=rf"huge.bin: 50,000,000 bytes is more than the 5,006,105 bytes .*"
                                        rf"{MAX_EVENTS_ENV}=10000000"):
        read_events(path, limits=read_limits())


@pytest.mark.parametrize("var, value", [(MAX_DURATION_ENV, "abc"), (MAX_DURATION_ENV, "-1"), (MAX_DURATION_ENV, "nan"),
                                        (MAX_EVENTS_ENV, "1.5"), (MAX_EVENTS_ENV, "0"), (MAX_DURATION_ENV, "3000")])
def test_bad_environment_values_are_config_errors(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        read_limits()


def test_show_refuses_a_long_recording_without_growing(tmp_path, capsys):
    path = tmp_path / "long.bin"
    path.write_bytes(marker_stream(270_000))
    rc, _, err = run_cli(["show", str(path), "--out", str(tmp_path / "fig")], capsys)
    assert rc == 2 and "long.bin: lasts 2,212.1 s" in err and "Traceback" not in err
    assert not (tmp_path / "fig").exists()


def test_show_caps_the_gif_even_with_a_raised_limit(tmp_path, capsys, monkeypatch):
    path = tmp_path / "long.bin"
    path.write_bytes(marker_stream(2_000))  # 16.7 s: 1,669 frames of 10 ms
    monkeypatch.setenv(MAX_DURATION_ENV, "20")
    rc, _, err = run_cli(["show", str(path), "--out", str(tmp_path / "fig")], capsys)
    assert rc == 2 and "more than 1,500; pass --frame-ms 12 or more" in err
    rc, _, err = run_cli(["show", str(path), "--out", str(tmp_path / "fig"), "--frames", "100000"], capsys)
    assert rc == 2 and "--frames must be 1..60" in err


def test_data_nmnist_treats_a_long_recording_as_bad(tmp_path, capsys):
    make_tree(tmp_path / "data")
    (tmp_path / "data/Train/3/00031.bin").write_bytes(marker_stream(270_000))
    root = tmp_path / "root"
    rc, out, err = run_cli(nmnist_cli(tmp_path / "data", root), capsys)
    assert rc == 2 and "1 corrupt N-MNIST file(s)" in err
    assert "bad: Train/3/00031.bin: lasts 2,212.1 s" in out
    assert not (root / "nmnist").exists()
    rc, out, _ = run_cli(nmnist_cli(tmp_path / "data", root, "--skip-bad"), capsys)
    assert rc == 0
    record = json.loads((root / "nmnist/index.json").read_text())
    assert record["splits"]["train"]["files"] == 9
    assert record["splits"]["train"]["bad"][0][0] == "Train/3/00031.bin"
    assert record["limits"] == {"max_duration_us": 10_000_000, "max_events": 1_000_000}
    # Training reads it the same way: the long file is skipped, not an int32 overflow later.
    arrays = load_all(NMNIST(tmp_path / "data", on_bad="skip"), progress=False)
    assert len(arrays.labels) == 9


def test_data_nmnist_with_a_bad_environment_records_nothing(tmp_path, capsys, monkeypatch):
    make_tree(tmp_path / "data")
    monkeypatch.setenv(MAX_EVENTS_ENV, "lots")
    rc, _, err = run_cli(nmnist_cli(tmp_path / "data", tmp_path / "root"), capsys)
    assert rc == 2 and f"{MAX_EVENTS_ENV} must be a positive whole number, got 'lots'" in err
    assert not (tmp_path / "root/nmnist").exists()


# ------------------------------------------------------------------------------- probe 2: damaged zips


def zip_split(root: Path, zip_path: Path, split: str, method=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(zip_path, "w", method) as z:
        for f in sorted((root / split).rglob("*.bin")):
            z.write(f, f"{split}/{f.relative_to(root / split).as_posix()}")
    return zip_path


def data_offset(raw: bytes, info: zipfile.ZipInfo) -> int:
    """Where a member's (compressed) data starts: after its local header, name and extra field."""
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def damage_member(zip_path: Path, member: str, fault: str) -> None:
    """fault "crc": change stored bytes (the CRC no longer matches); "deflate": scramble the compressed stream."""
    with zipfile.ZipFile(zip_path) as z:
        info = z.getinfo(member)
    raw = bytearray(zip_path.read_bytes())
    start = data_offset(raw, info)
    if fault == "crc":
        raw[start + 7] ^= 0xFF  # inside event 1: still 5-byte records, only the CRC tells
    else:
        for i in range(start + 2, start + 20):
            raw[i] ^= 0x5A
    zip_path.write_bytes(bytes(raw))


@pytest.fixture
def zips(tmp_path) -> Path:
    make_tree(tmp_path / "data")
    out = tmp_path / "zips"
    out.mkdir()
    zip_split(tmp_path / "data", out / "Test.zip", "Test")
    return out


@pytest.mark.parametrize("fault, method, detail", [("crc", zipfile.ZIP_STORED, "Bad CRC-32"),
                                                   ("deflate", zipfile.ZIP_DEFLATED, "")])
def test_damaged_zip_member_is_a_bad_file(tmp_path, zips, capsys, fault, method, detail):
    zip_split(tmp_path / "data", zips / "Train.zip", "Train", method)
    damage_member(zips / "Train.zip", "Train/4/00041.bin", fault)
    where = f"{zips / 'Train.zip'}::Train/4/00041.bin"
    ds = NMNIST(zips)
    with pytest.raises(DataError, match=rf"^{where}: cannot be read from the zip \(.*{detail}.*\); the zip is damaged"):
        ds[4]
    skipping = NMNIST(zips, on_bad="skip")
    assert len(skipping) == 9 and [name for name, _ in skipping.skipped] == ["Train/4/00041.bin"]

    root = tmp_path / "root"
    rc, out, err = run_cli(nmnist_cli(zips, root), capsys)
    assert rc == 2 and "1 corrupt N-MNIST file(s)" in err and f"bad: {where}: cannot be read" in out
    assert "Traceback" not in err and not (root / "nmnist").exists()
    rc, out, _ = run_cli(nmnist_cli(zips, root, "--skip-bad"), capsys)
    assert rc == 0 and "1 bad file(s) skipped" in out
    assert json.loads((root / "nmnist/index.json").read_text())["splits"]["train"]["files"] == 9


def test_zip_member_too_big_is_refused_unread(tmp_path):
    make_tree(tmp_path / "data", splits=("Train",))
    zip_split(tmp_path / "data", tmp_path / "Train.zip", "Train")
    ds = NMNIST(tmp_path / "Train.zip", limits=ReadLimits(max_duration_us=8_192, max_events=5))  # max 35 bytes
    with pytest.raises(DataError, match=r"Train.zip::Train/0/00001.bin: 250 bytes is more than the 35 bytes"):
        ds[0]


@pytest.mark.parametrize("content", ["garbage", "truncated", "bad central directory"])
def test_unreadable_zip_is_a_data_error(tmp_path, zips, capsys, content):
    good = zip_split(tmp_path / "data", tmp_path / "good.zip", "Train").read_bytes()
    if content == "garbage":
        raw = b"this is not a zip file at all" * 10
    elif content == "truncated":
        raw = good[: len(good) // 2]
    else:  # keep the end record, scramble the central directory it points at
        cd = good.rfind(b"PK\x01\x02", 0, good.rfind(b"PK\x05\x06"))
        raw = good[:cd] + bytes(b ^ 0xA5 for b in good[cd : cd + 40]) + good[cd + 40 :]
    (zips / "Train.zip").write_bytes(raw)
    with pytest.raises(DataError, match="not a readable zip file"):
        NMNIST(zips / "Train.zip")
    rc, _, err = run_cli(nmnist_cli(zips, tmp_path / "root"), capsys)
    assert rc == 2 and "Train.zip" in err and "Traceback" not in err
    assert not (tmp_path / "root/nmnist").exists()


def test_random_zip_damage_is_always_a_data_error(tmp_path):
    """Flip random bytes anywhere in a small zip: every outcome is a dataset or a DataError."""
    make_tree(tmp_path / "data", splits=("Train",))
    good = zip_split(tmp_path / "data", tmp_path / "good.zip", "Train").read_bytes()
    rng = np.random.default_rng(0)
    outcomes = {"ok": 0, "DataError": 0}
    for k in range(150):
        raw = bytearray(good)
        for pos in rng.integers(0, len(raw), int(rng.integers(1, 4))):
            raw[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"Train{k}.zip"
        path.write_bytes(bytes(raw))
        try:
            ds = NMNIST(path, on_bad="skip")
            load_all(ds, progress=False)
            outcomes["ok"] += 1
        except DataError:
            outcomes["DataError"] += 1
        path.unlink()
    assert outcomes["ok"] and outcomes["DataError"]


# ------------------------------------------------------------------------ probe 3: odd folder entries


def test_folder_and_symlink_loop_named_bin_are_bad_files(tmp_path, capsys):
    make_tree(tmp_path / "data")
    train = tmp_path / "data/Train"
    (train / "2/x.bin").mkdir()
    os.symlink("loop.bin", train / "5/loop.bin")
    ds = NMNIST(tmp_path / "data")
    names = ds.names
    assert "Train/2/x.bin" in names and "Train/5/loop.bin" in names
    with pytest.raises(DataError, match=rf"^{train / '2/x.bin'}: is a folder, not an N-MNIST recording"):
        ds[names.index("Train/2/x.bin")]
    with pytest.raises(DataError, match=rf"^{train / '5/loop.bin'}: cannot be read \(.+\)"):
        ds[names.index("Train/5/loop.bin")]
    assert [n for n, _ in NMNIST(tmp_path / "data", on_bad="skip").skipped] == ["Train/2/x.bin", "Train/5/loop.bin"]

    root = tmp_path / "root"
    rc, out, err = run_cli(nmnist_cli(tmp_path / "data", root), capsys)
    assert rc == 2 and "2 corrupt N-MNIST file(s)" in err and "Traceback" not in err
    assert f"bad: {train / '2/x.bin'}: is a folder" in out and f"bad: {train / '5/loop.bin'}: cannot be read" in out
    assert not (root / "nmnist").exists()
    rc, out, _ = run_cli(nmnist_cli(tmp_path / "data", root, "--skip-bad"), capsys)
    assert rc == 0 and "2 bad file(s) skipped" in out

    for entry, message in [("2/x.bin", "is a folder"), ("5/loop.bin", "cannot be read")]:
        rc, _, err = run_cli(["show", str(train / entry), "--out", str(tmp_path / "fig")], capsys)
        assert rc == 2 and message in err and "Traceback" not in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_refused_without_blocking(tmp_path):
    make_tree(tmp_path / "data", splits=("Train",))
    os.mkfifo(tmp_path / "data/Train/1/pipe.bin")
    ds = NMNIST(tmp_path / "data", on_bad="skip")
    assert ds.skipped[0][0] == "Train/1/pipe.bin" and "is not a regular file" in ds.skipped[0][1]


# --------------------------------------------------------------------------------- probe 4: empty splits


@pytest.fixture
def recorded(tmp_path, capsys) -> tuple[Path, bytes]:
    """A data root holding a good earlier record, which a failing run must leave byte for byte."""
    make_tree(tmp_path / "good")
    root = tmp_path / "root"
    assert main(nmnist_cli(tmp_path / "good", root)) == 0
    capsys.readouterr()
    return root, (root / "nmnist/index.json").read_bytes()


def _empty_train(data: Path) -> None:
    (data / "Train").mkdir()


def _looping_class_folders(data: Path) -> None:
    (data / "Train").mkdir()
    for d in range(10):
        os.symlink(str(d), data / "Train" / str(d))  # Train/0 -> Train/0


def _looping_train(data: Path) -> None:
    os.symlink("Train", data / "Train")


@pytest.mark.parametrize("build, message", [
    (_empty_train, r"no recordings found under .*/data/Train; check the path"),
    (_looping_class_folders, r"no recordings found under .*/data/Train \(class folder\(s\) 0 1 2 3 4 5 6 7 8 9: .+\); "
                             r"check the path"),
    (_looping_train, r"data/Train cannot be opened \(a symlink loop or a dangling link\)"),
])
def test_train_without_recordings_fails_and_records_nothing(tmp_path, capsys, recorded, build, message):
    root, before = recorded
    make_tree(tmp_path / "data", splits=("Test",))
    build(tmp_path / "data")
    with pytest.raises(DataError, match=message):
        NMNIST(tmp_path / "data", "train")
    for extra in ((), ("--skip-bad",)):
        rc, _, err = run_cli(nmnist_cli(tmp_path / "data", root, *extra), capsys)
        assert rc == 2 and "Traceback" not in err
        assert (root / "nmnist/index.json").read_bytes() == before


def test_zip_without_recordings_fails(tmp_path, capsys, recorded):
    root, before = recorded
    with zipfile.ZipFile(tmp_path / "Train.zip", "w") as z:
        z.writestr("Train/readme.txt", "nothing here")
    with pytest.raises(DataError, match=r"no recordings found under .*Train.zip; check the path"):
        NMNIST(tmp_path / "Train.zip")
    rc, _, err = run_cli(nmnist_cli(tmp_path / "Train.zip", root), capsys)
    assert rc == 2 and "no recordings found" in err
    assert (root / "nmnist/index.json").read_bytes() == before


def test_split_of_only_bad_files_fails_even_with_skip_bad(tmp_path, capsys, recorded):
    root, before = recorded
    make_tree(tmp_path / "data")
    for f in (tmp_path / "data/Train").rglob("*.bin"):
        f.write_bytes(f.read_bytes()[:-1])
    rc, _, err = run_cli(nmnist_cli(tmp_path / "data", root, "--skip-bad"), capsys)
    assert rc == 2 and "every one of the 10 Train recordings" in err
    assert (root / "nmnist/index.json").read_bytes() == before


def test_from_a_symlink_loop_fails(tmp_path, capsys):
    os.symlink("loop", tmp_path / "loop")
    rc, _, err = run_cli(nmnist_cli(tmp_path / "loop", tmp_path / "root"), capsys)
    assert rc == 2 and "does not exist or cannot be followed" in err and "Traceback" not in err


def test_a_missing_split_is_still_only_reported(tmp_path, capsys):
    """Absent (not damaged) splits keep working: Train alone is recorded, Test reported as not found."""
    make_tree(tmp_path / "data", splits=("Train",))
    rc, out, _ = run_cli(nmnist_cli(tmp_path / "data", tmp_path / "root"), capsys)
    assert rc == 0 and "Test: not found" in out
