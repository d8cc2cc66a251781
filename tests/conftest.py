"""Test-wide settings.

SNNBP_TEST_DEVICE=cuda (or cuda:N) runs the dense-engine tests (tests/test_dense_*.py except the
distributed ones) on that GPU: see tests/helpers_device.py. Unset, or cpu, changes nothing. Asking
for CUDA on a machine without it stops the run at once with a message saying so.
"""

from __future__ import annotations

import pytest

import helpers_device


def pytest_configure(config):
    problem = helpers_device.check_device(helpers_device.test_device())
    if problem:
        raise pytest.UsageError(problem)


def pytest_report_header(config):
    return f"snnbp dense-engine tests on: {helpers_device.test_device()} ({helpers_device.VAR})"


@pytest.fixture(autouse=True)
def _dense_test_device(request, monkeypatch):
    device = helpers_device.test_device()
    if device == "cpu" or not helpers_device.applies_to(request.module.__name__):
        yield
        return
    import torch

    for fn, attr, value in helpers_device.device_default_patches(device):
        monkeypatch.setattr(fn, attr, value)
    previous = torch.get_default_device() if hasattr(torch, "get_default_device") else torch.device("cpu")
    torch.set_default_device(device)
    try:
        yield
    finally:
        torch.set_default_device(previous)
