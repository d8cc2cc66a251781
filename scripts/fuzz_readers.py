"""Fuzz the binary readers for a while: every input must give a valid result or a DataError.

    python scripts/fuzz_readers.py [--seconds 60] [--seed 0] [--targets decode,mutate,roundtrip,idx,zip]
                                   [--save DIR]

The longer run of the properties in tests/test_property_readers.py (and of the zip check in
tests/test_nmnist_robustness.py), driven by a seeded numpy generator instead of hypothesis so that it runs
flat out for a fixed time:

  decode     N-MNIST ``decode_events`` on random bytes (biased to small values, overflow markers, sizes
             near multiples of 5), with and without limits
  mutate     ``decode_events`` on valid encodings with random edits; what decodes must re-encode exactly
  roundtrip  ``encode_events`` then ``decode_events`` returns the events (times up to 3 x 2**23 us)
  idx        ``read_idx`` on random and mutated IDX files, plain and gzip, including headers with valid
             magic and random dims
  zip        ``NMNIST`` over a small official-layout zip with random bytes changed

Prints, per target, the inputs tried and how many gave a valid result, a DataError, or anything else
(an exception of another kind, or a result that breaks the property). Exits 1 if anything else happened
(the first tracebacks are printed; with --save every failing input is written to DIR), 0 otherwise.
Time is split evenly between the targets. Not a test module: pytest never collects it.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from snnbp.data.events import EVENT_DTYPE, NMNIST_SENSOR
from snnbp.data.idx import encode_idx, read_idx
from snnbp.data.nmnist import NMNIST, load_all
from snnbp.data.nmnist_format import (
    BYTES_PER_EVENT,
    OVERFLOW_INCREMENT_US,
    OVERFLOW_Y,
    TS_MAX,
    ReadLimits,
    decode_events,
    encode_events,
)
from snnbp.errors import DataError

SMALL_LIMITS = ReadLimits(max_duration_us=3 * OVERFLOW_INCREMENT_US, max_events=20)
IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
TARGETS = ("decode", "mutate", "roundtrip", "idx", "zip")
SHOW_FAILURES = 5  # tracebacks printed per target; the rest are only counted


class PropertyFailed(AssertionError):
    """A reader returned something that is not a valid result."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise PropertyFailed(what)


# ---------------------------------------------------------------------------------------------- inputs


def random_bytes(rng: np.random.Generator, max_size: int = 400) -> bytes:
    """Random bytes, half the time from a small alphabet (0, 1, 33, 34, 240, 255) that hits the edge cases."""
    n = int(rng.integers(0, max_size + 1))
    if rng.random() < 0.5:
        n -= n % BYTES_PER_EVENT  # whole records, so decoding gets past the size check
    if rng.random() < 0.5:
        return rng.choice(np.array([0, 1, 33, 34, 127, 128, 240, 255], np.uint8), n).tobytes()
    return rng.integers(0, 256, n, dtype=np.uint8).tobytes()


def random_events(rng: np.random.Generator, max_events: int = 200, jumps: float = 0.02) -> np.ndarray:
    """Valid events; a fraction ``jumps`` of the time steps go past 2**23 us, which needs overflow markers."""
    n = int(rng.integers(0, max_events + 1))
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, NMNIST_SENSOR.width, n)
    events["y"] = rng.integers(0, NMNIST_SENSOR.height, n)
    events["p"] = rng.integers(0, 2, n)
    big = rng.random(n) < jumps
    steps = np.where(big, rng.integers(0, 3 * TS_MAX, n), rng.integers(0, 3_000, n))
    events["t"] = np.cumsum(steps, dtype=np.int64)
    return events


def mutate(rng: np.random.Generator, valid: bytes) -> bytes:
    """A few random overwrites, insertions, deletions, truncations or planted overflow markers."""
    raw = bytearray(valid)
    for _ in range(int(rng.integers(1, 5))):
        kind = rng.integers(0, 5)
        pos = int(rng.integers(0, len(raw) + 1))
        if kind == 0 and pos < len(raw):
            raw[pos] = int(rng.integers(0, 256))
        elif kind == 1:
            raw[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 7)), dtype=np.uint8).tobytes()
        elif kind == 2:
            del raw[pos : pos + int(rng.integers(1, 7))]
        elif kind == 3:
            del raw[pos:]
        else:
            at = pos - pos % BYTES_PER_EVENT
            raw[at:at] = bytes([0, OVERFLOW_Y, 0, 0, 0]) * int(rng.integers(1, 4))
    return bytes(raw)


def random_idx(rng: np.random.Generator) -> bytes:
    """A valid IDX file, a mutated one, or a valid magic with random dims and payload."""
    shape = tuple(int(d) for d in rng.integers(0, 6, int(rng.integers(1, 4))))
    dtype = np.dtype(IDX_DTYPES[int(rng.integers(0, len(IDX_DTYPES)))])
    array = np.frombuffer(rng.integers(0, 256, int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8).tobytes(),
                          dtype=dtype).reshape(shape)
    choice = rng.integers(0, 4)
    if choice == 0:
        return encode_idx(array)
    if choice == 1:
        return mutate(rng, encode_idx(array))
    if choice == 2:
        return random_bytes(rng, 200)
    ndim = int(rng.integers(1, 5))
    dims = rng.choice(np.array([0, 1, 2, 7, 2**16, 2**31, 2**32 - 1], dtype=np.uint64), ndim).astype(">u4").tobytes()
    return bytes([0, 0, 0x08, ndim]) + dims + random_bytes(rng, 40)


# ----------------------------------------------------------------------------------------- properties
# Each case_* draws one input from rng and returns (the input as bytes, for --save; a check to run on it
# in a scratch folder). A check returns normally for a valid result and lets DataError through.


