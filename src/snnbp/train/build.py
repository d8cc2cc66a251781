"""From a config to the objects of a run: the network, its trainer, its evaluator.

``build_network`` makes the ``Network`` that model.* describes. The engine choice is made here and
nowhere else:

    train.engine = "event"  -> train.event_trainer.EventTrainer, evaluation by event_engine.engine.run_events
    train.engine = "dense"  -> train.dense_trainer.DenseTrainer on train.device with step train.dt_ms,
                               evaluation by train.dense_trainer.DenseEngine (same dt and device)
    train.rule   = "lee2016" -> dense.lee2016_function.Lee2016Rule(normalize=optim.normalize)
    train.rule   = "bptt"    -> dense.bptt.SurrogateBPTT(train.surrogate, train.surrogate_slope)

Under torchrun (WORLD_SIZE > 1) ``run_context`` joins the process group (dense engine only).
"""

from __future__ import annotations

import math

from snnbp.architecture import is_spatial, parse_layers
from snnbp.config import Config
from snnbp.errors import ConfigError
from snnbp.model import Network
from snnbp.neuron import NeuronParams


def build_network(cfg: Config, n_inputs: int) -> Network:
    m = cfg.model
    neuron = NeuronParams(tau_mp_ms=m.tau_mp_ms, t_ref_ms=m.t_ref_ms, gamma=m.gamma, sigma=m.sigma)
    if is_spatial(m.layers):  # conv/pool layers (dense engine): the input is a (P, H, W) map
        if math.prod(m.input_shape) != n_inputs:
            raise ConfigError(f"model.input_shape={m.input_shape} has {math.prod(m.input_shape)} channels but the data "
                              f"has {n_inputs}; set model.input_shape to the data's [P, H, W]")
        return Network.create_layered(tuple(m.input_shape), list(m.layers), m.kappa, alpha=list(m.alpha),
                                      floor_alpha=m.floor_alpha, neuron=neuron, seed=m.seed)
    sizes = [sp.size for sp in parse_layers(m.layers)] if m.layers else list(m.hidden) + [10]
    return Network.create(n_inputs, sizes, m.kappa, alpha=list(m.alpha),
                          floor_alpha=m.floor_alpha, neuron=neuron, seed=m.seed)


def make_rule(cfg: Config):
    """The gradient-rule object named by train.rule (dense engine)."""
    if cfg.train.rule == "bptt":
        from snnbp.dense.bptt import SurrogateBPTT

        return SurrogateBPTT(surrogate=cfg.train.surrogate, slope=cfg.train.surrogate_slope)
    from snnbp.dense.lee2016_function import Lee2016Rule

    return Lee2016Rule(normalize=cfg.optim.normalize, shared_grad=cfg.optim.shared_grad)


def run_context(cfg: Config):
    """The data-parallel context of this process (single process unless launched by torchrun)."""
    from snnbp.dense.distributed import init_distributed

    return init_distributed(cfg.train.engine, cfg.train.device, cfg.optim.batch_size)


def make_trainer(cfg: Config, net: Network, dist=None):
    """EventTrainer or DenseTrainer for ``net``, as the config says.

    A layered (conv / pool) network on the event engine trains through DenseTrainer's rule and optimizer
    with the event engine as its forward pass (``forward="event"``): the conv reading of the rule lives
    once, in dense/lee2016_function.py and dense/conv.py.
    """
    if cfg.train.engine == "event" and net.is_spatial:
        from snnbp.train.dense_trainer import DenseTrainer

        return DenseTrainer(net, cfg.optim, rule=make_rule(cfg), dist=dist, forward="event")
    if cfg.train.engine == "dense":
        from snnbp.train.dense_trainer import DenseTrainer

        return DenseTrainer(net, cfg.optim, cfg.train.dt_ms, cfg.train.device, make_rule(cfg), dist)
    from snnbp.train.event_trainer import EventTrainer

    return EventTrainer(net, cfg.optim)


def make_evaluator(cfg: Config, dist=None):
    """``evaluator(net, source, **kw) -> dict`` (metrics.evaluate with the run's engine; sharded under torchrun)."""
    from snnbp.metrics.evaluate import evaluate

    engine = None
    if cfg.train.engine == "dense":
        from snnbp.train.dense_trainer import DenseEngine

        device = dist.device(cfg.train.device) if dist is not None else cfg.train.device
        engine = DenseEngine(cfg.train.dt_ms, device)

    def evaluator(net, source, **kw):
        if dist is not None and dist.is_distributed:
            from snnbp.dense.distributed import sharded_evaluate

            return sharded_evaluate(evaluate, net, source, dist, engine=engine, **kw)
        return evaluate(net, source, engine=engine, **kw)

    return evaluator


AUTO_BACKGROUND_MIN_TEST_S = 500.0  # "auto": a test pass presents at least this much (simulated seconds)


def make_background_evaluator(cfg: Config, dist, net: Network, source, inline, log=print):
    """A ``BackgroundEvaluator`` when train.background_eval asks for one, else None (tests run inline).

    "auto" picks it where it pays: event engine, one process, per-sample training (batch 1 holds one
    core; batched training already runs samples on every core), at least 2 cores, and test passes long
    enough to outweigh starting the worker (1-3 s): at least AUTO_BACKGROUND_MIN_TEST_S of presentations
    (the paper's 10,000 digits at 1 s are 10,000 s; 2,000 at 1 s are 2,000 s). "on" forces it on the
    event engine; a run under torchrun always tests inline (its test set is sharded).
    inline(net) -> dict tests in this process (the fallback if the worker dies).
    """
    import os

    from snnbp.config import to_dict

    mode = cfg.train.background_eval
    cores = os.cpu_count() or 1
    if mode == "off" or cfg.train.engine != "event" or (dist is not None and dist.is_distributed):
        return None
    if mode == "auto":
        test_s = len(source.test_labels) * getattr(source, "test_ms", 300.0) / 1000.0  # N-MNIST: ~300 ms streams
        if cfg.optim.batch_size != 1 or cores < 2 or test_s < AUTO_BACKGROUND_MIN_TEST_S:
            return None
    from snnbp.train.background_eval import BackgroundEvaluator

    return BackgroundEvaluator(to_dict(cfg), net.header(), inline, cores, log)
