"""Run the dense-engine tests on another device: SNNBP_TEST_DEVICE=cuda (used by tests/conftest.py).

The dense engine's entry points take ``device="cpu"`` by default (DenseSNN.from_network, DenseTrainer,
DenseEngine, DenseInput.from_events, bin_events, ...), and the tests call them without a device. To run
the same tests on a GPU, without editing them, conftest.py swaps the default of every parameter named
``device`` whose default is "cpu" in the dense engine and its trainer (DENSE_MODULES; found here, so functions added
later are covered too) and makes the test's own tensors (torch.zeros(...) frames, expected values) land
on that device with torch.set_default_device. Explicit ``device=`` arguments are left alone.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil

VAR = "SNNBP_TEST_DEVICE"
# Test modules with this prefix run on SNNBP_TEST_DEVICE; these stay on the CPU (gloo process groups,
# subprocesses that do not load conftest.py).
PREFIX = "test_dense_"
CPU_ONLY = frozenset({"test_dense_distributed"})


def test_device(environ=None) -> str:
    """The device named by SNNBP_TEST_DEVICE ('cpu' when unset or empty)."""
    value = (os.environ if environ is None else environ).get(VAR, "").strip()
    return value or "cpu"


def check_device(device: str) -> str | None:
    """None if the dense tests can run on ``device`` here, else the reason (a clear one-line message)."""
    import torch

    if device == "cpu":
        return None
    if not (device == "cuda" or device.startswith("cuda:")):
        return f"{VAR}={device!r} is not supported; use cpu or cuda (or cuda:N)"
    if not torch.cuda.is_available():
        return f"{VAR}={device} but torch.cuda.is_available() is False on this machine (no usable GPU); unset {VAR}"
    return None


def applies_to(module_name: str) -> bool:
    name = module_name.rpartition(".")[2]
    return name.startswith(PREFIX) and name not in CPU_ONLY


def _functions(mod):
    """Functions defined in ``mod``: module level, and methods (static, class, plain) of its classes."""
    for obj in vars(mod).values():
        if inspect.isfunction(obj) and obj.__module__ == mod.__name__:
            yield obj
        elif inspect.isclass(obj) and obj.__module__ == mod.__name__:
            for member in vars(obj).values():
                fn = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                if inspect.isfunction(fn):
                    yield fn


DENSE_MODULES = ("snnbp.dense", "snnbp.train.dense_trainer")  # the engine package and its trainer


def _modules(targets):
    for name in targets:
        mod = importlib.import_module(name)
        if hasattr(mod, "__path__"):  # a package: every module in it
            for info in pkgutil.iter_modules(mod.__path__):
                yield importlib.import_module(f"{name}.{info.name}")
        else:
            yield mod


def device_default_patches(device: str, targets=DENSE_MODULES) -> list[tuple[object, str, object]]:
    """(function, '__defaults__' or '__kwdefaults__', new value) for every function of ``targets``
    (packages or modules) with a parameter ``device`` that defaults to "cpu"; the new value
    defaults it to ``device``."""
    patches = []
    for mod in _modules(targets):
        for fn in _functions(mod):
            params = inspect.signature(fn).parameters
            p = params.get("device")
            if p is None or p.default != "cpu":
                continue
            if p.kind == inspect.Parameter.KEYWORD_ONLY:
                patches.append((fn, "__kwdefaults__", {**fn.__kwdefaults__, "device": device}))
            else:
                positional = [q for q in params.values()
                              if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD) and q.default is not q.empty]
                defaults = list(fn.__defaults__)
                defaults[[q.name for q in positional].index("device")] = device
                patches.append((fn, "__defaults__", tuple(defaults)))
    return patches
