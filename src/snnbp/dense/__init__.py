"""Dense engine: the paper's neuron on a time grid of step dt, in PyTorch (CPU or CUDA), mini-batches.

    frames.py            events -> time-grid input (bin_events, DenseInput), device/dt checks
    layers.py            SpikingLinear: the connectivity interface a layer provides (conv plugs in here)
    conv.py              SpikingConv2d, SpikingPool2d: convolutional layers (layered Networks)
    engine.py            the step (one implementation for both rules), run_dense -> DenseForward
    lee2016_function.py  the paper's gradient rule as a torch.autograd.Function (Lee2016Rule)
    bptt.py              surrogate-gradient BPTT on the same network (SurrogateBPTT)
    model.py             DenseSNN(nn.Module): from_network / to_network, forward, loss
    distributed.py       data-parallel training under torchrun

Engine only: the trainer that drives it is train/dense_trainer.py (DenseTrainer, DenseEngine); nothing
here imports from train/. Imports are lazy so that ``import snnbp.dense`` stays cheap.
"""

__all__ = ["DenseSNN", "Lee2016Rule", "SurrogateBPTT", "bin_events", "run_dense"]


def __getattr__(name):
    if name == "DenseSNN":
        from snnbp.dense.model import DenseSNN as v
    elif name == "Lee2016Rule":
        from snnbp.dense.lee2016_function import Lee2016Rule as v
    elif name == "SurrogateBPTT":
        from snnbp.dense.bptt import SurrogateBPTT as v
    elif name == "bin_events":
        from snnbp.dense.frames import bin_events as v
    elif name == "run_dense":
        from snnbp.dense.engine import run_dense as v
    else:
        raise AttributeError(name)
    return v
