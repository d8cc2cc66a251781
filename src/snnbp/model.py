"""The network description that every engine runs, and its safe save/load.

A network is a stack of fully connected spiking layers. Layer l has weights W_l of shape
(M_l, N_l) (W[k, i]: synapse from input k to neuron i), trainable thresholds V_th (N_l,), and a
winner-take-all strength kappa_l (-1 <= kappa < 0; 0 means no lateral inhibition). All layers share
one ``NeuronParams``. Arrays are float32 numpy arrays; ``torch.from_numpy`` views of them are what the
optimizers update, so the engines and the optimizer always see the same memory.

Files are safetensors (tensors only) with a JSON header: loading never executes code.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from snnbp.errors import ConfigError, DataError
from snnbp.neuron import NeuronParams, init_thresholds, init_weight_bound, init_weights


@dataclass
class Network:
    """Weights, thresholds and constants of a fully connected spiking network.

    n_inputs:   number of input channels (784 for MNIST, 2312 for N-MNIST)
    weights:    per layer, (M_l, N_l) float32, M_0 = n_inputs, M_l = N_{l-1}
    thresholds: per layer, (N_l,) float32, V_th > 0
    kappas:     per layer WTA strength (0 = no WTA)
    floors:     per layer lower bound on V_th (method.md 4.4, threshold floor)
    """

    n_inputs: int
    weights: list[np.ndarray]
    thresholds: list[np.ndarray]
    kappas: list[float]
    floors: list[float]
    neuron: NeuronParams = field(default_factory=NeuronParams)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def sizes(self) -> list[int]:
        return [int(w.shape[1]) for w in self.weights]

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def validate(self) -> None:
        fan_in = self.n_inputs
        if not (len(self.weights) == len(self.thresholds) == len(self.kappas) == len(self.floors)):
            raise ConfigError("network: weights, thresholds, kappas and floors need one entry per layer")
        for l, (w, th, k) in enumerate(zip(self.weights, self.thresholds, self.kappas)):
            if w.ndim != 2 or w.shape[0] != fan_in:
                raise ConfigError(f"layer {l}: weights have shape {w.shape}, expected ({fan_in}, N)")
            if th.shape != (w.shape[1],):
                raise ConfigError(f"layer {l}: thresholds have shape {th.shape}, expected ({w.shape[1]},)")
            if not (-1.0 <= k <= 0.0):
                raise ConfigError(f"layer {l}: kappa={k} must lie in [-1, 0] (0 = no WTA)")
            fan_in = w.shape[1]

    @staticmethod
    def create(
        n_inputs: int,
        sizes: list[int],
        kappas: list[float],
        alpha: float | list[float] = 5.0,
        floor_alpha: float = 1.0,
        neuron: NeuronParams | None = None,
        seed: int = 0,
    ) -> "Network":
        """Initialize with the paper's scheme: W ~ U[+-sqrt(3/M)], V_th = alpha sqrt(3/M) (eqs. 9-10).

        The threshold floor is ``floor_alpha * sqrt(3/M)`` (the paper gives no value; method.md
        section 10 item 8 suggests 1-2 sqrt(3/M)).
        """
        if len(kappas) != len(sizes):
            raise ConfigError(f"model.kappas has {len(kappas)} entries but model.hidden+output has {len(sizes)} layers")
        alphas = list(alpha) if isinstance(alpha, (list, tuple)) else [alpha]
        if len(alphas) == 1:
            alphas = alphas * len(sizes)
        if len(alphas) != len(sizes):
            raise ConfigError(f"model.alpha has {len(alphas)} entries; give 1 or one per layer ({len(sizes)})")
        rng = np.random.default_rng(seed)
        weights, thresholds, floors = [], [], []
        fan_in = n_inputs
        for n, a in zip(sizes, alphas):
            weights.append(init_weights(fan_in, n, rng))
            thresholds.append(init_thresholds(fan_in, n, a))
            floors.append(floor_alpha * init_weight_bound(fan_in))
            fan_in = n
        return Network(n_inputs, weights, thresholds, [float(k) for k in kappas], floors, neuron or NeuronParams())

    def copy(self) -> "Network":
        return Network(
            self.n_inputs,
            [w.copy() for w in self.weights],
            [t.copy() for t in self.thresholds],
            list(self.kappas),
            list(self.floors),
            self.neuron,
        )

    # ---- safe serialization ----------------------------------------------------------------

    def header(self) -> dict:
        return {
            "n_inputs": self.n_inputs,
            "sizes": self.sizes,
            "kappas": self.kappas,
            "floors": self.floors,
            "neuron": asdict(self.neuron),
        }

    def tensors(self) -> dict[str, np.ndarray]:
        out = {}
        for l, (w, th) in enumerate(zip(self.weights, self.thresholds)):
            out[f"layer{l}.weight"] = w
            out[f"layer{l}.threshold"] = th
        return out

    @staticmethod
    def from_parts(header: dict, tensors: dict[str, np.ndarray]) -> "Network":
        n = len(header["sizes"])
        return Network(
            int(header["n_inputs"]),
            [np.ascontiguousarray(tensors[f"layer{l}.weight"], dtype=np.float32) for l in range(n)],
            [np.ascontiguousarray(tensors[f"layer{l}.threshold"], dtype=np.float32) for l in range(n)],
            [float(k) for k in header["kappas"]],
            [float(f) for f in header["floors"]],
            NeuronParams(**header["neuron"]),
        )


def save_tensors_atomic(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict) -> None:
    """Write a safetensors file atomically (temp file + os.replace): a crash never leaves half a file.

    ``metadata`` is stored as one JSON string under the key "snnbp".
    """
    from safetensors.numpy import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata={"snnbp": json.dumps(metadata)})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    except (SafetensorError, ValueError, json.JSONDecodeError) as err:
        raise DataError(f"checkpoint {path} is not a readable snnbp safetensors file ({err}); it may be truncated") from None
    return tensors, meta


def save_network(path: str | Path, net: Network, extra: dict | None = None) -> None:
    save_tensors_atomic(path, net.tensors(), {"network": net.header(), **(extra or {})})


def load_network(path: str | Path) -> tuple[Network, dict]:
    tensors, meta = load_tensors(path)
    if "network" not in meta:
        raise DataError(f"{path} holds no snnbp network header; is it an snnbp checkpoint?")
    return Network.from_parts(meta["network"], tensors), meta
