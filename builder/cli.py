"""``ap2o-build``: the builder's command line. Each stage is a subcommand in a module of its own.

A stage module exposes ``configure(parser)`` (adds its flags) and ``main(args) -> int``. Every
stage module is light at import (the standard library, pyarrow, polars): each imports torch, vLLM
or Ray inside the function that needs them, so ``ap2o-build grade`` starts without torch.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from builder import pipeline
from builder.dataset import assemble, card, publish
from builder.errors import EXIT_USER_ERROR, run_command
from builder.flags import PlainHelpFormatter, add_version
from builder.generation import sample
from builder.grading import grade

# subcommand -> (module, one-line help)
STAGES: dict[str, tuple[ModuleType, str]] = {
    "run": (pipeline, "all stages: sample, grade, notebook, card -> a Hub-ready dataset folder"),
    "sample": (sample, "sample answers from a model (vllm | transformers | openai | file)"),
    "grade": (grade, "grade answers against their problems' tests in the sandbox"),
    "notebook": (assemble, "count the error notebook and build the pairs"),
    "card": (card, "write the dataset card (README.md) and plots"),
    "push": (publish, "upload a dataset folder to the Hugging Face Hub"),
}
# Former subcommand names that keep working (alias -> stage): scripts written before the stage was
# called by the one word the module, the progress bar and the docs use.
ALIASES = {"execute": "grade"}
DESCRIPTION = ("Build an error-typed code preference dataset: sample answers from a model, grade them in a "
               "sandbox, count the error notebook, write the pairs and the card, push it to the Hub.")
EPILOG = ("With no other flags, 'ap2o-build run --output DIR' builds the embedded default dataset offline. "
          "'ap2o-build STAGE --help' shows a stage's flags.")


def build_parser(stage: str | None = None) -> argparse.ArgumentParser:
    """The command line; with ``stage``, that stage's flags (all of them when None). Only the stage
    that runs is configured: ``run``'s flags show the embedded default's settings, which takes
    reading its recording (0.25 s), and ``ap2o-build grade`` should not pay for that."""
    parser = argparse.ArgumentParser(prog="ap2o-build", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=PlainHelpFormatter)
    add_version(parser)
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True, title="stages")
    for name, (module, help_) in STAGES.items():
        aliases = [alias for alias, target in ALIASES.items() if target == name]
        p = sub.add_parser(name, help=help_, description=help_, aliases=aliases, formatter_class=PlainHelpFormatter)
        add_version(p)
        if stage is None or name == stage:
            module.configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    stage = next((ALIASES.get(a, a) for a in argv if a in STAGES or a in ALIASES), None)

    def body() -> int:
        if not argv:  # nothing to do: say what there is to do, as `git` does
            build_parser("").print_help()
            return EXIT_USER_ERROR
        args = build_parser(stage or "").parse_args(argv)  # no stage named: none configured
        args.stage = ALIASES.get(args.stage, args.stage)  # argparse records the name as typed
        return STAGES[args.stage][0].main(args)

    return run_command(f"ap2o-build {stage or ''}".rstrip(), body)


if __name__ == "__main__":
    sys.exit(main())
