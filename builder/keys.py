"""Content keys: a short stable hash of what produced a result, so that a result is found again.

The engine names each checkpointed chunk by one (its problems and every setting that changes its
answers or verdicts), and its reference-timing stage keeps its measurements under one. Kept out
of ``builder/engine/`` because the generation stage uses ``file_digest`` too (``modelpath`` names
a GGUF file's plain copy by it), and a stage must not import the engine that imports it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def content_key(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (dict order does not matter; the parts are separated
    so that ``("ab", "c")`` and ``("a", "bc")`` differ)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str, ensure_ascii=False).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def file_digest(path: str | os.PathLike | None) -> str | None:
    """sha256 of a file's bytes, read in blocks (a completions file or weights can be large); None
    when there is no such file."""
    if not path or not os.path.isfile(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
