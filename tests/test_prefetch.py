"""train/prefetch.py: the next chunk is drawn in a background thread, in order, errors in place."""

from __future__ import annotations

import threading

import pytest

from snnbp.train.prefetch import prefetched


def test_prefetched_yields_in_order_and_draws_in_another_thread():
    main = threading.get_ident()
    drawn_on = []

    def make(k):
        drawn_on.append(threading.get_ident())
        return k * k

    assert list(prefetched(range(5), make)) == [(k, k * k) for k in range(5)]
    assert drawn_on and all(t != main for t in drawn_on)
    assert list(prefetched([], make)) == []


def test_prefetched_raises_at_the_failing_key_and_stops_early_on_close():
    calls = []

    def make(k):
        calls.append(k)
        if k == 2:
            raise ValueError("bad chunk 2")
        return k

    got = []
    with pytest.raises(ValueError, match="bad chunk 2"):
        for k, v in prefetched(range(10), make):
            got.append(v)
    assert got == [0, 1] and max(calls) <= 3  # at most one draw ahead
    calls.clear()
    gen = prefetched(range(100), lambda k: calls.append(k) or k)
    next(gen)
    gen.close()
    assert len(calls) <= 2
