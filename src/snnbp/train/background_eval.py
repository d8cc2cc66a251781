"""Test evaluations in a worker process while training goes on (``train.background_eval``).

Per-sample SGD, the paper's protocol, trains on one core: each sample's update needs the weights the
previous sample left. The protocol also tests the whole test set at 1 s presentations 38 times (every
10th epoch and each of the last 20); done inline on a 2-core machine that was 31 % of the 784-800-10
run's wall time (results/mnist-800-lrth3: 2,178 s training, 978 s testing). Here each due evaluation
takes a snapshot of the network to one worker process, which tests it on the cores training leaves
free while training continues; once training has ended, the evaluations still queued get every core.

A background evaluation gives exactly the numbers of an inline one: an evaluation is a pure function of
(network, data config, seed), since the test draw is fixed (data/sources.py), and the event engine's
results do not depend on the number of threads (tests/test_determinism.py).

Ordering and resume live in the loop (train/loop.py, ``MetricsLines``): records are written in epoch
order, only right before a checkpoint, and a checkpoint keeps the records not yet written together
with the snapshots still waiting for their test, so a resumed run submits them again.
"""

from __future__ import annotations

import json
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

_SOURCES: dict[str, object] = {}  # worker side: the data source per (data config, seed), built once


def _exit_with_parent(parent_pid: int, period_s: float = 2.0) -> None:
    """Worker initializer: end this process once its parent is gone.

    A trainer stopped by a signal (kill, a session's end) cannot shut its pool down, and the worker
    would otherwise finish its 10k-digit test at 1 s (minutes of a core) for nobody, and sit idle after.
    A daemon thread checks the parent's pid every ``period_s`` (the compiled test kernels release
    the GIL between chunks, so it gets to run).
    """
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(period_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _evaluate_snapshot(cfg_dict: dict, header: dict, tensors: dict[str, np.ndarray], threads: int) -> dict:
    """Worker: test the network given by (header, tensors) on the run's test set with ``threads`` threads."""
    import numba

    from snnbp.config import load_config
    from snnbp.data.sources import make_source
    from snnbp.metrics.evaluate import evaluate
    from snnbp.model import Network

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    cfg = load_config(None, [], base=cfg_dict)
    key = json.dumps([cfg_dict["data"], cfg.train.seed], sort_keys=True)
    if key not in _SOURCES:
        _SOURCES.clear()  # one run per worker; never keep two datasets alive
        _SOURCES[key] = make_source(cfg.data, cfg.train.seed)
    return evaluate(Network.from_parts(header, tensors), _SOURCES[key], progress_bar=False)


def snapshot(net) -> dict[str, np.ndarray]:
    """Copies of the network's arrays (training goes on changing the originals in place)."""
    return {k: np.array(v, copy=True) for k, v in net.tensors().items()}


class BackgroundEvaluator:
    """One worker process testing network snapshots in submission order, one at a time.

    While training runs the worker uses ``cores - 1`` threads (per-sample training holds one core);
    ``drain`` gives it every core. If the worker process dies (killed, out of memory), the evaluations
    it had not finished run inline in this process instead (``inline``), so no epoch loses its test.
    """

    def __init__(self, cfg_dict: dict, header: dict, inline, cores: int | None = None, log=print):
        import multiprocessing

        self._cfg, self._header, self._inline, self._log = cfg_dict, header, inline, log
        self._cores = max(1, cores or os.cpu_count() or 1)
        self._threads = max(1, self._cores - 1)
        # spawn, not fork: the parent holds numba's and torch's thread pools, which a fork does not copy safely.
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_exit_with_parent, initargs=(os.getpid(),))
        self._queue: deque[tuple[int, dict]] = deque()
        self._running: tuple[int, dict, Future] | None = None
        self._done: dict[int, tuple[dict, dict]] = {}  # epoch -> (evaluation, snapshot), until taken
        self._broken = False  # the worker died: every later test runs inline

    def submit(self, epoch: int, tensors: dict[str, np.ndarray]) -> None:
        self._queue.append((epoch, tensors))
        self.poll()

    def poll(self) -> None:
        """Collect a finished evaluation and start the next queued one (never blocks)."""
        if self._running is not None and self._running[2].done():
            epoch, tensors, fut = self._running
            self._running = None
            self._done[epoch] = (self._result(epoch, tensors, fut), tensors)
        if self._running is None and self._queue:
            epoch, tensors = self._queue.popleft()
            if self._broken:
                self._done[epoch] = (self._test_inline(tensors), tensors)
                return
            try:
                fut = self._pool.submit(_evaluate_snapshot, self._cfg, self._header, tensors, self._threads)
            except (BrokenProcessPool, RuntimeError) as exc:
                fut = Future()
                fut.set_exception(exc)
            self._running = (epoch, tensors, fut)

    def _result(self, epoch: int, tensors: dict, fut: Future) -> dict:
        try:
            return fut.result()
        except BrokenProcessPool as exc:
            self._broken = True
            self._log(f"the background test process died while testing epoch {epoch} ({exc}); "
                      "this and every later test run in the training process")
            return self._test_inline(tensors)

    def _test_inline(self, tensors: dict) -> dict:
        from snnbp.model import Network

        return self._inline(Network.from_parts(self._header, tensors))

    def result(self, epoch: int) -> dict | None:
        """The evaluation of ``epoch`` if it has finished (and was not taken before), else None."""
        self.poll()
        got = self._done.pop(epoch, None)
        return None if got is None else got[0]

    def drain(self) -> None:
        """Wait for every submitted evaluation, now with every core (training has ended)."""
        self._threads = self._cores
        while self._running is not None or self._queue:
            if self._running is not None:
                self._running[2].exception()  # wait
            self.poll()

    def waiting(self) -> dict[int, dict[str, np.ndarray]]:
        """Snapshots whose evaluation has not been taken by ``result`` (queued, running or finished), by
        epoch: what a checkpoint keeps (a resume tests them again)."""
        out = {e: t for e, (_, t) in self._done.items()}
        out.update({e: t for e, t in self._queue})
        if self._running is not None:
            out[self._running[0]] = self._running[1]
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
