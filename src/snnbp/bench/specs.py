"""What `snnbp bench` measures: the measurement table, the groups, the quick sizes and the ratios.

Every measurement is a dict ("spec") handed to ``snnbp.bench.workloads.measure`` in a fresh process.
Groups (``--which mnist``):

  mnist   the 784-800-10 paper protocol (foundation issue item 8): event engine vs the plain-PyTorch
          BPTT baseline (snnbp.bench.bptt_baseline), 50 ms and 1 s Poisson presentations.
  nmnist  the N-MNIST protocol (N-MNIST issue item 5): 2312-800-10, tau_mp 200 ms, synthetic
          recordings made in-process; event engine training on 300-event crops (SGD per sample, the
          paper's protocol, and Adam batch 32) and testing on full ~300 ms streams, vs the same BPTT
          baseline on the same network with the events binned at dt = 1 ms.
  dense   dense engine with the paper's rule (Lee2016Rule) vs its surrogate-gradient BPTT variant
          (SurrogateBPTT) on 784-800-10, T = 50, 100, 200 steps of 1 ms, batch 100, Adam (dense
          issue item 7); ``--device cuda`` runs the same code on a GPU.
  conv    the same two rules on the embedded convolutional preset paper/mnist-conv.toml (T = 50,
          batch 100, Adam); used by scripts/gpu_check.sh.

The default (no ``--which``) runs mnist, nmnist and dense (conv only when named).
"""

from __future__ import annotations

from snnbp.errors import ConfigError

PAPER_SIZES = [784, 800, 10]
NMNIST_SIZES = [2312, 800, 10]
RATE_HZ = 5000.0
CONV_PRESET = "paper/mnist-conv.toml"  # embedded preset (snnbp/configs/), found from any directory

_MNIST: dict[str, dict] = {
    "bptt-50ms": dict(engine="bptt", presentation_ms=50.0, batch=100, n_samples=1000),
    "bptt-1s": dict(engine="bptt", presentation_ms=1000.0, batch=100, n_samples=200),
    "event-sgd-50ms": dict(engine="event-sgd", presentation_ms=50.0, batch=1, chunk=100, n_samples=5000),
    "event-sgd-1s": dict(engine="event-sgd", presentation_ms=1000.0, batch=1, chunk=100, n_samples=500),
    "event-adam100-50ms": dict(engine="event-adam", presentation_ms=50.0, batch=100, chunk=100, n_samples=5000),
    "event-adam1-50ms": dict(engine="event-adam", presentation_ms=50.0, batch=1, chunk=100, n_samples=2000),
    "event-adam100-1s": dict(engine="event-adam", presentation_ms=1000.0, batch=100, chunk=100, n_samples=500),
    "bptt-infer-1s": dict(engine="bptt-infer", presentation_ms=1000.0, batch=100, n_samples=300),
    "event-infer-1s": dict(engine="event-infer", presentation_ms=1000.0, batch=1000, n_samples=2000,
                           pretrain_samples=1000),
}
# N-MNIST: "pool" synthetic recordings are made (untimed) per measurement; training crops are drawn from
# them at random positions (sample i: recording i % pool). Test measurements use n_samples distinct streams.
_NMNIST: dict[str, dict] = {
    "nmnist-event-sgd-train": dict(engine="nmnist-event-sgd", batch=1, chunk=100, n_samples=8000, pool=300),
    "nmnist-event-adam32-train": dict(engine="nmnist-event-adam", batch=32, chunk=96, n_samples=8000, pool=300),
    "nmnist-bptt-train": dict(engine="nmnist-bptt", batch=32, n_samples=1280, pool=300),
    "nmnist-event-test": dict(engine="nmnist-event-infer", batch=100, n_samples=1000, pretrain_samples=1000, pool=300),
    "nmnist-bptt-test": dict(engine="nmnist-bptt-infer", batch=100, n_samples=400),
}
_DENSE: dict[str, dict] = {}
for _T, _n_lee, _n_bptt in ((50, 4000, 1200), (100, 2500, 700), (200, 1200, 350)):
    _DENSE[f"dense-lee-T{_T}"] = dict(engine="dense-lee2016", presentation_ms=float(_T), batch=100, n_samples=_n_lee)
    _DENSE[f"dense-bptt-T{_T}"] = dict(engine="dense-bptt", presentation_ms=float(_T), batch=100, n_samples=_n_bptt)
