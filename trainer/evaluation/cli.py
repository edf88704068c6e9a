"""``ap2o-eval``'s command line: ``ap2o-eval [run] FLAGS`` evaluates one model, ``ap2o-eval compare
RUN_DIR...`` puts finished runs side by side.

The flags are flat (``--n``, ``--temperature``, ``--timeout``, ``--workers``, ...) although
``EvalConfig`` is composed of blocks: each block's fields become flags the way ``ap2o-build run``
makes them (``builder.flags``), so a setting has one name on every command and every
``SampleConfig``/``GraderConfig``/``EngineConfig`` field is a flag here too.
"""

from __future__ import annotations

import argparse
import sys

from builder import GRADER_COMMAND_LINE, GraderConfig, add_no_stop, typed_settings
from builder.engine import COMMAND_LINE as ENGINE_COMMAND_LINE
from builder.engine import EngineConfig
from builder.errors import UserError, run_command
from builder.flags import (
    PlainHelpFormatter,
    add_dataclass_arguments,
    add_quiet,
    add_version,
    build_dataclass,
    first_paragraph,
    flag_values,
    named_by_flag,
)
from trainer.evaluation.compare import compare
from trainer.evaluation.metrics import format_metrics
from trainer.evaluation.run import BLOCKS, EvalConfig, EvalSampleConfig, evaluate

_NOT_FLAGS = (*BLOCKS, "progress")  # EvalConfig fields that are no flag of their own (progress: --quiet)


def run_parser() -> argparse.ArgumentParser:
    """Every flag from ``EvalConfig``'s fields and its ``sample``, ``grader`` and ``engine`` blocks
    (help, defaults and choices there), spelt as on the builder's commands: ``--timeout``/``--timeout-s``,
    ``--quiet``/``--no-progress``, ``--no-stop``, ``-`` or ``_``."""
    p = argparse.ArgumentParser(prog="ap2o-eval", formatter_class=PlainHelpFormatter, description=(
        "Sample, grade and report pass@k and error counts per type. "
        "'ap2o-eval compare RUN_DIR...' puts finished runs side by side."))
    add_dataclass_arguments(p, EvalConfig, exclude=_NOT_FLAGS, aliases={"output": ("-o",)})
    add_dataclass_arguments(p, EvalSampleConfig, group="sample")
    add_no_stop(p)
    add_dataclass_arguments(p, GraderConfig, group="grader", **GRADER_COMMAND_LINE)
    add_dataclass_arguments(p, EngineConfig, group="engine", **ENGINE_COMMAND_LINE)
    add_quiet(p)
    add_version(p)
    return p


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The ``EvalConfig`` the flags give: defaults, then each flag the user typed into its block."""
    own = {k: v for k, v in flag_values(args, EvalConfig, None).items() if k not in _NOT_FLAGS}
    sample = build_dataclass(EvalSampleConfig, typed_settings(args, "sample"), "command line")
    blocks = {"sample": sample, "progress": not args.quiet}
    for name, cls, rename in (("grader", GraderConfig, GRADER_COMMAND_LINE["rename"]), ("engine", EngineConfig, None)):
        try:
            blocks[name] = build_dataclass(cls, flag_values(args, cls, name), "command line")
        except UserError as e:  # "timeout_s must be ..." -> "--timeout must be ...": the name the user typed
            raise named_by_flag(e, cls, rename) from None
    return build_dataclass(EvalConfig, {**own, **blocks}, "command line")


def compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ap2o-eval compare", description=first_paragraph(compare.__doc__),
                                formatter_class=PlainHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders written by ap2o-eval")
    p.add_argument("--labels", help="comma-separated names for the runs (default: folder names)")
    p.add_argument("--output", "-o", help="folder for compare.md, compare.json and error_counts.png")
    add_version(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command("ap2o-eval", lambda: _main(argv), on_interrupt="interrupted (rerun the same command to resume)")


def _main(argv: list[str]) -> int:
    if argv[:1] == ["compare"]:
        args = compare_parser().parse_args(argv[1:])
        result = compare(args.runs, args.labels.split(",") if args.labels else None, args.output)
        for warning in result["warnings"]:
            print(f"ap2o-eval compare: warning: {warning}", file=sys.stderr)
        print(result["markdown"])
        if args.output:
            print(f"wrote {args.output}/compare.md, compare.json, error_counts.png", file=sys.stderr)
        return 0
    args = run_parser().parse_args(argv[1:] if argv[:1] == ["run"] else argv)
    print(format_metrics(evaluate(config_from_args(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
