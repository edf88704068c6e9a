"""The builder: problems -> sampled answers -> sandboxed verdicts -> error notebook, pairs, card.

Its public names are this package's (``from builder import Grader, SampleConfig``): what the trainer
and any other caller may use, listed once in ``__all__``; the modules behind them are the builder's
own to rearrange. Two more public surfaces sit beside them: the engine's package (``builder.engine``,
its own API) and the plumbing both halves share, which belongs to no stage (``builder.errors``,
``builder.io``, ``builder.flags``, ``builder.progress``). ``pyproject.toml``'s import contracts keep
the trainer to these.

The names are imported here, at the top, as any module's are: the stage modules are light (the
standard library, pyarrow, polars; torch, vLLM and Ray load inside the functions that use them),
and ``ap2o-build`` imports every stage anyway. (The sandbox's workers never import this package:
they run ``ap2o_sandbox``, standard library only.)
"""

import os as _os

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

# Set here because every console script (ap2o-build, ap2o-train, ap2o-eval) imports this package
# before torch (none of the imports above loads it), and libgomp reads the setting once, when
# torch loads it. Its default keeps idle threads spinning; on a CPU shared with other work (the
# sandbox's workers, a llama.cpp server, other jobs) the spinning threads hold the cores the
# working ones wait for. Greedy generation of 16 x 128 tokens with a 2-layer model on 2 threads
# took 12.7 s by default and 0.4 s passive (load average 3-5 on 2 cores; 1 thread: 0.4 s). A value
# the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = [
    "AUTO",
    "CATEGORIES",
    "CHAT",
    "COMPLETION",
    "GRADER_COMMAND_LINE",
    "PROMPT_FORMATS",
    "Backend",
    "BackendError",
    "FileBackend",
    "Grader",
    "GraderConfig",
    "PairsConfig",
    "SampleConfig",
    "SamplingParams",
    "TransformersBackend",
    "add_no_stop",
    "auto_dtype",
    "build_backend",
    "card_options",
    "category_of",
    "check_format",
    "check_reachable",
    "count_errors",
    "default_backend",
    "default_max_new_tokens",
    "explain_hub_error",
    "extract_code",
    "get_backend",
    "gguf_metadata",
    "is_benchmark",
    "is_gguf",
    "kept_answers",
    "load_benchmark",
    "load_causal_lm",
    "load_problems_with_report",
    "load_tokenizer",
    "looks_local",
    "resolve_model",
    "sample_problems",
    "source_model",
    "to_text",
    "typed_settings",
]
