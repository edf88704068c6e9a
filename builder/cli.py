"""``ap2o-build``: the builder's command line. Each stage is a subcommand in a module of its own.

A stage module exposes ``configure(parser)`` (adds its flags) and ``main(args) -> int``. Modules
are imported only for the subcommand that runs, so ``ap2o-build execute`` starts without torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from builder.errors import run_command
from builder.flags import first_paragraph

# subcommand -> (module, one-line help)
STAGES = {
    "run": ("builder.pipeline", "all stages: sample, execute, notebook, card -> a Hub-ready dataset folder"),
    "sample": ("builder.generation.sample", "sample answers from a model (vllm | transformers | openai | file)"),
    "execute": ("builder.grading.execute", "grade answers against their problems' tests in the sandbox"),
    "notebook": ("builder.dataset.notebook", "count the error notebook and build the pairs"),
    "card": ("builder.dataset.card", "write the dataset card (README.md) and plots"),
    "push": ("builder.dataset.publish", "upload a dataset folder to the Hugging Face Hub"),
}


def build_parser(stage: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ap2o-build", description=first_paragraph(__doc__))
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, (module, help_) in STAGES.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == stage:  # only the chosen stage's module is imported
            importlib.import_module(module).configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    stage = next((a for a in argv if a in STAGES), None)
    args = build_parser(stage).parse_args(argv)
    module = importlib.import_module(STAGES[args.stage][0])
    return run_command(f"ap2o-build {args.stage}", lambda: module.main(args))

if __name__ == "__main__":
    sys.exit(main())
