"""Every file snnbp writes or reads for a network: safetensors with one JSON header, written atomically.

Loading never executes code (safetensors holds tensors only; the header is JSON). Three kinds of
file share one format and one loader (``load_tensors``):
  * a network (``save_network`` / ``load_network``): tensors ``layer{l}.weight``, ``layer{l}.threshold``
    and the header {"network": Network.header(), ...};
  * a training checkpoint (``save_checkpoint`` / ``load_checkpoint``): the same plus the optimizer's
    tensors (``optim.*``), the running statistics of an interrupted epoch (``partial.*``), progress
    and the resolved config, so ``--resume`` and ``snnbp eval`` need nothing else;
  * the final model of a run, ``model.safetensors``: a network file whose header also holds the config.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from snnbp.errors import DataError, SnnbpError
from snnbp.files import write_bytes_atomic
from snnbp.model import Network

LAST = "last.safetensors"  # written after every epoch and on interruption
FINAL = "model.safetensors"  # the trained network at the end of the run


def save_checkpoint(path: Path, net: Network, optim_tensors: dict, optim_meta: dict, progress: dict, config: dict) -> None:
    tensors = dict(net.tensors())
    tensors.update(optim_tensors)
    meta = {"network": net.header(), "optimizer": optim_meta, "progress": progress, "config": config}
    save_tensors_atomic(path, tensors, meta)


def load_checkpoint(path: Path) -> tuple[Network, dict, dict, dict, dict]:
    """-> (network, optimizer tensors, optimizer meta, progress, config dict)."""
    tensors, meta = load_tensors(path)
    if "network" not in meta:
        raise DataError(f"{path} is not an snnbp checkpoint (no network header)")
    net = _network_from(path, meta, tensors)
    optim = {k: v for k, v in tensors.items() if k.startswith(("optim.", "partial.", "pending."))}
    return net, optim, meta.get("optimizer", {}), meta.get("progress", {}), meta.get("config", {})


def save_tensors_atomic(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict) -> None:
    """Write a safetensors file atomically (temp file + os.replace): a crash never leaves half a file.

    ``metadata`` is stored as one JSON string under the key "snnbp".
    """
    from safetensors.numpy import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata={"snnbp": json.dumps(metadata)})
    write_bytes_atomic(path, blob, durable=True)


def load_tensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read a safetensors file written by ``save_tensors_atomic``; never executes code."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist; pass the path of a .safetensors file from a run directory")
    try:
        raw = path.read_bytes()
        tensors = load(raw)
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + n])
        meta = json.loads(header.get("__metadata__", {}).get("snnbp", "{}"))
        if not isinstance(meta, dict):
            raise ValueError("its snnbp header is not a JSON object")
    except (SafetensorError, ValueError, AttributeError, json.JSONDecodeError) as err:
        raise DataError(f"checkpoint {path} is not a readable snnbp safetensors file ({err}); it may be truncated") from None
    return tensors, meta


def save_network(path: str | Path, net: Network, extra: dict | None = None) -> None:
    save_tensors_atomic(path, net.tensors(), {"network": net.header(), **(extra or {})})


def load_network(path: str | Path) -> tuple[Network, dict]:
    tensors, meta = load_tensors(path)
    if "network" not in meta:
        raise DataError(f"{path} holds no snnbp network header; is it an snnbp checkpoint?")
    return _network_from(path, meta, tensors), meta


def _network_from(path, meta: dict, tensors: dict[str, np.ndarray]) -> Network:
    """The network of a file's header and tensors; DataError when they are incomplete or disagree
    (a damaged file whose JSON still parses: a missing key, a wrong type, a tensor of the wrong shape)."""
    try:
        return Network.from_parts(meta["network"], tensors)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, SnnbpError) as err:
        raise DataError(f"checkpoint {path} has an incomplete or inconsistent network header or tensors "
                        f"({type(err).__name__}: {err}); it is damaged - use another checkpoint of the run") from None
