"""Training checkpoints: network + optimizer state + progress, one safetensors file, written atomically.

Loading never executes code (safetensors + JSON). A checkpoint holds the resolved config, so
``--resume`` and ``snnbp eval`` need nothing else.
"""

from __future__ import annotations

from pathlib import Path

from snnbp.model import Network, load_tensors, save_tensors_atomic

LAST = "last.safetensors"  # written after every epoch and on interruption
FINAL = "model.safetensors"  # the trained network at the end of the run


def save_checkpoint(path: Path, net: Network, optim_tensors: dict, optim_meta: dict, progress: dict, config: dict) -> None:
    tensors = dict(net.tensors())
    tensors.update(optim_tensors)
    meta = {"network": net.header(), "optimizer": optim_meta, "progress": progress, "config": config}
    save_tensors_atomic(path, tensors, meta)


def load_checkpoint(path: Path) -> tuple[Network, dict, dict, dict, dict]:
    """-> (network, optimizer tensors, optimizer meta, progress, config dict)."""
    from snnbp.errors import DataError

    tensors, meta = load_tensors(path)
    if "network" not in meta:
        raise DataError(f"{path} is not an snnbp checkpoint (no network header)")
    net = Network.from_parts(meta["network"], tensors)
    optim = {k: v for k, v in tensors.items() if k.startswith(("optim.", "partial."))}
    return net, optim, meta.get("optimizer", {}), meta.get("progress", {}), meta.get("config", {})
