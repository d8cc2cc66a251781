"""Property tests (hypothesis) for the config parser and the checkpoint loader: any input gives a valid
result or the project's own error (ConfigError, DataError), never another exception."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from snnbp.config import Config, load_config, to_dict
from snnbp.errors import ConfigError, DataError
from snnbp.model import Network
from snnbp.serialization import load_checkpoint, save_checkpoint

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = [f"{s}.{k}" for s, v in to_dict(Config()).items() if isinstance(v, dict) for k in v] + ["name", "model", "x.y"]
SCALARS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.text(max_size=8))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4))


def _valid(cfg: Config) -> None:
    """What a returned config promises: every float finite, every shape list non-empty where needed."""
    for section, values in to_dict(cfg).items():
        for v in (values.values() if isinstance(values, dict) else [values]):
            for x in (v if isinstance(v, list) else [v]):
                if isinstance(x, float):
                    assert math.isfinite(x), (section, v)
    assert cfg.train.epochs >= 1 and cfg.optim.lr > 0 and cfg.data.rate_hz > 0


@FAST
@given(st.lists(st.tuples(st.sampled_from(KEYS), st.text(max_size=12)), max_size=4))
def test_overrides_from_any_text_give_a_config_or_a_config_error(pairs):
    try:
        cfg = load_config(None, [f"{k}={raw}" for k, raw in pairs])
    except ConfigError as err:
        assert "\n" not in str(err)
        return
    _valid(cfg)


@FAST
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=5))
def test_overrides_of_any_typed_value_give_a_config_or_a_config_error(pairs):
    try:
        cfg = load_config(None, [f"{k}={json.dumps(v)}" for k, v in pairs])
    except ConfigError:
        return
    _valid(cfg)


@FAST
@given(st.binary(max_size=200))
def test_a_config_file_of_any_bytes_gives_a_config_or_a_config_error(raw):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        path.write_bytes(raw)
        try:
            cfg = load_config(path)
        except ConfigError as err:
            assert str(path) in str(err)
            return
    _valid(cfg)


def _checkpoint_bytes() -> bytes:
    net = Network.create(6, [4, 3], [-0.4, -1.0], alpha=[3.0], seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.safetensors"
        save_checkpoint(path, net, {"optim.m.0": np.ones(3, np.float32)}, {"step": 1}, {"epoch": 1}, to_dict(Config()))
        return path.read_bytes()


VALID = _checkpoint_bytes()


@st.composite
def mutated_checkpoints(draw):
    raw = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, len(raw) - 1))
        if kind == "flip":
            raw[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del raw[at: at + draw(st.integers(1, 64))]
        else:
            raw[at:at] = draw(st.binary(min_size=1, max_size=16))
        if not raw:
            break
    return bytes(raw)


def _load(raw: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.safetensors"
        path.write_bytes(raw)
        try:
            return load_checkpoint(path)
        except DataError as err:
            assert str(path) in str(err) and "\n" not in str(err)
            return None


@FAST
@given(st.one_of(st.binary(max_size=300), mutated_checkpoints()))
def test_a_checkpoint_of_any_bytes_loads_as_a_network_or_is_a_data_error(raw):
    out = _load(raw)
    if out is None:
        return
    net = out[0]
    assert len(net.weights) == len(net.thresholds) == net.n_layers
    fan_in = net.n_inputs
    for w, th, n in zip(net.weights, net.thresholds, net.sizes):
        assert w.shape == (fan_in, n) and th.shape == (n,)  # Network.validate's promise
        fan_in = n


def test_the_unmutated_checkpoint_loads():
    assert _load(VALID) is not None
