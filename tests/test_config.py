"""Config: defaults <- TOML <- --set; unknown keys and wrong types are errors naming the key."""

from __future__ import annotations

import pytest

from snnbp.errors import ConfigError
from snnbp.config import load_config, parse_override, to_toml


def test_overrides_parse_toml_values():
    assert parse_override("optim.lr=0.002") == {"optim": {"lr": 0.002}}
    assert parse_override("model.hidden=[500, 500]") == {"model": {"hidden": [500, 500]}}
    assert parse_override("data.source=mnist") == {"data": {"source": "mnist"}}


def test_file_then_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('name = "x"\n[optim]\nlr = 0.001\n[model]\nhidden = [100]\nkappa = [-0.4, -1.0]\n')
    cfg = load_config(p, ["optim.lr=0.003", "train.epochs=2"])
    assert cfg.name == "x" and cfg.optim.lr == 0.003 and cfg.model.hidden == [100] and cfg.train.epochs == 2


def test_unknown_key_names_the_key():
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config(None, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="nosection"):
        load_config(None, ["nosection.x=1"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="optim.batch_size"):
        load_config(None, ["optim.batch_size=\"ten\""])
    with pytest.raises(ConfigError, match="model.hidden"):
        load_config(None, ["model.hidden=[\"a\"]"])


def test_inconsistent_values_are_rejected():
    with pytest.raises(ConfigError, match="model.kappa"):
        load_config(None, ["model.hidden=[500, 500]"])  # kappa still has 2 entries, 3 layers now
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config(None, ["optim.lr=-1.0"])
    with pytest.raises(ConfigError, match="optim.lr_th_ratio needs 1 or 2 values"):
        load_config(None, ["optim.lr_th_ratio=[1.0, 1.0, 10.0]"])  # 784-800-10 has 2 layers
    with pytest.raises(ConfigError, match="optim.warmup_lr_th_ratio"):
        load_config(None, ["optim.warmup_lr_th_ratio=[-1.0]"])
    with pytest.raises(ConfigError, match="optim.threshold_optimizer must be 'same' or 'sgd'"):
        load_config(None, ["optim.threshold_optimizer='adam'"])


def test_threshold_rate_ratio_takes_one_value_or_one_per_layer():
    assert load_config(None, ["optim.lr_th_ratio=3.0"]).optim.lr_th_ratio == [3.0]  # a scalar, as before
    cfg = load_config(None, ["optim.lr_th_ratio=[1.0, 10.0]", "optim.warmup_lr_th_ratio=10.0"])
    assert cfg.optim.lr_th_ratio == [1.0, 10.0] and cfg.optim.warmup_lr_th_ratio == [10.0]


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["optim.lr=0.0025", "model.hidden=[300, 300]", "model.kappa=[-0.4, 0.0, -1.0]"])
    p = tmp_path / "resolved.toml"
    p.write_text(to_toml(cfg))
    assert load_config(p) == cfg


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
