"""The lines of metrics.jsonl in epoch order, some of them still waiting for their test.

With background evaluation (train/background_eval.py) an epoch's record is complete only when its
test has come back, possibly epochs later. ``MetricsLines`` keeps the records not yet written, writes
the complete prefix right before each checkpoint (never out of order, never a line twice), and hands
the checkpoint what it must keep: the unwritten records (``Progress.unwritten``) and the network
snapshots still waiting for a test (tensors ``pending.<epoch>.<name>``). The commit rule of run_dir.py
is unchanged: a checkpoint covers ``Progress.metrics_rows`` lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PENDING = "pending."  # checkpoint tensor prefix of snapshots waiting for their test
_AWAITING, _COMPLETE = "_awaiting_test", "_epoch_complete"  # bookkeeping keys, never written to metrics.jsonl


def add_evaluation(record: dict, ev: dict) -> None:
    """Copy an evaluation's numbers (metrics.evaluate) into an epoch record."""
    record.update(test_accuracy=ev["test_accuracy"], test_synops_per_sample=ev["synops_per_sample"],
                  test_spikes_per_layer=ev["spikes_per_layer"], eval_wall_s=ev["wall_s"])


class MetricsLines:
    """Records of epochs not yet in metrics.jsonl, oldest first (module doc).

    prog: the run's ``Progress``; its ``unwritten`` records (from a checkpoint) are taken over and its
    ``metrics_rows`` counts the committed lines written. evaluator: a ``BackgroundEvaluator`` or None.
    """

    def __init__(self, path: Path, prog, evaluator=None, log=print):
        self.path, self.prog, self.evaluator, self.log = Path(path), prog, evaluator, log
        # An unwritten record of an epoch cut short (a budget stop) goes: the resumed run completes that
        # epoch and records it whole.
        self.records: list[dict] = [r for r in (prog.unwritten or []) if r.get(_COMPLETE)]
        prog.unwritten = None
        self.last_eval: dict | None = None

    def resubmit(self, tensors: dict[str, np.ndarray], template, inline) -> None:
        """After a resume: test again the snapshots the checkpoint kept (``inline(net)`` without a worker)."""
        for r in self.records:
            if r.get(_AWAITING):
                prefix = f"{PENDING}{r['epoch']}."
                snap = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                if self.evaluator is not None:
                    self.evaluator.submit(r["epoch"], snap)
                else:
                    from snnbp.model import Network

                    self._fill(r, inline(Network.from_parts(template.header(), snap)))

    def add(self, record: dict, complete: bool, ev: dict | None = None, awaiting: bool = False) -> None:
        """Queue an epoch's record: tested already (ev), waiting for a background test, or not tested."""
        record[_COMPLETE] = bool(complete)
        if awaiting:
            record[_AWAITING] = True
        self.records.append(record)
        if ev is not None:
            self._fill(record, ev)

    def _fill(self, record: dict, ev: dict) -> None:
        add_evaluation(record, ev)
        record.pop(_AWAITING, None)
        self.last_eval = ev
        self.log(f"epoch {record['epoch']}: train acc {record.get('train_accuracy', float('nan')):.4f}  "
                 f"test acc {ev['test_accuracy']:.4f}")

    def collect(self) -> None:
        """Move every finished background test into its record (never blocks)."""
        if self.evaluator is None:
            return
        for r in self.records:
            if r.get(_AWAITING):
                ev = self.evaluator.result(r["epoch"])
                if ev is not None:
                    self._fill(r, ev)

    def flush(self) -> int:
        """Append the complete records that no earlier record waits behind; returns how many."""
        self.collect()
        n = 0
        while n < len(self.records) and not self.records[n].get(_AWAITING):
            n += 1
        if n == 0:
            return 0
        with open(self.path, "a") as f:
            for r in self.records[:n]:
                f.write(json.dumps({k: v for k, v in r.items() if k not in (_AWAITING, _COMPLETE)}) + "\n")
                # A line of an epoch cut short by train.max_minutes is written for the summary and report but
                # not committed: a resume that lifts the budget finishes that epoch and writes its line then.
                if r[_COMPLETE]:
                    self.prog.metrics_rows = (self.prog.metrics_rows or 0) + 1
        del self.records[:n]
        return n

    def checkpoint_parts(self) -> tuple[list[dict] | None, dict[str, np.ndarray]]:
        """(records a checkpoint keeps as ``Progress.unwritten``, snapshot tensors it keeps)."""
        self.collect()
        tensors = {}
        if self.evaluator is not None:
            for epoch, snap in self.evaluator.waiting().items():
                if any(r["epoch"] == epoch and r.get(_AWAITING) for r in self.records):
                    tensors.update({f"{PENDING}{epoch}.{k}": v for k, v in snap.items()})
        return (list(self.records) or None), tensors

    @property
    def waiting(self) -> bool:
        return any(r.get(_AWAITING) for r in self.records)
