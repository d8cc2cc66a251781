"""Run configuration: dataclasses are the single source of truth.

A config is built from the defaults below, then a TOML file, then ``--set section.key=value``
overrides. Unknown keys and wrong types raise ``ConfigError`` naming the key. The resolved config is
saved with every run (config.toml) and inside every checkpoint, so ``--resume`` and ``eval`` need no
other input.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snnbp.errors import ConfigError

DEFAULT_CONFIG = "quick-mnist-800.toml"  # the main job (`snnbp train` without a config)


def embedded_config(name: str) -> Path:
    """Path of a preset shipped inside the package (snnbp/configs/NAME), from any working directory."""
    from importlib import resources

    return Path(str(resources.files("snnbp") / "configs" / name))


@dataclass
class ModelConfig:
    """Network shape and neuron constants (docs/method.md 2, 4.1, 5)."""

    # "snn": the spiking network of the paper; "ann": the conventional baseline of the same shape (ReLU
    # MLP / CNN trained with cross-entropy on pixel intensities or event counts, snnbp/ann/); for "ann"
    # only hidden / layers / input_shape / seed of this section apply.
    kind: str = "snn"
    hidden: list[int] = field(default_factory=lambda: [800])
    # Layered network instead of hidden (then hidden = []): "conv:C:K", "pool:K", "fc:N" entries ending
    # with the output "fc:10", e.g. ["conv:20:5", "pool:2", "conv:50:5", "pool:2", "fc:200", "fc:10"];
    # conv/pool layers need train.engine = "dense" and model.input_shape (model.py, dense/conv.py).
    layers: list[str] = field(default_factory=list)
    input_shape: list[int] = field(default_factory=list)  # (P, H, W) of the input: [1, 28, 28] MNIST, [2, 34, 34] N-MNIST
    kappa: list[float] = field(default_factory=lambda: [-0.4, -1.0])  # per layer incl. output; 0 = no WTA
    alpha: list[float] = field(default_factory=lambda: [5.0])  # threshold init multiplier; one value or one per layer
    floor_alpha: float = 1.0  # threshold floor = floor_alpha * sqrt(3/M)
    tau_mp_ms: float = 20.0
    t_ref_ms: float = 1.0
    gamma: float = 1.0
    sigma: float = 0.5
    seed: int = 0


@dataclass
class DataConfig:
    """Where samples come from and how they are presented (docs/method.md 6)."""

    source: str = "mnist"  # mnist | nmnist | nmnist-synthetic
    root: str = ""  # data root; "" = $SNNBP_DATA or ~/.cache/snnbp
    path: str = ""  # nmnist: folder or zip (default: what `snnbp data nmnist` recorded)
    rate_hz: float = 5000.0  # Poisson total input rate per image
    train_ms: float = 50.0  # training presentation (MNIST)
    test_ms: float = 1000.0  # test presentation (MNIST)
    crop_events: int = 300  # N-MNIST training crop length in events
    train_limit: int = 0  # use only the first n training samples (0 = all)
    test_limit: int = 0  # use only the first n test samples (0 = all)
    skip_bad: bool = False  # N-MNIST: skip (and count) unreadable files instead of failing


@dataclass
class OptimConfig:
    """Learning rule and optimizer (docs/method.md 3.6-3.8, 4.3-4.4, 5)."""

    name: str = "sgd"  # sgd | adam
    lr: float = 0.004  # eta_w
    # eta_th = ratio * eta_w (the paper: 0.1 for SGD, 1 for Adam); one value, or one per layer
    lr_th_ratio: list[float] = field(default_factory=lambda: [0.1])
    # The ratio during the warm-up epoch (train.warmup_ms); [] = lr_th_ratio. One value or one per layer.
    warmup_lr_th_ratio: list[float] = field(default_factory=list)
    batch_size: int = 1  # 1 = per-sample updates as in the paper
    lam: float = 0.01  # lambda of the exponential weight regularizer (eq. 13)
    beta: float = 10.0
    rho: float = 1e-4  # threshold homeostasis
    decay_per_epoch: float = math.exp(-1.0 / 35.0)  # lr and rho multiplied by this after each epoch
    normalize: bool = True  # error normalization of eq. 11-12
    # A conv filter and its map's threshold are shared by the H'W' neurons of the map: "sum" adds the
    # eq. 12 terms of every location (the plain chain rule), "mean" divides by H'W', so a filter steps
    # like one fully connected neuron and eq. 13 (counted once per filter) keeps its weight. FC: no effect.
    shared_grad: str = "sum"
    # How eq. 13 meets the optimizer: "coupled" adds its gradient to the data gradient (what the
    # optimizer then rescales: Adam turns the tiny pull on a weight without data gradient into a full
    # step of size lr); "decoupled" applies it as its own step after the optimizer's, W_i / (1 + lr c_i)
    # (as AdamW decouples weight decay). Equal to first order under plain SGD.
    weight_reg: str = "coupled"
    # A threshold held at its floor raises the neuron's weights instead (4.4): "drive" by D / sum_k x_k
    # (same effect on the drive as the refused decrement D), "silent" the same for neurons that did not
    # fire in the sample only, "weight" by D (literal), "none" (docs/paper-readings.md 8).
    floor_compensation: str = "drive"
    # How the thresholds step: "same" as the weights (the paper: Adam on both, eta_th = eta_w), or
    # "sgd", plain gradient steps V_th -= eta_th g under optim.name = "adam" too. Per-sample Adam turns
    # the output thresholds' one-signed gradient into a step of ~eta_th every sample whatever its size,
    # so they climb without bound (docs/paper-readings.md 18-19). No effect under SGD.
    threshold_optimizer: str = "same"
    # Silent-unit revival (gradient/revival.py, a DEVIATION): a threshold group (neuron; conv: feature map)
    # silent in every one of the last revive_after training samples has its V_th multiplied by
    # exp(-revive_rate) per further silent sample, down to the floor; revive_rate follows the lr schedule.
    # 0 = off (the paper has no such rule; its homeostasis, rho, is what revives silent neurons).
    revive_after: int = 0
    revive_rate: float = 1e-4
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8


@dataclass
class TrainConfig:
    """The loop: epochs, budget, evaluation, checkpoints."""

    epochs: int = 200
    warmup_ms: float = 0.0  # >0: first epoch uses this presentation length (200 for 2-hidden-layer nets)
    max_minutes: float = 0.0  # stop training after this wall time (0 = no limit); a final eval follows
    eval_every: int = 1  # evaluate on the test set every n epochs (and always at the end)
    eval_last: int = 20  # ...and after each of the last n epochs (for the [min, mean, max] statistic)
    chunk: int = 2000  # samples per compiled call (progress granularity)
    # Without a terminal (nohup, CI) the progress bar is off; a progress line is logged instead at most
    # every this many seconds of wall time, after a chunk (0 = never).
    log_every_s: float = 60.0
    seed: int = 0
    max_rate_hz: float = 2000.0  # stop if the mean hidden firing rate exceeds this (runaway activity)
    background_eval: str = "auto"  # on | off | auto: test in a worker process while training goes on (auto: per-sample event-engine training on >= 2 cores)
    engine: str = "event"  # event (exact, numba, CPU) | dense (time grid, PyTorch, CPU/CUDA, torchrun)
    device: str = "cpu"  # dense engine only: cpu | cuda
    dt_ms: float = 1.0  # dense engine only: time step of the grid
    rule: str = "lee2016"  # dense engine only: lee2016 (the paper) | bptt (surrogate-gradient BPTT)
    surrogate: str = "fast_sigmoid"  # rule = bptt: fast_sigmoid | sigmoid
    surrogate_slope: float = 25.0  # rule = bptt: slope of the surrogate derivative


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = "run"


def _check_type(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (list,):
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            value = [value]
        return [_check_type(f"{key}[{i}]", v, inner) for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ConfigError(f"config key '{key}' must be {tp.__name__}, got {value!r} ({type(value).__name__})")
    # No setting of snnbp means anything at NaN or infinity; they only hang or poison a run later.
    if tp is float and not math.isfinite(value):
        raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")
    return value


# Values that older configs and checkpoints hold, mapped to today's meaning (key -> {old: new}).
_LEGACY_VALUES = {"optim.floor_compensation": {True: "weight", False: "none"}}


def _apply(obj: Any, data: dict, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    for key, value in data.items():
        full = f"{prefix}{key}"
        legacy = _LEGACY_VALUES.get(full, {})
        if isinstance(value, bool) and value in legacy:
            value = legacy[value]
        if key not in hints:
            known = ", ".join(f"{prefix}{k}" for k in hints)
            raise ConfigError(f"unknown config key '{full}' (known keys: {known})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{full}' is a section; set its keys as {full}.KEY")
            _apply(current, value, full + ".")
        else:
            setattr(obj, key, _check_type(full, value, hints[key]))


def parse_override(text: str) -> dict:
    """'optim.lr=0.002' -> {'optim': {'lr': 0.002}}; the value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None) -> Config:
    """Defaults <- base dict (e.g. a checkpoint's config) <- TOML file <- overrides."""
    cfg = Config()
    if base:
        _apply(cfg, base)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; see configs/ for presets")
        try:
            _apply(cfg, tomllib.loads(p.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {p} is not valid TOML: {err}") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"config file {p} is not UTF-8 text (byte {err.start}); save it as UTF-8 TOML") from None
    for o in overrides:
        _apply(cfg, parse_override(o))
    validate(cfg)
    return cfg


def _validate_layers(cfg: Config) -> int:
    """Number of conv/fc layers of model.layers; ConfigError for what can be checked without data."""
    from snnbp.architecture import is_spatial, layer_io_shapes, parse_layers

    m = cfg.model
    if m.hidden:
        raise ConfigError(f"model.layers and model.hidden={m.hidden} both describe the network; "
                          "set model.hidden = [] when model.layers is given")
    specs = parse_layers(m.layers, "model.layers")
    if specs[-1].size != 10:
        raise ConfigError(f"model.layers ends with fc:{specs[-1].size}; the output layer must be fc:10 (10 classes)")
    if is_spatial(m.layers):
        if len(m.input_shape) != 3 or min(m.input_shape) < 1:
            raise ConfigError(f"model.input_shape={m.input_shape} must be [P, H, W] for a conv network, "
                              "e.g. [1, 28, 28] for MNIST or [2, 34, 34] for N-MNIST")
        layer_io_shapes(tuple(m.input_shape), specs)  # a kernel or pool that does not fit: refused now, naming the layer
    if len(m.kappa) != len(specs):
        raise ConfigError(f"model.kappa needs {len(specs)} values (one per conv/fc entry of model.layers), "
                          f"got {len(m.kappa)}")
    return len(specs)


def validate(cfg: Config) -> None:
    n_layers = _validate_layers(cfg) if cfg.model.layers else len(cfg.model.hidden) + 1
    if len(cfg.model.kappa) != n_layers:
        raise ConfigError(f"model.kappa needs {n_layers} values (hidden layers + output), got {len(cfg.model.kappa)}")
    if len(cfg.model.alpha) not in (1, n_layers):
        raise ConfigError(f"model.alpha needs 1 or {n_layers} values, got {len(cfg.model.alpha)}")
    for key in ("lr_th_ratio", "warmup_lr_th_ratio"):
        n = len(getattr(cfg.optim, key))
        if n not in (1, n_layers) and not (key == "warmup_lr_th_ratio" and n == 0):
            raise ConfigError(f"optim.{key} needs 1 or {n_layers} values (one per layer), got {n}")
    if cfg.model.kind not in ("snn", "ann"):
        raise ConfigError(f"model.kind must be 'snn' (spiking) or 'ann' (conventional baseline), got {cfg.model.kind!r}")
    if cfg.optim.floor_compensation not in ("none", "drive", "silent", "weight"):
        raise ConfigError("optim.floor_compensation must be 'drive', 'silent', 'weight' or 'none', "
                          f"got {cfg.optim.floor_compensation!r}")
    if cfg.optim.weight_reg not in ("coupled", "decoupled"):
        raise ConfigError(f"optim.weight_reg must be 'coupled' or 'decoupled', got {cfg.optim.weight_reg!r}")
    if cfg.optim.threshold_optimizer not in ("same", "sgd"):
        raise ConfigError(f"optim.threshold_optimizer must be 'same' or 'sgd', got {cfg.optim.threshold_optimizer!r}")
    if cfg.optim.shared_grad not in ("sum", "mean"):
        raise ConfigError(f"optim.shared_grad must be 'sum' or 'mean', got {cfg.optim.shared_grad!r}")
    if cfg.optim.name not in ("sgd", "adam"):
        raise ConfigError(f"optim.name must be 'sgd' or 'adam', got {cfg.optim.name!r}")
    if cfg.data.source not in ("mnist", "nmnist", "nmnist-synthetic"):
        raise ConfigError(f"data.source must be mnist, nmnist or nmnist-synthetic, got {cfg.data.source!r}")
    t = cfg.train
    if t.engine not in ("event", "dense"):
        raise ConfigError(f"train.engine must be 'event' or 'dense', got {t.engine!r}")
    if t.background_eval not in ("auto", "on", "off"):
        raise ConfigError(f"train.background_eval must be 'auto', 'on' or 'off', got {t.background_eval!r}")
    if t.background_eval == "on" and t.engine != "event":
        raise ConfigError("train.background_eval = 'on' needs the event engine (the dense engine tests inline); "
                          "set it to 'auto' or 'off'")
    if t.device not in ("cpu", "cuda"):
        raise ConfigError(f"train.device must be 'cpu' or 'cuda', got {t.device!r}")
    if t.rule not in ("lee2016", "bptt"):
        raise ConfigError(f"train.rule must be 'lee2016' or 'bptt', got {t.rule!r}")
    if t.engine == "event" and (t.rule != "lee2016" or t.device != "cpu"):
        raise ConfigError(f"train.rule={t.rule} / train.device={t.device} need the dense engine; add --set train.engine=dense")
    _check_ranges(cfg)


# Allowed ranges of numeric keys: (low, low_inclusive, high, high_inclusive). A value outside its range
# is refused before anything runs or is written, because each of them fails late otherwise (a negative
# Poisson rate crashes the encoder, epochs = 0 leaves an untrained model, a negative limit means "all").
_POSITIVE, _NON_NEGATIVE = (0.0, False, math.inf, False), (0.0, True, math.inf, False)
_RANGES: dict[str, tuple[float, bool, float, bool]] = {
    "model.hidden": (1, True, math.inf, False),
    "model.alpha": _POSITIVE, "model.floor_alpha": _NON_NEGATIVE,
    "model.tau_mp_ms": _POSITIVE, "model.t_ref_ms": _NON_NEGATIVE,
    "model.gamma": _NON_NEGATIVE, "model.sigma": _NON_NEGATIVE, "model.input_shape": (1, True, math.inf, False),
    "data.rate_hz": _POSITIVE, "data.train_ms": _POSITIVE, "data.test_ms": _POSITIVE,
    "data.crop_events": (1, True, math.inf, False),
    "data.train_limit": _NON_NEGATIVE, "data.test_limit": _NON_NEGATIVE,
    "optim.lr": _POSITIVE, "optim.lr_th_ratio": _NON_NEGATIVE,
    "optim.warmup_lr_th_ratio": _NON_NEGATIVE, "optim.batch_size": (1, True, math.inf, False),
    "optim.lam": _NON_NEGATIVE, "optim.beta": _NON_NEGATIVE, "optim.rho": _NON_NEGATIVE,
    "optim.decay_per_epoch": (0.0, False, 1.0, True),
    "optim.adam_betas": (0.0, True, 1.0, False), "optim.adam_eps": _POSITIVE,
    "optim.revive_after": _NON_NEGATIVE, "optim.revive_rate": _NON_NEGATIVE,
    "train.epochs": (1, True, math.inf, False), "train.warmup_ms": _NON_NEGATIVE,
    "train.max_minutes": _NON_NEGATIVE, "train.log_every_s": _NON_NEGATIVE,
    "train.eval_every": (1, True, math.inf, False),
    "train.eval_last": _NON_NEGATIVE, "train.chunk": (1, True, math.inf, False),
    "train.max_rate_hz": _POSITIVE, "train.dt_ms": _POSITIVE, "train.surrogate_slope": _POSITIVE,
}


def _check_ranges(cfg: Config) -> None:
    """ConfigError naming the first key whose value (or any list element) lies outside ``_RANGES``."""
    flat = {f"{section}.{k}": v for section, values in to_dict(cfg).items() if isinstance(values, dict)
            for k, v in values.items()}
    for key, (lo, lo_in, hi, hi_in) in _RANGES.items():
        for v in (flat[key] if isinstance(flat[key], list) else [flat[key]]):
            if (v < lo or (v == lo and not lo_in)) or (v > hi or (v == hi and not hi_in)):
                want = (("at least" if lo_in else "greater than") + f" {lo:g}") if hi == math.inf else \
                    f"in {'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"
                raise ConfigError(f"config key '{key}' must be {want}, got {flat[key]!r}")


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def to_toml(cfg: Config) -> str:
    """Serialize the resolved config (flat sections of scalars and lists only)."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return repr(v)

    d = to_dict(cfg)
    lines = [f"name = {fmt(d.pop('name'))}"]
    for section, values in d.items():
        lines.append(f"\n[{section}]")
        lines += [f"{k} = {fmt(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"
