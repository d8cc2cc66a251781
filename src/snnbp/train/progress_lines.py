"""Progress of an epoch as log lines, for runs without a terminal (nohup, CI, a reproduction row).

The tqdm bar of train/loop.py is off when stderr is not a terminal, and a long epoch (the 200 ms
warm-up of a two-hidden-layer net, a conv epoch on one core) would otherwise run for many minutes
without a sign of life. After a chunk, at most every ``every_s`` seconds of wall time, one line:

    epoch 3/200: 24,000/60,000 samples, 3,480 samples/s, train acc 95.12 %, spikes/sample [52.3, 1.5]

The accuracy and spikes are the running sums of this epoch so far (what metrics.jsonl will record
for the whole epoch), so a runaway or a collapse shows while it happens.
"""

from __future__ import annotations

import time
from typing import Callable

from snnbp.train.protocol import ChunkStats


class ProgressLines:
    """Logs ``label``'s progress after a chunk when ``every_s`` (> 0) seconds have passed since the last line."""

    def __init__(self, label: str, n_total: int, log: Callable[[str], None], every_s: float,
                 clock: Callable[[], float] = time.perf_counter):
        self.label, self.n_total, self.log, self.every_s, self.clock = label, n_total, log, float(every_s), clock
        self.t_start = self.t_last = clock()
        self.samples_here = 0  # trained by this process in this epoch (a resumed epoch starts mid-way)

    def after_chunk(self, done: int, chunk_samples: int, total: ChunkStats | None) -> bool:
        """Called after each chunk with the epoch's samples done so far; returns whether a line was logged."""
        self.samples_here += chunk_samples
        now = self.clock()
        if self.every_s <= 0 or now - self.t_last < self.every_s or done >= self.n_total:
            return False  # the epoch's own line follows at its end
        self.t_last = now
        rate = self.samples_here / max(now - self.t_start, 1e-9)
        line = f"{self.label}: {done:,}/{self.n_total:,} samples, {rate:,.0f} samples/s"
        if total is not None and total.samples > 0:
            spikes = ", ".join(f"{s / total.samples:.1f}" for s in total.spikes)
            line += f", train acc {100 * total.correct / total.samples:.2f} %, spikes/sample [{spikes}]"
        self.log(line)
        return True
