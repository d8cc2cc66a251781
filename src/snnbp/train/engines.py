"""Which engine trains and evaluates a run: the one place that maps config strings to objects.

    train.engine = "event"  -> train.event_trainer.EventTrainer, evaluation by event_engine.engine.run_events
    train.engine = "dense"  -> train.dense_trainer.DenseTrainer on train.device with step train.dt_ms,
                               evaluation by train.dense_trainer.DenseEngine (same dt and device)
    train.rule   = "lee2016" -> dense.lee2016_function.Lee2016Rule(normalize=optim.normalize)
    train.rule   = "bptt"    -> dense.bptt.SurrogateBPTT(train.surrogate, train.surrogate_slope)

Under torchrun (WORLD_SIZE > 1) ``run_context`` joins the process group (dense engine only).
"""

from __future__ import annotations

from snnbp.errors import ConfigError
from snnbp.model import Network
from snnbp.config import Config


def make_rule(cfg: Config):
    """The gradient-rule object named by train.rule (dense engine)."""
    if cfg.train.rule == "bptt":
        from snnbp.dense.bptt import SurrogateBPTT

        return SurrogateBPTT(surrogate=cfg.train.surrogate, slope=cfg.train.surrogate_slope)
    from snnbp.dense.lee2016_function import Lee2016Rule

    return Lee2016Rule(normalize=cfg.optim.normalize)


def run_context(cfg: Config):
    """The data-parallel context of this process (single process unless launched by torchrun)."""
    from snnbp.dense.distributed import init_distributed

    return init_distributed(cfg.train.engine, cfg.train.device, cfg.optim.batch_size)


def check_engine(engine: str, net: Network) -> None:
    """A network with conv/pool layers runs on the dense engine only (the event engine is FC-only)."""
    if engine != "dense" and net.is_spatial:
        raise ConfigError(f"network {net.describe()} has conv/pool layers, which only the dense engine runs; "
                          "add --set train.engine=dense")


def make_trainer(cfg: Config, net: Network, dist=None):
    """EventTrainer or DenseTrainer for ``net``, as the config says."""
    check_engine(cfg.train.engine, net)
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
        check_engine(cfg.train.engine, net)
        if dist is not None and dist.is_distributed:
            from snnbp.dense.distributed import sharded_evaluate

            return sharded_evaluate(evaluate, net, source, dist, engine=engine, **kw)
        return evaluate(net, source, engine=engine, **kw)

    return evaluator
