"""The kill probes of scripts/faults.py as a test: real SIGKILLs of real `snnbp train` processes at a chosen
point (between an epoch's metrics line and its checkpoint, inside the first checkpoint write) and at
random moments, each resumed, must end with each epoch recorded once and the metrics and network of a
run never stopped. About 20 s, so marked slow (run with -m slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "faults.py"


@pytest.mark.slow
def test_runs_killed_with_sigkill_resume_to_the_uninterrupted_run():
    p = subprocess.run([sys.executable, str(SCRIPT), "--only", "kill"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("[holds]") == 3, p.stdout
