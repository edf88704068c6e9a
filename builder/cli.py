"""``ap2o-build``: the builder's command line. Each stage is a subcommand in a module of its own.

A stage module exposes ``configure(parser)`` (adds its flags) and ``main(args) -> int``. Modules
are imported only for the subcommand that runs, so ``ap2o-build execute`` starts without torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys

from builder.errors import run_command

# subcommand -> (module, one-line help)
STAGES = {
    "run": ("builder.run", "all stages: sample, execute, notebook, card -> a Hub-ready dataset folder"),
    "sample": ("builder.sample", "sample answers from a model (vllm | transformers | openai | file)"),
    "execute": ("builder.execute", "grade answers against their problems' tests in the sandbox"),
    "notebook": ("builder.notebook", "count the error notebook and build the pairs"),
    "card": ("builder.card", "write the dataset card (README.md) and plots"),
    "push": ("builder.publish", "upload a dataset folder to the Hugging Face Hub"),
}


def field_help(cls: type, name: str) -> str:
    """A config field's ``help`` metadata with its default appended: how every flag that mirrors a
    dataclass field describes itself (``ap2o-build`` stages and ``ap2o-eval`` alike)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        default = None
    if isinstance(default, tuple):
        default = ",".join(map(str, default))
    shown = default is not None and not (isinstance(default, (str, list, dict)) and not default)
    return f.metadata.get("help", "") + (f" (default: {default})" if shown else "")


def build_parser(stage: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ap2o-build", description=__doc__.splitlines()[0])
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
