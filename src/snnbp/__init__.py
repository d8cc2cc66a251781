"""snnbp: deep spiking neural networks trained with backpropagation (Lee, Delbruck & Pfeiffer 2016).

Layout (lower layers never import higher ones):
    neuron.py      pure neuron math shared by every engine (decay, refractory weight, initialization)
    model.py       the network description both engines run; safe save/load
    events/        event engine (numba): exact continuous-time simulation
    gradient/      the paper's backward rule (eqs. 6, 11-13)
    data/          MNIST (IDX, offline fetch), Poisson encoding, N-MNIST files and synthetic N-MNIST
    train/         config dataclasses, training loop, checkpoints
    metrics/       accuracy, synaptic operations
    report/        figures
    cli.py         the `snnbp` command
"""

__version__ = "0.1.0"