_CONV: dict[str, dict] = {
    "conv-lee-T50": dict(engine="dense-lee2016", presentation_ms=50.0, batch=100, n_samples=500, config=CONV_PRESET),
    "conv-bptt-T50": dict(engine="dense-bptt", presentation_ms=50.0, batch=100, n_samples=300, config=CONV_PRESET),
    "conv-event-lee-50ms": dict(engine="event-lee2016", presentation_ms=50.0, batch=100, n_samples=2000,
                                config=CONV_PRESET),
    # tests: the same briefly trained network (500 samples on the event engine, seed 0) on both engines
    "conv-event-infer-50ms": dict(engine="config-event-infer", presentation_ms=50.0, batch=100, n_samples=2000,
                                  pretrain_samples=500, config=CONV_PRESET),
    "conv-event-infer-1s": dict(engine="config-event-infer", presentation_ms=1000.0, batch=100, n_samples=300,
                                pretrain_samples=500, config=CONV_PRESET),
    "conv-dense-infer-1s": dict(engine="config-dense-infer", presentation_ms=1000.0, batch=50, n_samples=50,
                                pretrain_samples=500, config=CONV_PRESET),
}

GROUPS: dict[str, list[str]] = {"mnist": list(_MNIST), "nmnist": list(_NMNIST), "dense": list(_DENSE),
                                "conv": list(_CONV)}
DEFAULT_GROUPS = ("mnist", "nmnist", "dense")
MEASUREMENTS: dict[str, dict] = {}
for _g, _table in (("mnist", _MNIST), ("nmnist", _NMNIST), ("dense", _DENSE), ("conv", _CONV)):
    for _name, _spec in _table.items():
        MEASUREMENTS[_name] = {**_spec, "group": _g}

# --quick: tiny batches and sample counts (smoke test of every code path, not a measurement).
QUICK: dict[str, dict] = {
    "bptt-50ms": dict(batch=20, n_samples=20),
    "bptt-1s": dict(batch=10, n_samples=10),
    "event-sgd-50ms": dict(chunk=20, n_samples=40),
    "event-sgd-1s": dict(chunk=10, n_samples=10),
    "event-adam100-50ms": dict(batch=20, chunk=20, n_samples=40),
    "event-adam1-50ms": dict(chunk=20, n_samples=40),
    "event-adam100-1s": dict(batch=10, chunk=10, n_samples=10),
    "bptt-infer-1s": dict(batch=10, n_samples=10),
    "event-infer-1s": dict(batch=20, n_samples=20, pretrain_samples=0),
    "nmnist-event-sgd-train": dict(chunk=20, n_samples=40, pool=8),
    "nmnist-event-adam32-train": dict(batch=8, chunk=16, n_samples=32, pool=8),
    "nmnist-bptt-train": dict(batch=8, n_samples=16, pool=8),
    "nmnist-event-test": dict(batch=8, n_samples=8, pretrain_samples=0, pool=8),
    "nmnist-bptt-test": dict(batch=4, n_samples=4),
    **{name: dict(batch=10, n_samples=20) for name in list(_DENSE) + list(_CONV)},
    **{name: dict(batch=10, n_samples=10, pretrain_samples=10) for name in _CONV if "infer" in name},
}

