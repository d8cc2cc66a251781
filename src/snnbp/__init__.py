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

import hashlib as _hashlib
import os as _os
import pathlib as _pathlib


def _numba_cache_dir() -> str:
    """A numba cache directory keyed by the source of every module of the package.

    numba's on-disk cache (``cache=True``) notices edits only to the file that *defines* a jitted
    function, not to jitted functions it calls from other files (numba's documented "cache
    limitations"), so an edit to gradient/lee2016.py would leave the cached fused training step
    running the old rule. Keying the directory by a hash of all package sources makes every process
    run the code that is on disk; an unchanged install reuses its compiled code.
    """
    src = _pathlib.Path(__file__).resolve().parent
    h = _hashlib.sha256(__version__.encode())
    for p in sorted(src.rglob("*.py")):
        h.update(p.relative_to(src).as_posix().encode())
        h.update(p.read_bytes())
    base = _os.environ.get("SNNBP_CACHE") or _os.path.join(_os.path.expanduser("~"), ".cache", "snnbp")
    return _os.path.join(base, "numba", h.hexdigest()[:16])


# Must run before numba is first imported; respect a cache directory the user chose.
_os.environ.setdefault("NUMBA_CACHE_DIR", _numba_cache_dir())
# numba's OpenMP threading layer shares its thread pool runtime with torch's, which made small torch
# ops (optimizer steps) 50-100x slower after the first parallel numba call; the workqueue layer
# keeps them apart. A user's explicit choice wins.
_os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
