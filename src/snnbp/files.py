"""Small file helpers shared by every layer (standard library only)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from snnbp.errors import DataError


def write_bytes_atomic(path: str | Path, data: bytes, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``, so a reader never sees half a
    file and a crash leaves the previous version in place. ``durable``: fsync before the rename (files
    whose loss would cost work, such as checkpoints). The temporary file is ``<name>XXXX.tmp`` beside
    ``path``: unique, so two writers never tear one temp file, and recognisable, so a kill's leftover can
    be found (train/run_dir.remove_stale_tmp)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; keep the permissions a plain write would give
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``text`` as UTF-8, written atomically (``write_bytes_atomic``)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def current_umask() -> int:
    """The process's umask (the only portable way to read it is to set it and put it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, obj) -> Path:
    """``obj`` as indented JSON, written atomically (``write_text_atomic``)."""
    return write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def read_jsonl(path: str | Path) -> tuple[list[dict], bool]:
    """The objects of a JSON-lines file, and whether a torn last line was left out.

    A process killed while appending leaves at most its last line cut off; that line is dropped
    (it is the one unfinished record) and reported as ``True``. Any other line that is not a JSON
    object means the file was damaged by something else: DataError naming the line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror}); check the path and its permissions") from None
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    rows, torn = [], False
    for k, (lineno, line) in enumerate(numbered):
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not an object")
        except ValueError:
            if k == len(numbered) - 1:
                torn = True
                break
            raise DataError(f"line {lineno} of {path} is not a JSON object; the file is damaged - restore it or "
                            "delete that line") from None
        rows.append(row)
    return rows, torn
