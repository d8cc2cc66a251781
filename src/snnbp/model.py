"""The network description that every engine runs, and its safe save/load.

A network is a stack of fully connected spiking layers. Layer l has weights W_l of shape
(M_l, N_l) (W[k, i]: synapse from input k to neuron i), trainable thresholds V_th (N_l,), and a
winner-take-all strength kappa_l (-1 <= kappa < 0; 0 means no lateral inhibition). All layers share
one ``NeuronParams``. Arrays are float32 numpy arrays; ``torch.from_numpy`` views of them are what the
optimizers update, so the engines and the optimizer always see the same memory.

A *layered* network (``layers`` set, grammar in architecture.py, e.g. ["conv:20:5", "pool:2", "conv:50:5", "pool:2", "fc:200",
"fc:10"] on ``input_shape`` (P, H, W)) may also hold convolutional layers (both engines:
dense/conv.py, event_engine/layered.py): a conv layer "conv:C:K" has weights (C, C_in, K, K) (torch layout, valid convolution,
stride 1) and one threshold per feature map, stored as (C, 1, 1) so it broadcasts over the map;
"pool:K" is K x K average pooling (window = stride = K) of the spikes feeding the next layer, which
has no parameters of its own. The flat input channel c is the pixel (p, y, x) with
c = (p H + y) W + x (MNIST: 1 x 28 x 28; N-MNIST: 2 x 34 x 34, data/events.py).

``tensors``/``header``/``from_parts`` give the parts a file holds; serialization.py writes and reads
them (safetensors with a JSON header: loading never executes code).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from snnbp.architecture import LayerSpec, describe_layers, is_spatial, layer_io_shapes, parse_layers
from snnbp.errors import ConfigError
from snnbp.neuron import NeuronParams, init_thresholds, init_weight_bound, init_weights


@dataclass
class Network:
    """Weights, thresholds and constants of a spiking network (fully connected unless ``layers``).

    n_inputs:    number of input channels (784 for MNIST, 2312 for N-MNIST)
    weights:     per layer, (M_l, N_l) float32, M_0 = n_inputs, M_l = N_{l-1};
                 conv layers (C, C_in, K, K)
    thresholds:  per layer, (N_l,) float64, V_th > 0; conv layers (C, 1, 1), one per feature map.
                 float64 although weights are float32: late in the paper's schedule the homeostasis
                 and threshold steps (~1e-8) are below float32 resolution of V_th ~ 1 and rounded
                 away unevenly (event_engine/kernels._homeostasis); given float32 arrays are converted.
    kappas:      per layer WTA strength (0 = no WTA; conv: across the maps at each location)
    floors:      per layer lower bound on V_th (docs/method.md 4.4, threshold floor)
    input_shape: (P, H, W) of the input channels, layered networks only
    layers:      the layer list (module doc), or None for a fully connected network
    """

    n_inputs: int
    weights: list[np.ndarray]
    thresholds: list[np.ndarray]
    kappas: list[float]
    floors: list[float]
    neuron: NeuronParams = field(default_factory=NeuronParams)
    input_shape: tuple[int, ...] | None = None
    layers: list[str] | None = None

    def __post_init__(self) -> None:
        self.thresholds = [np.ascontiguousarray(t, dtype=np.float64) for t in self.thresholds]
        if self.input_shape is not None:
            self.input_shape = tuple(int(v) for v in self.input_shape)
        if self.layers is not None:
            self.layers = [str(v) for v in self.layers]
        self.validate()

    @property
    def specs(self) -> list[LayerSpec] | None:
        return None if self.layers is None else parse_layers(self.layers, "network layers")

    @property
    def is_spatial(self) -> bool:
        """Holds conv or pool layers (event engine: event_engine/layered.py; dense: dense/conv.py)."""
        return self.layers is not None

    @property
    def sizes(self) -> list[int]:
        """Neurons per layer (a conv layer: C x H' x W')."""
        if self.layers is None:
            return [int(w.shape[1]) for w in self.weights]
        return [math.prod(o) for _, o in layer_io_shapes(self.input_shape, self.specs)]

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def describe(self) -> str:
        """784-800-10, or 1x28x28-20C5-P2-50C5-P2-200-10 for a layered network."""
        if self.layers is None:
            return f"{self.n_inputs}-" + "-".join(map(str, self.sizes))
        return describe_layers(self.input_shape, self.specs)

    def validate(self) -> None:
        fan_in = self.n_inputs
        if not (len(self.weights) == len(self.thresholds) == len(self.kappas) == len(self.floors)):
            raise ConfigError("network: weights, thresholds, kappas and floors need one entry per layer")
        if self.layers is not None:
            self._validate_layered()
            return
        for l, (w, th, k) in enumerate(zip(self.weights, self.thresholds, self.kappas)):
            if w.ndim != 2 or w.shape[0] != fan_in:
                raise ConfigError(f"layer {l}: weights have shape {w.shape}, expected ({fan_in}, N)")
            if th.shape != (w.shape[1],):
                raise ConfigError(f"layer {l}: thresholds have shape {th.shape}, expected ({w.shape[1]},)")
            if not (-1.0 <= k <= 0.0):
                raise ConfigError(f"layer {l}: kappa={k} must lie in [-1, 0] (0 = no WTA)")
            fan_in = w.shape[1]

    def _validate_layered(self) -> None:
        if self.input_shape is None or len(self.input_shape) != 3 or math.prod(self.input_shape) != self.n_inputs:
            raise ConfigError(f"network: input_shape {self.input_shape} must be (P, H, W) with P*H*W = n_inputs = "
                              f"{self.n_inputs}; set model.input_shape, e.g. [1, 28, 28] for MNIST, [2, 34, 34] for N-MNIST")
        specs = self.specs
        if len(specs) != len(self.weights):
            raise ConfigError(f"network: {len(specs)} spiking layers in {self.layers} but {len(self.weights)} weight arrays")
        for l, (sp, (i, o), w, th, k) in enumerate(zip(specs, layer_io_shapes(self.input_shape, specs), self.weights,
                                                       self.thresholds, self.kappas)):
            want_w = (sp.size, i[0], sp.kernel, sp.kernel) if sp.kind == "conv" else (math.prod(i), sp.size)
            want_t = (sp.size, 1, 1) if sp.kind == "conv" else (sp.size,)
            if tuple(w.shape) != want_w:
                raise ConfigError(f"layer {l} ({sp}): weights have shape {tuple(w.shape)}, expected {want_w}")
            if tuple(th.shape) != want_t:
                raise ConfigError(f"layer {l} ({sp}): thresholds have shape {tuple(th.shape)}, expected {want_t}")
            if not (-1.0 <= k <= 0.0):
                raise ConfigError(f"layer {l}: kappa={k} must lie in [-1, 0] (0 = no WTA)")

    @staticmethod
    def create_layered(
        input_shape: tuple[int, ...],
        layers: list[str],
        kappas: list[float],
        alpha: float | list[float] = 5.0,
        floor_alpha: float = 1.0,
        neuron: NeuronParams | None = None,
        seed: int = 0,
    ) -> "Network":
        """The paper's initialization (eqs. 9-10) with M = the receptive field of a layer:
        conv "conv:C:K" on C_in maps: M = C_in K^2; fc after (pooled) maps: M = C H W of its input.

        W ~ U[+-sqrt(3/M)], V_th = alpha sqrt(3/M), floor = floor_alpha sqrt(3/M). A conv kernel is
        drawn as the (M, C) matrix of ``init_weights`` (column i = filter i) and reshaped.
        A list without conv/pool entries gives the plain fully connected network of ``create``.
        """
        specs = parse_layers(layers, "model.layers")
        if len(kappas) != len(specs):
            raise ConfigError(f"model.kappa has {len(kappas)} entries but model.layers has {len(specs)} conv/fc layers")
        alphas = list(alpha) if isinstance(alpha, (list, tuple)) else [alpha]
        alphas = alphas * len(specs) if len(alphas) == 1 else alphas
        if len(alphas) != len(specs):
            raise ConfigError(f"model.alpha has {len(alphas)} entries; give 1 or one per conv/fc layer ({len(specs)})")
        n_inputs = math.prod(input_shape)
        if not is_spatial(layers):
            return Network.create(n_inputs, [sp.size for sp in specs], kappas, alphas, floor_alpha, neuron, seed)
        rng = np.random.default_rng(seed)
        weights, thresholds, floors = [], [], []
        for sp, (i, _), a in zip(specs, layer_io_shapes(input_shape, specs), alphas):
            if sp.kind == "conv":
                m = i[0] * sp.kernel * sp.kernel
                weights.append(np.ascontiguousarray(init_weights(m, sp.size, rng).T.reshape(sp.size, i[0], sp.kernel, sp.kernel)))
                thresholds.append(init_thresholds(m, sp.size, a).reshape(sp.size, 1, 1))
            else:
                m = math.prod(i)
                weights.append(init_weights(m, sp.size, rng))
                thresholds.append(init_thresholds(m, sp.size, a))
            floors.append(floor_alpha * init_weight_bound(m))
        return Network(n_inputs, weights, thresholds, [float(k) for k in kappas], floors, neuron or NeuronParams(),
                       tuple(input_shape), list(layers))

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

        The threshold floor is ``floor_alpha * sqrt(3/M)`` (the paper gives no value; docs/method.md
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
            self.input_shape,
            None if self.layers is None else list(self.layers),
        )

    # ---- safe serialization ----------------------------------------------------------------

    def header(self) -> dict:
        h = {
            "n_inputs": self.n_inputs,
            "sizes": self.sizes,
            "kappas": self.kappas,
            "floors": self.floors,
            "neuron": asdict(self.neuron),
        }
        if self.layers is not None:  # fully connected headers stay exactly as before
            h.update(input_shape=list(self.input_shape), layers=list(self.layers))
        return h

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
            [np.ascontiguousarray(tensors[f"layer{l}.threshold"], dtype=np.float64) for l in range(n)],
            [float(k) for k in header["kappas"]],
            [float(f) for f in header["floors"]],
            NeuronParams(**header["neuron"]),
            tuple(header["input_shape"]) if header.get("layers") is not None else None,
            list(header["layers"]) if header.get("layers") is not None else None,
        )
