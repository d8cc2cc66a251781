"""scripts/gpu_check.sh and SNNBP_TEST_DEVICE without a GPU: clear messages, documented exit codes, and
the device switch of tests/conftest.py reaching every device default of the dense engine."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import helpers_device
from snnbp.data.events import EventBatch
from snnbp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on machines without CUDA")


def test_device_variable_parsing_and_checks():
    assert helpers_device.test_device({}) == "cpu" and helpers_device.test_device({"SNNBP_TEST_DEVICE": " "}) == "cpu"
    assert helpers_device.test_device({"SNNBP_TEST_DEVICE": "cuda"}) == "cuda"
    assert helpers_device.check_device("cpu") is None
    assert "not supported" in helpers_device.check_device("tpu")
    assert helpers_device.applies_to("test_dense_engine") and helpers_device.applies_to("tests.test_dense_trainer")
    assert not helpers_device.applies_to("test_dense_distributed") and not helpers_device.applies_to("test_bench")


def test_every_dense_entry_point_with_a_cpu_default_is_switched(monkeypatch):
    from snnbp.dense.frames import DenseInput, bin_events
    from snnbp.dense.model import DenseSNN
    from snnbp.train.dense_trainer import DenseEngine, DenseTrainer

    patches = helpers_device.device_default_patches("cuda")
    found = {fn.__qualname__ for fn, _, _ in patches}
    assert {"DenseSNN.from_network", "DenseTrainer.__init__", "DenseEngine.__init__", "DenseInput.from_events",
            "bin_events"} <= found
    for fn, attr, value in patches:
        monkeypatch.setattr(fn, attr, value)
    for fn in (DenseSNN.from_network, DenseTrainer.__init__, DenseEngine.__init__, DenseInput.from_events, bin_events):
        assert inspect.signature(fn).parameters["device"].default == "cuda", fn
    if not torch.cuda.is_available():  # the switched default really reaches the device check
        b = EventBatch.from_lists([np.array([0], np.int32)], [np.array([0.0])], [1000.0])
        with pytest.raises(ConfigError, match="no usable CUDA"):
            DenseInput.from_events(b, 2, 1.0)


@no_cuda
def test_pytest_refuses_cuda_without_a_gpu():
    env = {**os.environ, "SNNBP_TEST_DEVICE": "cuda"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_dense_engine.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "torch.cuda.is_available() is False" in proc.stdout + proc.stderr


@no_cuda
@pytest.mark.parametrize("flags,code", [([], 0), (["--require-gpu"], 3)])
def test_gpu_check_without_a_gpu_says_so(tmp_path, flags, code):
    out = tmp_path / "gpu.md"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--out", str(out), *flags],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "NO GPU PRESENT" in proc.stdout and "nothing was checked" in proc.stdout
    assert not out.exists()


def test_gpu_check_rejects_unknown_options():
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--bogus"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "unknown option --bogus" in proc.stderr