# Ratios printed under the table, per group: (label, kind, numerator, denominator).
# kind "speed": samples/s of a over b; "memory": peak memory of a over b (GPU peak when on CUDA).
RATIOS: dict[str, list[tuple[str, str, str, str]]] = {
    "mnist": [
        ("speed: event SGD bs1 / BPTT, 50 ms", "speed", "event-sgd-50ms", "bptt-50ms"),
        ("speed: event Adam bs100 / BPTT, 50 ms", "speed", "event-adam100-50ms", "bptt-50ms"),
        ("speed: event Adam bs1 (per-sample, fused) / BPTT, 50 ms", "speed", "event-adam1-50ms", "bptt-50ms"),
        ("speed: event SGD bs1 / BPTT, 1 s", "speed", "event-sgd-1s", "bptt-1s"),
        ("speed: event Adam bs100 / BPTT, 1 s", "speed", "event-adam100-1s", "bptt-1s"),
        ("speed: event inference / BPTT inference, 1 s", "speed", "event-infer-1s", "bptt-infer-1s"),
        ("memory: BPTT peak RSS 1 s / 50 ms", "memory", "bptt-1s", "bptt-50ms"),
        ("memory: event SGD peak RSS 1 s / 50 ms", "memory", "event-sgd-1s", "event-sgd-50ms"),
        ("memory: event Adam peak RSS 1 s / 50 ms", "memory", "event-adam100-1s", "event-adam100-50ms"),
    ],
    "nmnist": [
        ("N-MNIST train speed: event SGD bs1 (paper) / BPTT bs32", "speed", "nmnist-event-sgd-train", "nmnist-bptt-train"),
        ("N-MNIST train speed: event Adam bs32 / BPTT bs32", "speed", "nmnist-event-adam32-train", "nmnist-bptt-train"),
        ("N-MNIST test speed: event / BPTT, full streams", "speed", "nmnist-event-test", "nmnist-bptt-test"),
    ],  # memory: see the table (the runs differ in data, batch and length, so a peak ratio would mislead)
    "dense": [
        ("dense speed: Lee2016 / BPTT, T = 50", "speed", "dense-lee-T50", "dense-bptt-T50"),
        ("dense speed: Lee2016 / BPTT, T = 100 (target >= 3x)", "speed", "dense-lee-T100", "dense-bptt-T100"),
        ("dense speed: Lee2016 / BPTT, T = 200", "speed", "dense-lee-T200", "dense-bptt-T200"),
        ("dense memory: Lee2016 peak T = 100 / T = 50", "memory", "dense-lee-T100", "dense-lee-T50"),
        ("dense memory: Lee2016 peak T = 200 / T = 50 (target: flat)", "memory", "dense-lee-T200", "dense-lee-T50"),
        ("dense memory: BPTT peak T = 100 / T = 50", "memory", "dense-bptt-T100", "dense-bptt-T50"),
        ("dense memory: BPTT peak T = 200 / T = 50", "memory", "dense-bptt-T200", "dense-bptt-T50"),
        ("dense memory: BPTT / Lee2016 peak, T = 200", "memory", "dense-bptt-T200", "dense-lee-T200"),
    ],
    "conv": [
        ("conv speed: Lee2016 / BPTT, T = 50", "speed", "conv-lee-T50", "conv-bptt-T50"),
        ("conv memory: BPTT / Lee2016 peak, T = 50", "memory", "conv-bptt-T50", "conv-lee-T50"),
        ("conv train speed: event engine / dense engine, Lee2016, 50 ms (target >= 5x)", "speed", "conv-event-lee-50ms",
         "conv-lee-T50"),
        ("conv test speed: event engine / dense engine, 1 s (target >= 10x)", "speed", "conv-event-infer-1s",
         "conv-dense-infer-1s"),
        ("conv memory: event test peak RSS 1 s / 50 ms (target: flat)", "memory", "conv-event-infer-1s",
         "conv-event-infer-50ms"),
    ],
}


def expand_which(which: list[str] | None) -> list[str]:
    """Measurement names for ``--which`` items (names or group names, in order, no duplicates)."""
    items = list(which) if which else list(DEFAULT_GROUPS)
    names: list[str] = []
    unknown = []
    for w in items:
        for n in GROUPS.get(w, [w]):
            if n not in MEASUREMENTS:
                unknown.append(w)
            elif n not in names:
                names.append(n)
    if unknown:
        raise ConfigError(f"bench: unknown measurement(s) {', '.join(unknown)}; choose groups "
                          f"{', '.join(GROUPS)} or names {', '.join(MEASUREMENTS)}")
    return names


def build_specs(which: list[str] | None, quick: bool, threads: int, data: str, device: str = "cpu") -> list[dict]:
    """One spec per measurement; ``device`` applies to the dense-engine measurements (dense, conv)."""
    specs = []
    for name in expand_which(which):
        s = {"name": name, **MEASUREMENTS[name], "threads": threads, "data": data}
        if s["engine"].startswith("dense-"):
            s["device"] = device
        if quick:
            s.update(QUICK[name])
        specs.append(s)
    return specs
