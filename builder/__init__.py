"""The builder: problems -> sampled answers -> sandboxed verdicts -> error notebook, pairs, card.

Its public names are this package's (``from builder import Grader, SampleConfig``): what the trainer
and any other caller may use, listed once in ``PUBLIC``; the modules behind them are the builder's
own to rearrange. Two more public surfaces sit beside them: the engine's package (``builder.engine``,
its own API) and the plumbing both halves share, which belongs to no stage (``builder.errors``,
``builder.io``, ``builder.flags``, ``builder.progress``). ``pyproject.toml``'s import contracts keep
the trainer to these.

The names are imported on first use (PEP 562, as TRL's top-level names are): every console script
and every process one starts to do builder work (a Ray actor, the quiz's vLLM process) imports this
package first, and none of them should pay for the stages it does not run. (The sandbox's workers
never import it: they run ``ap2o_sandbox``, standard library only.) The ``TYPE_CHECKING`` block
names the same imports for readers and type checkers (``tests/test_layers.py`` checks that the
two lists agree).
"""

# ruff: noqa: F401 - the TYPE_CHECKING imports are there to be seen, not used

import importlib
import os as _os
from typing import TYPE_CHECKING

# Set here because every console script (ap2o-build, ap2o-train, ap2o-eval) imports this package
# before torch, and libgomp reads the setting once, when torch loads it. Its default keeps idle
# threads spinning; on a CPU shared with other work (the sandbox's workers, a llama.cpp server,
# other jobs) the spinning threads hold the cores the working ones wait for. Greedy generation of
# 16 x 128 tokens with a 2-layer model on 2 threads took 12.7 s by default and 0.4 s passive
# (load average 3-5 on 2 cores; 1 thread: 0.4 s). A value the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# module -> the public names it defines ("NAME=ATTR" where the public name differs)
PUBLIC = {
    "builder.problems.sources": ("load_problems_with_report",),
    "builder.problems.benchmarks": ("default_max_new_tokens", "is_benchmark", "load_benchmark"),
    "builder.generation.prompts": ("CHAT", "COMPLETION", "PROMPT_FORMATS", "check_format"),
    "builder.generation.extract": ("extract_code",),
    "builder.generation.modelpath": ("auto_dtype", "check_reachable", "gguf_metadata", "is_gguf", "load_causal_lm",
                                     "load_tokenizer", "looks_local", "resolve_model", "source_model"),
    "builder.generation.backends": ("AUTO", "Backend", "BackendError", "SamplingParams", "default_backend",
                                    "get_backend"),
    "builder.generation.backends.file": ("FileBackend",),
    "builder.generation.backends.transformers": ("TransformersBackend",),
    "builder.generation.sample": ("SampleConfig", "add_no_stop", "build_backend", "sample_problems", "typed_settings"),
    "builder.grading.taxonomy": ("CATEGORIES", "category_of"),
    "builder.grading.grader": ("Grader", "GraderConfig", "GRADER_COMMAND_LINE=COMMAND_LINE"),
    "builder.dataset.conversational": ("to_text",),
    "builder.dataset.pairs": ("PairsConfig", "kept_answers"),
    "builder.dataset.notebook": ("count_errors",),
    "builder.dataset.card": ("card_options",),
    "builder.dataset.publish": ("explain_hub_error",),
}
_WHERE = {name.partition("=")[0]: (module, name.partition("=")[2] or name)
          for module, names in PUBLIC.items() for name in names}
__all__ = sorted(_WHERE)  # noqa: PLE0605 - made from PUBLIC, the one list of the names

if TYPE_CHECKING:
    from builder.dataset.card import card_options
    from builder.dataset.conversational import to_text
    from builder.dataset.notebook import count_errors
    from builder.dataset.pairs import PairsConfig, kept_answers
    from builder.dataset.publish import explain_hub_error
    from builder.generation.backends import (
        AUTO,
        Backend,
        BackendError,
        SamplingParams,
        default_backend,
        get_backend,
    )
    from builder.generation.backends.file import FileBackend
    from builder.generation.backends.transformers import TransformersBackend
    from builder.generation.extract import extract_code
    from builder.generation.modelpath import (
        auto_dtype,
        check_reachable,
        gguf_metadata,
        is_gguf,
        load_causal_lm,
        load_tokenizer,
        looks_local,
        resolve_model,
        source_model,
    )
    from builder.generation.prompts import CHAT, COMPLETION, PROMPT_FORMATS, check_format
    from builder.generation.sample import (
        SampleConfig,
        add_no_stop,
        build_backend,
        sample_problems,
        typed_settings,
    )
    from builder.grading.grader import COMMAND_LINE as GRADER_COMMAND_LINE
    from builder.grading.grader import Grader, GraderConfig
    from builder.grading.taxonomy import CATEGORIES, category_of
    from builder.problems.benchmarks import default_max_new_tokens, is_benchmark, load_benchmark
    from builder.problems.sources import load_problems_with_report


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'builder' has no attribute {name!r}")
    module, attr = _WHERE[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # once: later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
