"""The layer grammar of a layered network: "conv:C:K", "pool:K", "fc:N" (model.Network.layers).

A "conv:C:K" layer has C feature maps and a K x K kernel (valid convolution, stride 1); "pool:K" is
K x K average pooling (window = stride = K) of the spikes feeding the next spiking layer, folded into
that layer's ``LayerSpec``; "fc:N" is a fully connected layer of N neurons, and the list ends with
the fully connected output layer. Pure functions: no arrays, no engines.
"""

from __future__ import annotations

from dataclasses import dataclass

from snnbp.errors import ConfigError


@dataclass(frozen=True)
class LayerSpec:
    """One entry of a layered network: "conv:C:K" (C maps, K x K kernel) or "fc:N", with the K x K
    average pooling of its input that a preceding "pool:K" entry asks for (pool = 1: none)."""

    kind: str  # "conv" | "fc"
    size: int  # conv: output channels C; fc: neurons N
    kernel: int = 0  # conv only
    pool: int = 1

    def __str__(self) -> str:
        body = f"conv:{self.size}:{self.kernel}" if self.kind == "conv" else f"fc:{self.size}"
        return (f"pool:{self.pool}," if self.pool > 1 else "") + body


def parse_layers(items: list[str], key: str = "model.layers") -> list[LayerSpec]:
    """["conv:20:5", "pool:2", ..., "fc:10"] -> one LayerSpec per spiking (conv/fc) layer.

    A "pool:K" entry is folded into the layer after it. Errors name the entry (key[i]).
    """
    specs: list[LayerSpec] = []
    pool = 1
    for i, item in enumerate(items):
        parts = str(item).strip().lower().split(":")
        try:
            nums = [int(p) for p in parts[1:]]
        except ValueError:
            nums = []
        ok = (parts[0] == "conv" and len(nums) == 2) or (parts[0] in ("fc", "pool") and len(nums) == 1)
        if not ok or any(n < 1 for n in nums):
            raise ConfigError(f"{key}[{i}] = {item!r} is not a layer; use 'conv:CHANNELS:KERNEL', 'pool:K' or 'fc:N' "
                              "with positive integers")
        if parts[0] == "pool":
            if pool > 1:
                raise ConfigError(f"{key}[{i}]: two pool entries in a row; merge them into one pool:K")
            pool = nums[0]
            continue
        specs.append(LayerSpec(parts[0], nums[0], nums[1] if parts[0] == "conv" else 0, pool))
        pool = 1
    if pool > 1:
        raise ConfigError(f"{key} ends with a pool entry; a pool feeds the spiking layer after it")
    if not specs or specs[-1].kind != "fc":
        raise ConfigError(f"{key} must end with the fully connected output layer, e.g. 'fc:10'")
    return specs


def describe_layers(input_shape: tuple[int, ...], specs: list[LayerSpec]) -> str:
    """1x28x28-20C5-P2-50C5-P2-200-10: the input map, then each layer (pooling as P<K>, conv as <C>C<K>)."""
    parts = ["x".join(map(str, input_shape))]
    for sp in specs:
        parts += ([f"P{sp.pool}"] if sp.pool > 1 else []) + [f"{sp.size}C{sp.kernel}" if sp.kind == "conv" else str(sp.size)]
    return "-".join(parts)


def is_spatial(items: list[str] | None) -> bool:
    """True when a layer list holds a conv or pool entry (a layered network with a (P, H, W) input)."""
    return bool(items) and any(str(i).strip().lower().split(":")[0] in ("conv", "pool") for i in items)


def layer_io_shapes(input_shape: tuple[int, ...], specs: list[LayerSpec]) -> list[tuple[tuple, tuple]]:
    """(input shape after the layer's pooling, output shape) of every layer; ConfigError on a shape
    that does not fit (pooling needs maps divisible by K; a kernel must fit in its input map)."""
    cur = tuple(int(v) for v in input_shape)
    out = []
    for l, sp in enumerate(specs):
        if sp.pool > 1:
            if len(cur) != 3 or cur[1] % sp.pool or cur[2] % sp.pool:
                raise ConfigError(f"layer {l} ({sp}): pool:{sp.pool} needs a (C, H, W) map with H and W divisible by "
                                  f"{sp.pool}, got {cur}; change the kernel sizes or the pool size")
            cur = (cur[0], cur[1] // sp.pool, cur[2] // sp.pool)
        if sp.kind == "conv":
            if len(cur) != 3 or sp.kernel > min(cur[1], cur[2]):
                raise ConfigError(f"layer {l} ({sp}): a {sp.kernel}x{sp.kernel} kernel needs a (C, H, W) input of at "
                                  f"least that size, got {cur}")
            nxt = (sp.size, cur[1] - sp.kernel + 1, cur[2] - sp.kernel + 1)
        else:
            nxt = (sp.size,)
        out.append((cur, nxt))
        cur = nxt
    return out
