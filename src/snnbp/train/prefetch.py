"""Draw the next training chunk while the current one trains.

Per-sample SGD runs on one core; drawing a chunk's input (Poisson events for MNIST, crops for N-MNIST) cost
about 30 us per 50 ms MNIST sample on top of its ~190 us of training (13 %), on the same core. One
background thread now draws chunk k + 1 while chunk k trains; the compiled training and drawing
kernels release the GIL (``nogil=True``), so the two run on different cores.

Nothing changes in what is trained: every chunk is a pure function of (seed, epoch, sample indices)
(data.poisson, data.sources), so drawing it earlier, on another thread, gives the same events; the
training order is the caller's. The drawing thread runs no parallel kernel (data.poisson draws serially
off the main thread; numba's workqueue threading layer aborts when two threads use it at once, and even
numba.set_num_threads counts as a use), so it takes at most one core.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def prefetched(keys: Iterable[K], make: Callable[[K], V]) -> Iterator[tuple[K, V]]:
    """Yield (key, make(key)) in the order of ``keys``, computing the next make() in a background thread.

    An exception raised by make() is raised here, at the key it belongs to. Closing the generator early
    (break, an error in the caller) waits for the one draw in flight and stops.
    """
    it = iter(keys)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="snnbp-prefetch") as pool:
        done = object()
        key = next(it, done)
        pending = pool.submit(make, key) if key is not done else None
        while pending is not None:
            value = pending.result()
            current = key
            key = next(it, done)
            pending = pool.submit(make, key) if key is not done else None
            yield current, value
