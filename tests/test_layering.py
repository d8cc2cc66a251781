"""The package's layers import only downward (README, Layout): a module may import its own layer and
the layers below it, never one above. The order is the README's; this test reads every module's
imports (also those inside functions) from its source, so a lazy upward import fails it too."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "snnbp"

# Lowest first; names in one tuple share a layer. Top-level modules and packages of snnbp.
LAYERS = [
    ("errors", "files", "neuron", "gradient"),  # pure: numbers in, numbers out; stdlib file helpers
    ("architecture",),                 # the layer grammar
    ("config",),                       # run configuration
    ("model",),                        # Network
    ("serialization",),                # files of networks and checkpoints
    ("data",),                         # datasets, event batches, sources
    ("event_engine",),                 # exact continuous-time simulation (numba)
    ("dense",),                        # time-grid engine (torch)
    ("metrics",),                      # accuracy, operations, health
    ("ann",),                          # conventional baselines (MLP / CNN of a preset's shape)
    ("train",),                        # trainers, loop, reproduction
    ("report",),                       # figures from run directories
    ("bench",),                        # benchmarks
    ("cli", "__main__", "__init__"),   # the command line
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _layer_of(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "snnbp":
                for alias in node.names:
                    yield f"snnbp.{alias.name}", node.lineno
            elif node.module.startswith("snnbp."):
                yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("snnbp."):
                    yield alias.name, node.lineno


def _module_layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def test_every_module_belongs_to_a_layer():
    found = {_module_layer(p) for p in SRC.rglob("*.py")}
    assert found <= set(RANK), f"modules outside the layer list (add them to README and LAYERS): {found - set(RANK)}"


def test_no_module_imports_a_layer_above_its_own():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        own = _module_layer(path)
        for target, line in _imports(path):
            layer = _layer_of(target)
            if layer not in RANK:
                bad.append(f"{path.relative_to(SRC)}:{line} imports unknown {target}")
            elif RANK[layer] > RANK[own]:
                bad.append(f"{path.relative_to(SRC)}:{line} ({own}) imports {target} ({layer}), a layer above")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_an_upward_import(tmp_path):
    # The check must be able to fail: a lazy import of train/ inside a data/ function is caught.
    mod = tmp_path / "probe.py"
    mod.write_text("def f():\n    from snnbp.train.loop import train\n    import snnbp.cli\n")
    targets = [t for t, _ in _imports(mod)]
    assert targets == ["snnbp.train.loop", "snnbp.cli"]
    assert all(RANK[_layer_of(t)] > RANK["data"] for t in targets)
