"""MBPP as a function problem set: the Hub's rows rewritten to grade like HumanEval.

MBPP's tests are bare asserts on a named function (``assert remove_Occ("hello","l") == "heo"``);
``mbpp_row_to_function`` turns a row into a HumanEval-shaped problem -- a prompt with the
signature and the task as docstring, a ``check(candidate)`` calling the answer -- and
``from_hub_splits`` does it for every split the Hub serves. ``builder.problems.sources`` reads the
Hub (``MBPP_HUB_ID``); ``builder.problems.benchmarks`` reuses the conversion for MBPP+.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

MBPP_HUB_ID = "google-research-datasets/mbpp"


def from_hub_splits(raw: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """Every split of the Hub's MBPP as function problems. MBPP's few-shot ``prompt`` split
    (task ids 1-10) is folded into ``train``: it is training material, and ids stay unique
    because MBPP numbers its problems across splits."""
    out: dict[str, list[dict[str, Any]]] = {}
    for split, table in raw.items():
        target = "train" if split == "prompt" else split
        out.setdefault(target, []).extend(mbpp_row_to_function(r) for r in table.to_pylist())
    return {s: pa.Table.from_pylist(rows) for s, rows in out.items()}


def mbpp_row_to_function(row: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a Hub MBPP row (``text``/``prompt``, ``code``, ``test_list``, ``test_setup_code`` or
    ``test_imports``) into a HumanEval-shaped function problem.

    The entry point is the function the asserts call (not the first ``def`` of the reference
    code, which is often a helper: the mistake behind many broken MBPP copies). The prompt is
    that function's signature with the task as docstring; the asserts become ``check(candidate)``
    with calls of the entry point rewritten to ``candidate``."""
    asserts = list(row.get("test_list") or [])
    description = (row.get("text") or row.get("prompt") or "").strip()
    code = row.get("code") or ""
    entry = _called_function(asserts)
    signature = next((line.rstrip() for line in code.splitlines()
                      if entry and re.match(rf"\s*def\s+{re.escape(entry)}\s*\(", line)), None)
    if signature is None:
        signature = f"def {entry or 'solution'}(*args):"
    setup = row.get("test_setup_code") or "\n".join(row.get("test_imports") or [])
    body = [re.sub(rf"\b{re.escape(entry)}\s*\(", "candidate(", a) if entry else a for a in asserts]
    test = (setup.strip() + "\n\n" if setup and setup.strip() else "") + "def check(candidate):\n" + "".join(
        f"    {line}\n" for line in body)
    return {"task_id": row.get("task_id"), "prompt": f'{signature.strip()}\n    """{description}"""\n',
            "test": test, "entry_point": entry, "canonical_solution": code}


def _called_function(asserts: list[str]) -> str | None:
    """The first plain function name called inside the asserts, outside builtins."""
    for a in asserts:
        try:
            tree = ast.parse(a.strip())
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not hasattr(builtins, node.func.id):
                return node.func.id
    return None