def valid_events(events: np.ndarray, n_bytes: int, limits: ReadLimits | None) -> None:
    check(events.dtype == EVENT_DTYPE, f"dtype {events.dtype}")
    check(len(events) <= n_bytes // BYTES_PER_EVENT, "more events than records")
    if len(events):
        check(int(events["x"].max()) < NMNIST_SENSOR.width and int(events["y"].max()) < NMNIST_SENSOR.height,
              "coordinate off the sensor")
        check(set(np.unique(events["p"]).tolist()) <= {0, 1}, "polarity not 0/1")
        check(int(events["t"].min()) >= 0 and bool(np.all(np.diff(events["t"]) >= 0)), "times not monotonic")
    if limits is not None:
        check(len(events) <= limits.max_events, "past max_events")
        check(not len(events) or int(events["t"][-1]) <= limits.max_duration_us, "past max_duration_us")


def case_decode(rng):
    raw, limits = random_bytes(rng), SMALL_LIMITS if rng.random() < 0.5 else None
    return raw, lambda tmp: valid_events(decode_events(raw, "fuzz.bin", limits=limits), len(raw), limits)


def case_mutate(rng):
    raw, limits = mutate(rng, encode_events(random_events(rng))), SMALL_LIMITS if rng.random() < 0.3 else None

    def run(tmp):
        events = decode_events(raw, "fuzz.bin", limits=limits)
        valid_events(events, len(raw), limits)
        check(np.array_equal(decode_events(encode_events(events)), events), "decoded events do not round-trip")

    return raw, run


def case_roundtrip(rng):
    events = random_events(rng)

    def run(tmp):
        check(np.array_equal(decode_events(encode_events(events)), events), "encode then decode changed the events")

    return events.tobytes(), run  # saved as raw EVENT_DTYPE records


def case_idx(rng):
    raw, gz = random_idx(rng), rng.random() < 0.3

    def run(tmp):
        path = tmp / "fuzz.idx"
        path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
        array = read_idx(path)
        check(array.dtype in [np.dtype(d) for d in IDX_DTYPES] and array.dtype.isnative, f"dtype {array.dtype}")
        check(len(raw) == 4 + 4 * array.ndim + array.nbytes, "payload length differs from the header")

    return raw, run


def case_zip(rng, _good: list = []):  # noqa: B006 - the undamaged zip, built once per process
    if not _good:
        _good.append(_small_zip())
    raw = bytearray(_good[0])
    for pos in rng.integers(0, len(raw), int(rng.integers(1, 4))):
        raw[int(pos)] = int(rng.integers(0, 256))
    raw = bytes(raw)

    def run(tmp):
        path = tmp / "Train.zip"
        path.write_bytes(raw)
        arrays = load_all(NMNIST(path, on_bad="skip"), progress=False)
        check(len(arrays.offsets) == len(arrays.labels) + 1, "offsets and labels disagree")

    return raw, run


def _small_zip() -> bytes:
    """An official-layout Train.zip of 10 short recordings, written with the project's own encoder."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Train.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for d in range(10):
                z.writestr(f"Train/{d}/{10 * d + 1:05d}.bin", encode_events(random_events(rng, 40, jumps=0)))
        return path.read_bytes()


CASES = {"decode": case_decode, "mutate": case_mutate, "roundtrip": case_roundtrip, "idx": case_idx, "zip": case_zip}


# ------------------------------------------------------------------------------------------------- run


def fuzz(target: str, seconds: float, rng: np.random.Generator, save: Path | None) -> Counter:
    """Run one property for ``seconds``; returns counts of "ok", "DataError" and "unexpected"."""
    counts: Counter = Counter()
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory() as tmp:
        while time.monotonic() < deadline:
            raw, run = CASES[target](rng)
            try:
                run(Path(tmp))
                outcome = "ok"
            except DataError:
                outcome = "DataError"
            except Exception:  # anything else (PropertyFailed included) is what we are hunting
                outcome = "unexpected"
                if counts["unexpected"] < SHOW_FAILURES:
                    print(f"--- {target}: input {raw[:64].hex()}{'...' if len(raw) > 64 else ''}", file=sys.stderr)
                    traceback.print_exc()
                if save is not None:
                    save.mkdir(parents=True, exist_ok=True)
                    (save / f"{target}-{counts['unexpected']:04d}.bin").write_bytes(raw)
            counts[outcome] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="total run time, split between targets (60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, from {', '.join(TARGETS)}")
    parser.add_argument("--save", type=Path, default=None, metavar="DIR", help="write each failing input here")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # NMNIST logs every skipped member: thousands of lines, counted below instead
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown or not targets or not args.seconds > 0:
        parser.error(f"--targets must name some of {', '.join(TARGETS)} (unknown: {', '.join(unknown) or '-'}) "
                     "and --seconds be positive")
    rng = np.random.default_rng(args.seed)
    total: Counter = Counter()
    print(f"{'target':<10} {'tried':>9} {'ok':>9} {'DataError':>10} {'unexpected':>11}")
    for target in targets:
        counts = fuzz(target, args.seconds / len(targets), rng, args.save)
        total += counts
        _row(target, counts)
    _row("all", total)
    if total["unexpected"]:
        print(f"FAILED: {total['unexpected']} input(s) raised something other than DataError or gave an invalid "
              "result (first tracebacks above)", file=sys.stderr)
        return 1
    return 0


def _row(label: str, counts: Counter) -> None:
    print(f"{label:<10} {sum(counts.values()):>9,} {counts['ok']:>9,} {counts['DataError']:>10,} "
          f"{counts['unexpected']:>11,}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
