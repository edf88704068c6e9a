"""Content keys for checkpointed chunks: one rule for what a chunk's answers and verdicts depend on.

``ap2o-build run`` and ``ap2o-eval`` both sample and grade in chunks and name each finished chunk
by a hash of what produced it, so a killed run resumes by finding its files again and a changed
setting redoes only what it affects. Both must agree on those rules (which grader settings change a
verdict, how a file is fingerprinted), hence this one module.
"""

from __future__ import annotations

import dataclasses
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


def grading_settings(grader_config: Any) -> dict[str, Any]:
    """The grader settings a verdict depends on: the sandbox limits, not how many workers run them."""
    return {k: v for k, v in dataclasses.asdict(grader_config).items() if k != "workers"}
