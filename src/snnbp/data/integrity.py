"""Checksums recorded beside a dataset's files, so that loading can tell they are still the files verified.

``record_checksums`` hashes files that were just written or fully verified and saves, atomically, in
``<directory>/checksums.json``::

    {"format": 1, "from": "/abs/dir" | null,
     "files": {"<name>": {"sha256": "<hex>", "size": <bytes>, "mtime_ns": <int>}, ...}}

``sha256`` is the content that was verified; ``size`` and ``mtime_ns`` are the file's state when it was last
hashed and found to match. ``from`` says where the files came from (a user's directory), for repair hints.

``check_checksums`` compares files with that record. A file whose (size, mtime_ns) equal the recorded ones
is taken as unchanged without being read, so the full hash runs at most once per file state. The one
exception is a file whose mtime is not older than the record itself: it may have been changed within the
same clock tick as it was hashed ("racily clean", as git calls it), so it is hashed again. A file in any
other state is hashed: if the sha256 still matches (touched but unchanged), its new state is recorded (best
effort: a read-only or contended directory only costs a re-hash next time); otherwise it has changed.
This module knows nothing of MNIST; the callers turn a ``Problem`` into a message that says what to run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from snnbp.errors import DataError
from snnbp.files import write_json_atomic

RECORD_NAME = "checksums.json"
RECORD_FORMAT = 1
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Problem:
    """Why files cannot be trusted: no record, an unusable record, or a file that differs from its record."""

    kind: Literal["no-record", "bad-record", "changed"]
    path: Path  # the record ("no-record", "bad-record") or the changed file
    detail: str  # a fragment for a message, e.g. "sha256 now <hex>, recorded <hex>"
    source: str | None = None  # the record's "from", when it could be read


def record_path(directory: str | Path) -> Path:
    return Path(directory) / RECORD_NAME


def file_state(path: Path) -> dict:
    """``{"sha256", "size", "mtime_ns"}`` of a file; ``DataError`` if it cannot be read or changes while hashed."""
    try:
        before = os.stat(path)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        after = os.stat(path)
    except OSError as err:
        raise DataError(f"cannot read {path} ({err}); check the file and try again.") from None
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise DataError(f"{path} changed while it was being hashed; try again once nothing else writes to it.")
    return {"sha256": digest.hexdigest(), "size": after.st_size, "mtime_ns": after.st_mtime_ns}


def record_checksums(
    directory: str | Path,
    names: Iterable[str],
    *,
    source: str | None = None,
    expected: Mapping[str, str] | None = None,
) -> Path:
    """Hash ``names`` in ``directory`` and write the record (atomically); return its path.

    Call it only on files that were just written from verified data or fully verified. ``expected``
    (name -> sha256), where given, must match what is on disk, else ``DataError`` and nothing is recorded.
    """
    directory = Path(directory)
    files = {}
    for name in names:
        state = file_state(directory / name)
        want = (expected or {}).get(name)
        if want is not None and state["sha256"] != want:
            raise DataError(
                f"{directory / name} has sha256 {state['sha256']} on disk, not the verified {want}; "
                "delete it and write the data again."
            )
        files[name] = state
    return write_json_atomic(record_path(directory), {"format": RECORD_FORMAT, "from": source, "files": files})


def check_checksums(directory: str | Path, names: Iterable[str], *, update: bool = True) -> Problem | None:
    """``None`` if every file in ``names`` still has its recorded sha256, else the first ``Problem``.

    Files whose (size, mtime_ns) match the record (and are older than it) are not read. With ``update``,
    files that were re-hashed and still match get their new state recorded (errors writing it are ignored).
    """
    directory = Path(directory)
    rec_path = record_path(directory)
    record, problem = _read_record(rec_path)
    if problem is not None:
        return problem
    source = record.get("from")
    entries = record["files"]
    rec_mtime = record["_mtime_ns"]
    refreshed = False
    for name in names:
        path = directory / name
        entry = entries.get(name)
        if not _valid_entry(entry):
            return Problem("bad-record", rec_path, f"it has no valid entry for {name}", source)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return Problem("changed", path, "the file is missing", source)
        except OSError as err:
            return Problem("changed", path, f"it cannot be read: {err}", source)
        if st.st_size == entry["size"] and st.st_mtime_ns == entry["mtime_ns"] and st.st_mtime_ns < rec_mtime:
            continue  # same state as when it was last found to match: no need to read it
        try:
            state = file_state(path)
        except DataError as err:
            return Problem("changed", path, str(err).rstrip("."), source)
        if state["sha256"] != entry["sha256"]:
            return Problem("changed", path, f"sha256 now {state['sha256']}, recorded {entry['sha256']}", source)
        if state != entry:
            entries[name] = state
        refreshed = True
    if refreshed and update:
        _rewrite(rec_path, record)
    return None


def _read_record(path: Path) -> tuple[dict, Problem | None]:
    try:
        mtime_ns = os.stat(path).st_mtime_ns
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, Problem("no-record", path, f"{path} is missing")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return {}, Problem("bad-record", path, f"it cannot be read: {err}")
    if not (isinstance(record, dict) and record.get("format") == RECORD_FORMAT and isinstance(record.get("files"), dict)):
        return {}, Problem("bad-record", path, f"it is not a format-{RECORD_FORMAT} checksum record")
    source = record.get("from")
    record["from"] = source if isinstance(source, str) else None
    record["_mtime_ns"] = mtime_ns
    return record, None


def _valid_entry(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("sha256"), str)
        and len(entry["sha256"]) == 64
        and all(isinstance(entry.get(k), int) and not isinstance(entry.get(k), bool) for k in ("size", "mtime_ns"))
    )


def _rewrite(path: Path, record: dict) -> None:
    """Save refreshed file states; a failure only means the files get hashed again next time."""
    data = {k: v for k, v in record.items() if not k.startswith("_")}
    try:
        write_json_atomic(path, data)
    except OSError:
        pass
