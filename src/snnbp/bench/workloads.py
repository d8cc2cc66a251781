"""The workloads of `snnbp bench`: one measurement, run in this process, returns one JSON-able record.

Protocol of every measurement (``measure``), whatever the engine:
  1. imports, data (MNIST digits, Poisson events, synthetic N-MNIST recordings), model/trainer creation;
  2. warm-up step on 2 samples (excludes numba compilation or cache loading and torch's first-call
     costs); ``rss_baseline_mb`` = ru_maxrss here (on CUDA also ``cuda_baseline_mb`` = allocated);
  3. one untimed step on a full batch/chunk (allocator warm-up; it counts towards the peak);
  4. timed: input preparation (Poisson encoding, cropping, binning into frames) + training/inference
     steps over n_samples; ``samples_per_s`` = n_samples / wall_s; ``peak_rss_mb`` = ru_maxrss at the
     end, ``rss_delta_mb`` = peak - baseline; on CUDA ``cuda_peak_mb`` = torch.cuda.max_memory_allocated.

Engines (spec["engine"]):
  bptt, bptt-infer                    bench.bptt_baseline on Poisson MNIST frames (dt = 1 ms)
  event-sgd, event-adam, event-infer  the event engine on Poisson MNIST events
  nmnist-event-sgd, nmnist-event-adam, nmnist-event-infer
                                      the event engine on synthetic N-MNIST: 300-event crops (train),
                                      full streams (test); 2312-800-10, tau_mp 200 ms
  nmnist-bptt, nmnist-bptt-infer      bench.bptt_baseline (tau 200 ms) on the same recordings binned at 1 ms
  dense-lee2016, dense-bptt           DenseTrainer (train.engine = dense) with the paper's rule or the
                                      surrogate-gradient BPTT variant, built through the config path of
                                      `snnbp train` (load_config -> build_network -> make_trainer)
  event-lee2016                       the same with train.engine = event (a conv preset: the event engine's
                                      conv layers as the forward pass of the same rule and optimizer)
  config-event-infer, config-dense-infer
                                      tests of a preset's network (briefly trained on the event engine
                                      first: pretrain_samples) on the event engine or the dense engine
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from snnbp.bench.specs import NMNIST_SIZES, PAPER_SIZES, RATE_HZ
from snnbp.errors import ConfigError

ENGINES = ("bptt", "bptt-infer", "event-sgd", "event-adam", "event-infer", "nmnist-event-sgd", "nmnist-event-adam",
           "nmnist-event-infer", "nmnist-bptt", "nmnist-bptt-infer", "dense-lee2016", "dense-bptt", "event-lee2016",
           "config-event-infer", "config-dense-infer")
NMNIST_TAU_MS = 200.0
CROP_EVENTS = 300
DT_MS = 1.0


# ------------------------------------------------------------------------------------------- helpers


def peak_rss_mb() -> float:
    """ru_maxrss of this process in MiB (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def _data(n_in: int, n: int, split: str, source: str, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(n, n_in) uint8 images and int64 labels: the first n real MNIST images if possible, else random.

    Random images are MNIST-like: ~19 % of pixels lit with uniform uint8 intensity.
    """
    if n_in == 784 and source in ("auto", "mnist"):
        x, y, name = _mnist(n, split, source)
        if x is not None:
            return x.reshape(n, -1), y, name
    rng = np.random.default_rng(seed)
    x = (rng.integers(1, 256, (n, n_in)) * (rng.random((n, n_in)) < 0.19)).astype(np.uint8)
    x[:, 0] = np.maximum(x[:, 0], 1)  # never an all-black image
    return x, rng.integers(0, 10, n).astype(np.int64), "random"


def _mnist(n: int, split: str, source: str):
    """First n MNIST digits (n, 28, 28) of the cached split (repeated if n is larger), or Nones."""
    from snnbp.data.mnist import load_mnist
    from snnbp.errors import SnnbpError

    try:
        x, y = load_mnist(split)
    except SnnbpError:
        if source == "mnist":
            raise
        return None, None, None
    take = np.arange(n) % len(x)
    return x[take].copy(), y[take].astype(np.int64), "mnist-" + split


def random_strokes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 digit-like images: 2-4 thick quadratic strokes each; random labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    out = np.zeros((n, 28, 28), np.uint8)
    u = np.linspace(0.0, 1.0, 40)[:, None]
    for i in range(n):
        img = np.zeros((28, 28))
        for _ in range(rng.integers(2, 5)):
            p = rng.uniform(5.0, 23.0, (3, 2))  # quadratic Bezier control points (x, y)
            pts = (1 - u) ** 2 * p[0] + 2 * u * (1 - u) * p[1] + u ** 2 * p[2]
            d2 = (xx[None] - pts[:, 0, None, None]) ** 2 + (yy[None] - pts[:, 1, None, None]) ** 2
            img = np.maximum(img, np.clip(2.0 - np.sqrt(d2.min(axis=0)), 0.0, 1.0))
        out[i] = np.round(255 * img).astype(np.uint8)
    return out, rng.integers(0, 10, n).astype(np.int64)


def nmnist_pool(n: int, split: str, source: str, seed: int):
    """n synthetic N-MNIST recordings made in-process: (channels list, times_us list, labels, data name).

    Digits: the first n MNIST digits of ``split`` when cached (source auto|mnist), else random strokes
    (source random, or auto without MNIST). Recording i uses synthetic.simulator.sample_rng(seed, split, i),
    the same generator `snnbp data nmnist --synthetic` uses for sample i.
    """
    from snnbp.data.events import NMNIST_SENSOR, events_to_channels
    from snnbp.data.synthetic.simulator import sample_rng, synthesize_sample

    images, labels, digits = (None, None, None)
    if source in ("auto", "mnist"):
        images, labels, digits = _mnist(n, split, source)
        digits = digits and f"MNIST {split} digits 0..{n - 1}"
    if images is None:
        images, labels = random_strokes(n, seed)
        digits = "random-stroke images" + (" (no MNIST cached)" if source == "auto" else "")
    chans, times = [], []
    for i, img in enumerate(images):
        ev = synthesize_sample(img, sample_rng(seed, split, i))
        chans.append(events_to_channels(ev, NMNIST_SENSOR))
        times.append(ev["t"].astype(np.float64))
    name = f"synthetic N-MNIST made in-process by synthesize_sample (seed {seed}, split {split}) from {digits}"
    return chans, times, labels, name


def _event_batch(chans, times, idx, start=None, stop=None):
    """EventBatch of recordings idx (optionally cropped to [start, stop)); t_end = last event (as sources.py)."""
    from snnbp.data.events import EventBatch

    if start is None:
        ch = [chans[i] for i in idx]
        tt = [times[i] for i in idx]
    else:
        ch = [chans[i][a:b] for i, a, b in zip(idx, start, stop)]
        tt = [times[i][a:b] for i, a, b in zip(idx, start, stop)]
    return EventBatch.from_lists(ch, tt, [float(t[-1]) if len(t) else 0.0 for t in tt])


def _set_threads(threads: int) -> None:
    import numba
    import torch

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def _timed(step, n: int, per_call: int, sync=None, draw=None, ahead: bool = False) -> tuple[float, float, list]:
    """Warm-up on 2 samples, baseline RSS, one untimed full call, then the timed loop over n samples.

    With ``draw(lo, hi)`` each call's input is drawn apart from it and passed on, ``step(lo, hi, data)``;
    with ``ahead`` the timed loop draws the next chunk in a background thread while the current one
    runs, as `snnbp train` does (train/prefetch.py). Drawing counts in the time either way.
    """
    from snnbp.train.prefetch import prefetched

    run = step if draw is None else (lambda lo, hi: step(lo, hi, draw(lo, hi)))
    run(0, min(2, n))
    baseline = peak_rss_mb()
    run(0, min(per_call, n))
    if sync:
        sync()
    out = []
    starts = range(0, n, per_call)
    t0 = time.perf_counter()
    if ahead:
        for lo, data in prefetched(starts, lambda lo: draw(lo, min(lo + per_call, n))):
            out.append(step(lo, min(lo + per_call, n), data))
    else:
        for lo in starts:
            out.append(run(lo, min(lo + per_call, n)))
    if sync:
        sync()
    return time.perf_counter() - t0, baseline, out


# --------------------------------------------------------------------------------- one measurement


def _preset(config: str) -> Path:
    """A config file path, or the name of a preset shipped in the package (e.g. "paper/mnist-conv.toml"),
    so a measurement finds its preset from any working directory."""
    from snnbp.config import embedded_config

    for path in (Path(config), embedded_config(config)):
        if path.is_file():
            return path
    raise ConfigError(f"bench: config '{config}' is neither a file nor a preset under snnbp/configs/; "
                      "name an existing TOML file or an embedded preset such as paper/mnist-conv.toml")


def measure(spec: dict) -> dict:
    """Run one measurement in this process and return its record (see module docstring).

    spec keys: name, engine (module docstring), batch, n_samples, threads; presentation_ms (MNIST
    and dense engines: presentation length, T = presentation_ms / 1 ms); optional: sizes (default
    [784, 800, 10], N-MNIST [2312, 800, 10]), chunk (event training: samples per step_chunk call),
    pretrain_samples (event inference), pool (N-MNIST recordings made for training crops), device
    (dense engines), config (dense engines: a TOML preset instead of the fully connected net),
    data (auto | mnist | random), seed.
    """
    t_start = time.perf_counter()
    s = dict(spec)
    engine = s["engine"]
    if engine not in ENGINES:
        raise ConfigError(f"bench: unknown engine '{engine}' ({', '.join(ENGINES)})")
    name = s.get("name", engine)
    if s.get("config"):
        s["config"] = str(_preset(s["config"]))
    threads = int(s.get("threads") or os.cpu_count() or 1)
    _set_threads(threads)
    nmnist = engine.startswith("nmnist-")
    sizes = list(s.get("sizes") or (NMNIST_SIZES if nmnist else PAPER_SIZES))
    n, batch = int(s["n_samples"]), int(s["batch"])
    ms = None if nmnist else float(s["presentation_ms"])
    if n <= 0 or batch <= 0 or (ms is not None and ms <= 0):
        raise ConfigError(f"bench: n_samples, batch and presentation_ms must be positive, got {n}, {batch}, {ms}")
    seed, data = int(s.get("seed", 0)), s.get("data", "auto")
    if nmnist:
        rec, extra = _measure_nmnist(engine, sizes, n, batch, int(s.get("chunk", batch)), int(s.get("pool", n)),
                                     int(s.get("pretrain_samples", 0)), data, seed)
    else:
        split = "test" if engine.endswith("infer") else "train"
        n_data = n + int(s.get("pretrain_samples", 0))
        images, labels, data_name = _data(sizes[0], max(n_data, batch), split, data, seed)
        if engine in ("bptt", "bptt-infer"):
            rec, extra = _measure_bptt(engine, sizes, images, labels, ms, batch, n)
        elif engine.startswith("config-"):
            rec, extra = _measure_config_infer(engine, images, labels, ms, batch, n, s["config"],
                                               int(s.get("pretrain_samples", 0)))
        elif engine.startswith("dense-") or engine == "event-lee2016":
            rec, extra = _measure_dense(engine, sizes, images, labels, ms, batch, n, s.get("device", "cpu"),
                                        s.get("config"))
        else:
            rec, extra = _measure_event(engine, sizes, images, labels, ms, batch, n, int(s.get("chunk", batch)),
                                        int(s.get("pretrain_samples", 0)))
        extra.setdefault("data", data_name)
        extra.setdefault("presentation", f"{ms:g} ms Poisson")
    peak = peak_rss_mb()
    out = {
        "name": name,
        "engine": engine,
        "samples_per_s": n / rec["wall_s"],
        "peak_rss_mb": round(peak, 1),
        "presentation_ms": rec.get("presentation_ms", ms),
        "batch": batch,
        "T": rec["T"],
        "threads": threads,
        "n_samples": n,
        "wall_s": round(rec["wall_s"], 4),
        "rss_baseline_mb": round(rec["baseline"], 1),
        "rss_delta_mb": round(peak - rec["baseline"], 1),
        "sizes": sizes,
        "device": "cpu",
        "child_wall_s": round(time.perf_counter() - t_start, 2),
    }
    out.update(extra)
    return out


def _measure_bptt(engine, sizes, images, labels, ms, batch, n):
    import torch

    from snnbp.bench.bptt_baseline import BPTTNet, make_optimizer, poisson_frames, predict, train_step

    T = int(round(ms / DT_MS))
    net = BPTTNet(sizes, tau_ms=20.0, dt_ms=DT_MS)
    opt = make_optimizer(net, lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    lab = torch.from_numpy(labels)
    infer = engine == "bptt-infer"

    def step(lo, hi):
        frames = poisson_frames(images[lo:hi], T, DT_MS, RATE_HZ, gen)
        if infer:
            return int((predict(net, frames) == lab[lo:hi]).sum())
        return train_step(net, opt, frames, lab[lo:hi])

    wall, baseline, results = _timed(step, n, batch)
    extra = _bptt_extra(infer, torch)
    if infer:
        extra["accuracy_untrained"] = sum(results) / n
    else:
        extra.update(loss_first=results[0], loss_last=results[-1])
    return {"wall_s": wall, "T": T, "baseline": baseline}, extra


def _bptt_extra(infer: bool, torch) -> dict:
    return {"optimizer": "none" if infer else "adam lr=1e-3", "loss": "" if infer else "cross-entropy on output spike counts",
            "surrogate": "fast-sigmoid slope 25", "dt_ms": DT_MS, "torch_threads": torch.get_num_threads()}


def _event_setup(sizes, engine: str, batch: int, tau_ms: float = 20.0, floor_compensation: str = "drive"):
    """(network, EventTrainer, OptimConfig) built as `snnbp train` builds them: load_config ->
    build_network -> make_trainer, with the bench's fixed settings as overrides (paper constants:
    WTA -0.4 in hidden layers and -1 at the output, alpha 3, floor 0.25 sqrt(3/M); Adam lr 1e-3 for
    the batched engines, per-sample SGD lr 0.004 for the paper protocol)."""
    from snnbp.config import load_config
    from snnbp.train.build import build_network, make_trainer

    hidden = ", ".join(str(h) for h in sizes[1:-1])
    kappa = ", ".join(["-0.4"] * (len(sizes) - 2) + ["-1.0"])
    over = [f"model.hidden=[{hidden}]", f"model.kappa=[{kappa}]", "model.alpha=[3.0]", "model.floor_alpha=0.25",
            f"model.tau_mp_ms={float(tau_ms)}", "model.seed=0", "train.engine=event",
            f"optim.floor_compensation='{floor_compensation}'"]
    if engine.endswith("adam"):
        over += ["optim.name='adam'", f"optim.batch_size={batch}", "optim.lr=0.001", "optim.lr_th_ratio=1.0"]
    else:
        over += ["optim.name='sgd'", "optim.batch_size=1", "optim.lr=0.004", "optim.lr_th_ratio=0.1",
                 "optim.lam=0.01", "optim.rho=1e-4"]
    cfg = load_config(None, over)
    if sizes[-1] != 10:
        raise ConfigError(f"bench: the output layer has 10 classes, got sizes {sizes}")
    net = build_network(cfg, sizes[0])
    return net, make_trainer(cfg, net), cfg.optim


def _event_extra(infer: bool, out: list, n: int, cfg, chunk: int, pretrain: int) -> dict:
    import numba

    extra = {"numba_threads": numba.get_num_threads()}
    if infer:
        extra.update(accuracy=sum(o[0] for o in out) / n, synops_per_sample=sum(o[1] for o in out) / n,
                     pretrain_samples=pretrain, optimizer="none")
    else:
        extra.update(chunk=chunk, optimizer=f"{cfg.name} lr={cfg.lr} batch_size={cfg.batch_size}",
                     loss_mean=sum(o[0] for o in out) / n, train_accuracy=sum(o[1] for o in out) / n,
                     synops_per_sample=sum(o[2] for o in out) / n)
    return extra


def _measure_event(engine, sizes, images, labels, ms, batch, n, chunk, pretrain):
    from snnbp.data.poisson import poisson_events, sample_seeds
    from snnbp.event_engine.engine import run_events

    net, tr, cfg = _event_setup(sizes, engine, batch)
    infer = engine == "event-infer"
    epoch = [0]

    def events(lo, hi, dur):
        return poisson_events(images[lo:hi], dur, RATE_HZ, sample_seeds(0, epoch[0], np.arange(lo, hi)))

    if infer and pretrain:  # realistic activity: a briefly trained net, not a fresh one
        for lo in range(0, pretrain, 100):
            hi = min(lo + 100, pretrain)
            tr.step_chunk(events(lo, hi, 50.0), labels[lo:hi], cfg.lr, cfg.rho)
        images, labels = images[pretrain:], labels[pretrain:]
    epoch[0] = 1

    def step(lo, hi, b):
        if infer:
            res = run_events(net, b)
            return int((res.predictions() == labels[lo:hi]).sum()), int(res.synops.sum())
        st = tr.step_chunk(b, labels[lo:hi], cfg.lr, cfg.rho)
        return st.loss, st.correct, st.synops

    def draw(lo, hi):
        return events(lo, hi, ms)

    # training draws the next chunk meanwhile, as snnbp train does
    wall, baseline, out = _timed(step, n, batch if infer else chunk, draw=draw, ahead=not infer)
    return {"wall_s": wall, "T": None, "baseline": baseline}, _event_extra(infer, out, n, cfg, chunk, pretrain)


# ------------------------------------------------------------------------------------------- N-MNIST


def _measure_nmnist(engine, sizes, n, batch, chunk, pool, pretrain, data, seed):
    """Event engine or BPTT baseline on synthetic N-MNIST; train = 300-event crops, test = full streams."""
    import torch

    from snnbp.data.nmnist import crop_events

    infer = engine.endswith("infer")
    if sizes[0] != NMNIST_SIZES[0]:  # tiny test nets: fold the 2312 sensor channels onto the inputs
        fold = sizes[0]
    else:
        fold = None
    n_rec = n if infer else pool
    chans, times, labels, data_name = nmnist_pool(max(n_rec, 2), "test" if infer else "train", data, seed)
    if fold:
        chans = [(c % fold).astype(np.int32) for c in chans]
    n_events = np.array([len(t) for t in times])
    if infer:
        idx_all = np.arange(n) % len(chans)
        start = stop = None
        durations = np.array([times[i][-1] / 1000.0 if len(times[i]) else 0.0 for i in idx_all])
    else:
        idx_all = np.arange(n) % len(chans)
        start, stop = crop_events(n_events[idx_all], CROP_EVENTS, np.random.default_rng(seed + 1))
        durations = np.array([(times[i][b - 1] - times[i][a]) / 1000.0 for i, a, b in zip(idx_all, start, stop)])

    def batch_of(lo, hi):
        if start is None:
            return _event_batch(chans, times, idx_all[lo:hi])
        return _event_batch(chans, times, idx_all[lo:hi], start[lo:hi], stop[lo:hi])

    lab = labels[idx_all]
    extra = {"data": data_name, "events_per_sample": float(np.mean([len(times[i]) for i in idx_all]) if infer
                                                           else np.mean(stop - start)),
             "recordings": len(chans),
             "presentation": (f"full streams (~{durations.mean():.0f} ms)" if infer
                              else f"{CROP_EVENTS}-event crops (~{durations.mean():.0f} ms)"),
             "duration_ms_mean": round(float(durations.mean()), 2), "duration_ms_max": round(float(durations.max()), 2),
             "tau_mp_ms": NMNIST_TAU_MS}
    rec = {"presentation_ms": round(float(durations.mean()), 2)}
    if engine.startswith("nmnist-bptt"):
        from snnbp.bench.bptt_baseline import BPTTNet, make_optimizer, predict, train_step
        from snnbp.dense.frames import DenseInput

        net = BPTTNet(sizes, tau_ms=NMNIST_TAU_MS, dt_ms=DT_MS)
        opt = make_optimizer(net, lr=1e-3)
        lab_t = torch.from_numpy(lab)
        Ts = []

        def step(lo, hi):
            inp = DenseInput.from_events(batch_of(lo, hi), sizes[0], DT_MS, "cpu", align_start=True)
            frames = torch.empty(inp.n_steps, inp.batch_size, inp.n_inputs)  # (T, B, P); each sample's grid
            for t, f in enumerate(inp.steps()):                                  # starts at its first event
                frames[t] = f
            Ts.append(frames.shape[0])
            if infer:
                return int((predict(net, frames) == lab_t[lo:hi]).sum())
            return train_step(net, opt, frames, lab_t[lo:hi])

        wall, baseline, out = _timed(step, n, batch)
        timed_T = Ts[2:] or Ts
        rec.update(wall_s=wall, T=int(round(np.mean(timed_T))), baseline=baseline)
        extra.update(_bptt_extra(infer, torch), T_max=int(max(timed_T)),
                     T_note="T per batch = the longest sample of the batch (padding), at dt = 1 ms")
        if infer:
            extra["accuracy_untrained"] = sum(out) / n
        else:
            extra.update(loss_first=out[0], loss_last=out[-1])
        return rec, extra

    from snnbp.event_engine.engine import run_events

    net, tr, cfg = _event_setup(sizes, engine, batch, NMNIST_TAU_MS, floor_compensation="none")
    if infer and pretrain:  # a briefly trained net (SGD on crops), so activity is not that of a fresh one
        pc, pt, plab, _ = nmnist_pool(min(pretrain, 300), "train", data, seed)
        if fold:
            pc = [(c % fold).astype(np.int32) for c in pc]
        pidx = np.arange(pretrain) % len(pc)
        a, b = crop_events(np.array([len(t) for t in pt])[pidx], CROP_EVENTS, np.random.default_rng(seed + 2))
        for lo in range(0, pretrain, 100):
            hi = min(lo + 100, pretrain)
            tr.step_chunk(_event_batch(pc, pt, pidx[lo:hi], a[lo:hi], b[lo:hi]), plab[pidx[lo:hi]], cfg.lr, cfg.rho)

    def step(lo, hi, b):
        if infer:
            res = run_events(net, b)
            return int((res.predictions() == lab[lo:hi]).sum()), int(res.synops.sum())
        st = tr.step_chunk(b, lab[lo:hi], cfg.lr, cfg.rho)
        return st.loss, st.correct, st.synops

    # training draws the next chunk meanwhile, as snnbp train does
    wall, baseline, out = _timed(step, n, batch if infer else chunk, draw=batch_of, ahead=not infer)
    rec.update(wall_s=wall, T=None, baseline=baseline)
    extra.update(_event_extra(infer, out, n, cfg, chunk, pretrain))
    return rec, extra


# --------------------------------------------------------------------------------------------- dense


def _measure_config_infer(engine, images, labels, ms, batch, n, config, pretrain):
    """Test presentations of ``config``'s network on the event engine or the dense engine (dt = 1 ms).

    The network is first trained for ``pretrain`` samples of 50 ms on the event engine (Adam, the
    preset's optimizer, seed 0), so both engines test the same network with realistic activity.
    """
    import numba
    import torch

    from snnbp.config import load_config
    from snnbp.data.poisson import poisson_events, sample_seeds
    from snnbp.event_engine.engine import run_events
    from snnbp.train.build import build_network, make_trainer
    from snnbp.train.dense_trainer import DenseEngine

    cfg = load_config(config, ["train.engine=event", "model.seed=0"])
    net = build_network(cfg, images.shape[1])
    tr = make_trainer(cfg, net)
    for lo in range(0, pretrain, 50):
        hi = min(lo + 50, pretrain)
        b = poisson_events(images[lo:hi], 50.0, RATE_HZ, sample_seeds(0, 0, np.arange(lo, hi)))
        tr.step_chunk(b, labels[lo:hi], cfg.optim.lr, cfg.optim.rho)
    images, labels = images[pretrain:], labels[pretrain:]
    simulate = run_events if engine == "config-event-infer" else DenseEngine(DT_MS)

    def step(lo, hi):
        res = simulate(net, poisson_events(images[lo:hi], ms, RATE_HZ, sample_seeds(0, 1, np.arange(lo, hi))))
        return int((res.predictions() == labels[lo:hi]).sum()), int(res.synops.sum())

    wall, baseline, out = _timed(step, n, batch)
    extra = {"config": config, "pretrain_samples": pretrain, "optimizer": "none", "accuracy": sum(o[0] for o in out) / n,
             "synops_per_sample": sum(o[1] for o in out) / n, "numba_threads": numba.get_num_threads(),
             "torch_threads": torch.get_num_threads()}
    if engine == "config-dense-infer":
        extra["dt_ms"] = DT_MS
    return {"wall_s": wall, "T": int(round(ms / DT_MS)) if engine == "config-dense-infer" else None,
            "baseline": baseline}, extra


def _measure_dense(engine, sizes, images, labels, ms, batch, n, device, config):
    """DenseTrainer via the config path of `snnbp train`: Adam lr 1e-3, batch ``batch``, dt = 1 ms."""
    import torch

    from snnbp.data.poisson import poisson_events, sample_seeds
    from snnbp.config import load_config
    from snnbp.train.build import make_trainer
    from snnbp.train.build import build_network

    rule = "bptt" if engine == "dense-bptt" else "lee2016"
    if engine == "event-lee2016":
        device = "cpu"  # the event engine runs on the CPU whatever --device says
    over = [f"train.engine={'event' if engine == 'event-lee2016' else 'dense'}", f"train.device={device}", f"train.dt_ms={DT_MS}", f"train.rule={rule}",
            "optim.name=adam", f"optim.batch_size={batch}", "optim.lr=0.001", "optim.lr_th_ratio=1.0",
            f"data.train_ms={ms}"]
    if not config:
        hidden = ", ".join(str(h) for h in sizes[1:-1])
        kappa = ", ".join(["-0.4"] * (len(sizes) - 2) + ["-1.0"])
        over += [f"model.hidden=[{hidden}]", f"model.kappa=[{kappa}]", "model.alpha=[3.0]", "model.floor_alpha=0.25",
                 "model.tau_mp_ms=20.0"]
    cfg = load_config(config, over)
    net = build_network(cfg, sizes[0])
    tr = make_trainer(cfg, net)
    cuda = str(getattr(tr, "device", device)).startswith("cuda")
    sync = torch.cuda.synchronize if cuda else None
    lr, rho = cfg.optim.lr, cfg.optim.rho

    def step(lo, hi):
        b = poisson_events(images[lo:hi], ms, RATE_HZ, sample_seeds(0, 1, np.arange(lo, hi)))
        st = tr.step_chunk(b, labels[lo:hi], lr, rho)
        return st.loss, st.correct, st.synops

    cuda_base = None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    wall, baseline, out = _timed(step, n, batch, sync)
    extra = {"device": str(tr.device), "rule": rule, "dt_ms": DT_MS if engine != "event-lee2016" else None, "config": config or "-".join(map(str, sizes)) + " (paper constants, no preset)",
             "optimizer": f"adam lr={lr} batch_size={batch}", "torch_threads": torch.get_num_threads(),
             "loss_mean": sum(o[0] for o in out) / n, "train_accuracy": sum(o[1] for o in out) / n,
             "synops_per_sample": sum(o[2] for o in out) / n}
    if cuda:
        cuda_base = torch.cuda.memory_allocated() / 2 ** 20  # parameters + optimizer state after the run
        extra.update(cuda_peak_mb=round(torch.cuda.max_memory_allocated() / 2 ** 20, 1),
                     cuda_baseline_mb=round(cuda_base, 1), gpu=torch.cuda.get_device_name())
        extra["cuda_delta_mb"] = round(extra["cuda_peak_mb"] - cuda_base, 1)
    T = int(round(ms / DT_MS))
    return {"wall_s": wall, "T": T, "baseline": baseline}, extra
