"""Small file helpers shared by every layer (standard library only)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_atomic(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` via a temporary file and ``os.replace``, so a reader
    never sees half a file and a crash leaves the previous version in place."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)
    return path
