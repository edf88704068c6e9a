"""``ap2o-train``'s command line, read and checked before torch, transformers or TRL is imported.

Importing TRL takes seconds (it imports torch), and a user waiting that long for ``--help`` or for
"no such folder" has been kept waiting for nothing. So the command line is read in two steps:

1. Here, with nothing heavy: our own settings (``trainer.config``'s data, model and quiz arguments,
   ``trainer.schedule.ScheduleConfig``) are parsed and built, and so validated; every training
   argument of TRL's config (``DPOConfig`` or ``SFTConfig``, on transformers' ``TrainingArguments``)
   is checked by name, arity and simple type against a table read from the installed TRL's and
   transformers' *source* (``ast``, no import: ``trl_fields``), with this trainer's defaults
   (``trainer.config.DPOSettings``/``SFTSettings``) over TRL's. ``--help`` (our settings and the
   training arguments one mostly sets; TRL's others summarized) and ``--help-all`` (every one) are
   printed from the same table. A source this reader does not understand (another TRL layout)
   makes it import TRL and read the dataclasses themselves: slower, never wrong.
2. ``training_arguments`` (after the caller's cheap checks) imports TRL and hands the training
   arguments, as typed, to transformers' ``HfArgumentParser`` for the class TRL's trainer takes
   (``trainer.trl_config.AP2ODPOConfig``/``AP2OSFTConfig``), so their values mean exactly what they mean
   to TRL.

Flags take the forms TRL's scripts take: ``--learning_rate`` or ``--learning-rate``, a boolean as
``--use_peft``, ``--use_peft false`` or ``--no_use_peft``, a list as ``--lora_target_modules q_proj v_proj``.
A recipe (``--config RECIPE.yaml``) sets any of them by name; flags override it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import functools
import importlib.util
import os
import pathlib
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

import yaml

from builder.errors import UserError
from builder.flags import PlainHelpFormatter, field_help, package_version, plain
from trainer.config import SETTINGS, DataArguments, ModelArguments, QuizConfig
from trainer.schedule import SFT, ScheduleConfig

# TRL and transformers are imported only once our own settings are read and checked: a mistake
# is one line in a second, before seconds of imports (tests/test_train_cli.py).

PROG = "ap2o-train"
USAGE = (f"{PROG} --dataset-name DATASET --model-name-or-path MODEL --output-dir DIR [--method METHOD] "
         "[--config RECIPE.yaml] [options]")
DESCRIPTION = ("Preference optimization (TRL + PEFT) on a dataset made by ap2o-build, in the order of the AP2O "
               "schedule: the error sliding window and the quiz-driven replay, or one of the paper's baselines.")
OURS = (("data", DataArguments), ("model", ModelArguments), ("schedule", ScheduleConfig), ("quiz", QuizConfig))
REQUIRED = {"dataset_name": "--dataset-name (or --dataset)", "model_name_or_path": "--model-name-or-path (or --model)",
            "output_dir": "--output-dir"}
# a recipe key's former name -> its name now (recipes written before TRL's script names were taken)
RENAMED = {"dataset": "dataset_name", "model": "model_name_or_path", "revision": "dataset_revision"}
# the training arguments --help shows besides this trainer's own defaults; --help-all shows every one
SHOWN = ("output_dir", "resume_from_checkpoint", "max_steps", "per_device_train_batch_size",
         "gradient_accumulation_steps", "seed", "logging_steps", "save_steps", "save_total_limit", "use_cpu",
         "push_to_hub", "hub_model_id", "hub_private_repo")


# --- what a field is on the command line ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Arg:
    """One setting as the command line takes it: how many values, of what, and its help."""

    name: str
    kind: str                 # 'bool' (true/false), 'list' (one or more values), 'value' (one)
    convert: Any = str        # int, float or str: what a value must read as
    choices: tuple | None = None
    default: Any = None
    has_default: bool = True
    help: str = ""
    aliases: tuple[str, ...] = ()
    help_no: str | None = None  # the help of --no_NAME (a boolean that defaults to true)

    @property
    def negatable(self) -> bool:
        """HfArgumentParser adds ``--no_NAME`` for a boolean whose default is True."""
        return self.kind == "bool" and self.default is True


def _choose(members: list) -> Any:
    """The one type ``HfArgumentParser`` reads a field as, from its annotation's union members
    (normalized: 'str', 'int', 'None', ('list', item), ('literal', values), ...): its rules for
    ``X | None`` and for unions with ``str`` (transformers ``hf_argparser.py``)."""
    if len(members) == 1:
        return members[0]
    if "None" not in members:
        return members[0] if members[1] == "str" else members[1]
    if "bool" in members:
        return "bool"
    return members[0] if members[1] == "None" else members[1]


def _arg(name: str, members: list, default: Any, has_default: bool, metadata: dict[str, Any]) -> Arg:
    chosen = _choose(members)
    choices = tuple(metadata["choices"]) if metadata.get("choices") else None
    kind, convert = "value", str
    if chosen == "bool":
        kind = "bool"
    elif isinstance(chosen, tuple) and chosen[0] == "list":
        kind, convert = "list", {"int": int, "float": float}.get(chosen[1], str)
    elif isinstance(chosen, tuple) and chosen[0] == "literal":
        choices = chosen[1]
    elif chosen in ("int", "float"):
        convert = int if chosen == "int" else float
    aliases = metadata.get("aliases") or ()
    return Arg(name, kind, convert, choices, default, has_default, plain(str(metadata.get("help") or "")),
               (aliases,) if isinstance(aliases, str) else tuple(aliases), metadata.get("help_no"))


def _members_of_type(tp: Any) -> list:
    """A real annotation as union members, normalized as ``_members_of_node`` normalizes source."""
    origin = typing.get_origin(tp)
    if tp is type(None) or tp is None:
        return ["None"]
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        return [m for a in typing.get_args(tp) for m in _members_of_type(a)]
    if origin is typing.Literal:
        return [("literal", typing.get_args(tp))]
    if origin is list:
        args = typing.get_args(tp)
        return [("list", args[0].__name__ if args and isinstance(args[0], type) else "str")]
    if tp in (bool, int, float, str, dict, list):
        return [tp.__name__] if tp is not list else [("list", "str")]
    return ["other"]


def args_of_class(cls: type) -> dict[str, Arg]:
    """The command-line view of a dataclass's init fields."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        has = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out[f.name] = _arg(f.name, _members_of_type(hints[f.name]), default, has, dict(f.metadata))
    return out


# --- TRL's training arguments, read from source --------------------------------------------------------

class _Unreadable(Exception):
    """The installed source is not laid out as ``trl_fields`` expects: read the classes instead."""


# TRL's configs and what they are built on, base first: (package, file in it, class, its base's name)
_CHAINS = {
    "dpo": (("transformers", "training_args.py", "TrainingArguments", None),
            ("trl", "trainer/base_config.py", "_BaseConfig", "TrainingArguments"),
            ("trl", "trainer/dpo_config.py", "DPOConfig", "_BaseConfig")),
    "sft": (("transformers", "training_args.py", "TrainingArguments", None),
            ("trl", "trainer/base_config.py", "_BaseConfig", "TrainingArguments"),
            ("trl", "trainer/sft_config.py", "SFTConfig", "_BaseConfig")),
}


def _source(package: str, relative: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise _Unreadable(f"{package} is not installed")
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise _Unreadable(f"no {path}")
    return path


def _members_of_node(node: ast.AST) -> list:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _members_of_node(node.left) + _members_of_node(node.right)
    if isinstance(node, ast.Constant):
        if node.value is None:
            return ["None"]
        if isinstance(node.value, str):  # a string annotation
            return _members_of_node(ast.parse(node.value, mode="eval").body)
    if isinstance(node, ast.Name):
        return [node.id if node.id in ("bool", "int", "float", "str", "dict") else
                ("list", "str") if node.id in ("list", "List") else "other"]
    if isinstance(node, ast.Subscript):
        base = node.value.id if isinstance(node.value, ast.Name) else getattr(node.value, "attr", "")
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base == "Optional":
            return _members_of_node(inner[0]) + ["None"]
        if base == "Union":
            return [m for n in inner for m in _members_of_node(n)]
        if base in ("list", "List"):
            item = _members_of_node(inner[0])
            return [("list", item[0] if len(item) == 1 and isinstance(item[0], str) else "str")]
        if base in ("dict", "Dict"):
            return ["dict"]
        if base == "Literal":
            return [("literal", tuple(ast.literal_eval(n) for n in inner))]
    return ["other"]


def _literal(node: ast.AST | None) -> tuple[bool, Any]:
    if node is None:
        return False, None
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _class_args(path: pathlib.Path, name: str, base: str | None) -> dict[str, Arg]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if cls is None:
        raise _Unreadable(f"{path}: no class {name}")
    bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", None) for b in cls.bases]
    if bases != ([base] if base else []):
        raise _Unreadable(f"{path}: {name} derives from {bases}, not {base}")
    out = {}
    for stmt in cls.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        value, keywords = stmt.value, {}
        if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "field":
            keywords = {k.arg: k.value for k in value.keywords}
            if _literal(keywords.get("init"))[1] is False:
                continue
            has, default = _literal(keywords.get("default"))
            has = has or "default" in keywords or "default_factory" in keywords
            metadata = _literal(keywords.get("metadata"))[1] or {}
        else:
            has, default = (True, _literal(value)[1]) if value is not None else (False, None)
            metadata = {}
        if isinstance(getattr(stmt.annotation, "id", None), str) and stmt.annotation.id == "ClassVar":
            continue
        out[stmt.target.id] = _arg(stmt.target.id, _members_of_node(stmt.annotation), default, has,
                                   metadata if isinstance(metadata, dict) else {})
    return out


@functools.cache
def trl_fields(kind: str) -> dict[str, Arg]:
    """Every init field of TRL's config for ``kind`` ('dpo' or 'sft') as the command line takes it,
    read from the installed sources, base class first (a later class's field replaces an earlier
    one's, as dataclasses do); TRL's own classes where the sources are laid out otherwise."""
    try:
        out: dict[str, Arg] = {}
        for package, relative, name, base in _CHAINS[kind]:
            out.update(_class_args(_source(package, relative), name, base))
        return out
    except (_Unreadable, OSError, SyntaxError):
        from trl import DPOConfig, SFTConfig

        return args_of_class(DPOConfig if kind == "dpo" else SFTConfig)


def training_fields(method: str) -> dict[str, Arg]:
    """The training arguments of ``method``'s trainer: TRL's, this trainer's defaults and help over them."""
    kind = "sft" if method == SFT else "dpo"
    fields = dict(trl_fields(kind))  # a copy: trl_fields' result is cached
    fields.update(args_of_class(SETTINGS[kind]))
    return fields


# --- the parser ------------------------------------------------------------------------------------------

class _Formatter(PlainHelpFormatter):
    """One spelling per flag in ``--help`` (the dashed one, and its other names), its value shown once:
    ``--dataset-name, --dataset DATASET_NAME``; the underscore spelling works all the same."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        names = [s for s in action.option_strings if s.replace("_", "-") == s or s.replace("_", "-")
                 not in action.option_strings]
        if action.nargs == 0:
            return ", ".join(names)
        return ", ".join(names) + " " + self._format_args(action, self._get_default_metavar_for_optional(action))


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are ``UserError`` lines (``builder.errors.run_command`` prints them),
    with the nearest flag named for a misspelt one."""

    def error(self, message: str):
        if message.startswith("unrecognized arguments:"):
            unknown = message.split(":", 1)[1].split()[0]
            near = difflib.get_close_matches(unknown.split("=")[0], list(self._option_string_actions), n=1)
            if near:
                message += f" (did you mean {near[0]}?)"
        raise UserError(message)


def _flags(arg: Arg) -> list[str]:
    names = [arg.name, *(a.lstrip("-") for a in arg.aliases)]
    return [f"--{s}" for n in names for s in dict.fromkeys((n, n.replace("_", "-")))]


def _string_to_bool(text: str) -> bool:
    if text.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if text.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _checked(convert):
    """An argparse ``type`` that checks a training argument's value reads as ``convert`` and keeps the
    text: step 2 hands the text to TRL's parser, which converts it its own way."""
    def check(text: str) -> str:
        try:
            convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {convert.__name__}, got {text!r}") from None
        return text
    check.__name__ = convert.__name__
    return check


class _Passthrough(argparse.Action):
    """Records a training argument as typed (``--flag value...``) for step 2."""

    def __call__(self, parser, namespace, values, option_string=None):
        values = [] if values is None else values if isinstance(values, list) else [values]
        namespace.trl_argv = [*getattr(namespace, "trl_argv", []), option_string, *map(str, values)]
        namespace.trl_given = {*getattr(namespace, "trl_given", set()), self.dest}


def _help_text(arg: Arg, cls: type | None) -> str:
    text = field_help(cls, arg.name) if cls is not None else arg.help + (
        f" (default: {arg.default})" if arg.has_default and arg.default not in (None, "", [], ()) else "")
    return text.replace("%%", "%").replace("%", "%%")  # argparse %-formats help


def _add(group, arg: Arg, cls: type | None, *, training: bool, shown: bool) -> None:
    kwargs: dict[str, Any] = {"dest": arg.name, "default": argparse.SUPPRESS,
                              "help": _help_text(arg, cls) if shown else argparse.SUPPRESS}
    if arg.kind == "bool":  # alone it means true (HfArgumentParser wants a value for an optional bool: step 2 adds it)
        kwargs.update(metavar="true|false", nargs="?", const="true" if training else True,
                      type=_checked(_string_to_bool) if training else _string_to_bool)
    elif arg.kind == "list":
        kwargs.update(nargs="+", type=_checked(arg.convert) if training else arg.convert, metavar=arg.name.upper())
    else:
        kwargs.update(type=_checked(arg.convert) if training else arg.convert,
                      metavar=arg.name.upper() if arg.convert is str else arg.convert.__name__.upper())
    if arg.choices:
        kwargs["choices"] = [str(c) for c in arg.choices] if training else list(arg.choices)
        kwargs.pop("metavar", None)
    if training:
        kwargs["action"] = _Passthrough
    group.add_argument(*_flags(arg), **kwargs)
    if arg.negatable:
        no = {"dest": arg.name, "default": argparse.SUPPRESS,
              "help": (arg.help_no or f"turn --{arg.name.replace('_', '-')} off") if shown else argparse.SUPPRESS}
        if training:
            group.add_argument(f"--no_{arg.name}", f"--no-{arg.name.replace('_', '-')}", nargs=0, action=_Passthrough, **no)
        else:
            group.add_argument(f"--no_{arg.name}", f"--no-{arg.name.replace('_', '-')}", action="store_false", **no)


def build_parser(method: str, *, full: bool = False) -> argparse.ArgumentParser:
    """Every flag of ``method``'s run. ``full``: ``--help`` lists every training argument of TRL's,
    not only this trainer's defaults and the ones in ``SHOWN``."""
    p = _Parser(prog=PROG, usage=USAGE, description=DESCRIPTION, formatter_class=_Formatter, add_help=False,
                epilog="Every flag also takes TRL's spelling with underscores (--learning_rate); a boolean alone "
                       "means true (--bf16), or takes true/false. docs/train.md has the details.")
    general = p.add_argument_group("general")
    general.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    general.add_argument("--help-all", "--help_all", action="store_true",
                         help="show every setting, each training argument of TRL's with its own help, and exit")
    general.add_argument("--version", action="version", version=f"{PROG} (ap2o-coder) {package_version()}",
                         help="print the version and exit")
    general.add_argument("--config", metavar="RECIPE.yaml", default=argparse.SUPPRESS,
                         help="a YAML recipe (trainer/recipes/) setting any option below by name; flags override it")
    taken: set[str] = set()
    for title, cls in OURS:
        group = p.add_argument_group(title, plain(cls.__doc__.strip().split("\n\n")[0].replace("\n", " ")))
        for arg in args_of_class(cls).values():
            shown = full or not (cls is QuizConfig and arg.help.startswith("quiz grader: "))
            _add(group, arg, cls, training=False, shown=shown)
            taken.add(arg.name)
        if cls is QuizConfig and not full:
            group.description += (" The quiz's sandbox takes every grader setting of 'ap2o-build grade' under a "
                                  "quiz_ prefix (--quiz-timeout-s, --quiz-memory-mb, --quiz-workers, ...; --help-all).")
    fields = training_fields(method)
    kind = "sft" if method == SFT else "dpo"
    settings = {f.name for f in dataclasses.fields(SETTINGS[kind])}
    trl_class = "SFTConfig" if kind == "sft" else "DPOConfig"
    hidden = [n for n in fields if n not in settings and n not in SHOWN]
    group = p.add_argument_group(
        "training", f"TRL's {trl_class} (on transformers' TrainingArguments) with the paper's defaults"
        + ("" if full else f"; {len(hidden)} more of its settings are flags too (--help-all lists them)"))
    for name, arg in fields.items():
        if name in taken:
            raise AssertionError(f"{name} is both ours and TRL's")
        _add(group, arg, SETTINGS[kind] if name in settings else None, training=True,
             shown=full or name in settings or name in SHOWN)
    return p


# --- reading a command line ------------------------------------------------------------------------------

@dataclasses.dataclass
class CommandLine:
    """What step 1 made of a command line: our settings built, the training arguments as typed."""

    data: DataArguments
    model: ModelArguments
    schedule: ScheduleConfig
    quiz: QuizConfig
    method: str
    training_argv: list[str]                 # the training flags as typed, for TRL's parser
    training_recipe: dict[str, Any]          # the recipe's training arguments

    def value(self, name: str) -> Any:
        """A training argument as typed (the last flag naming it; a boolean as a bool), else the recipe's,
        else None: for the checks made before TRL is imported (``--output-dir``, ``--push-to-hub``, ...)."""
        arg = training_fields(self.method)[name]
        flags, off = set(_flags(arg)), {f"--no_{name}", f"--no-{name.replace('_', '-')}"}
        value = self.training_recipe.get(name)
        argv = self.training_argv
        for i, token in enumerate(argv):
            if token in flags:
                given = argv[i + 1] if i + 1 < len(argv) else None
                value = _string_to_bool(given) if arg.kind == "bool" else given
            elif token in off:
                value = False
        return value


def peek_method(argv: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """The method (a flag's, else the recipe's, else the default) and the recipe: the training
    arguments depend on the method (DPO or SFT), so it is read first."""
    argv = list(argv)
    recipe: dict[str, Any] = {}
    for i, a in enumerate(argv):
        if a == "--config" or a.startswith("--config="):
            path = a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else None)
            if not path:
                raise UserError("--config needs a recipe path")
            try:
                with open(path) as f:
                    recipe = yaml.safe_load(f) or {}
            except OSError as e:
                raise UserError(f"{path}: cannot read recipe ({e.strerror})") from None
            except yaml.YAMLError as e:
                raise UserError(f"{path}: not a YAML recipe ({str(e).splitlines()[0]})") from None
            if not isinstance(recipe, dict):
                raise UserError(f"{path}: a recipe is a YAML mapping of option names to values")
            recipe = {RENAMED.get(k, k): v for k, v in recipe.items()}
    method = recipe.get("method", ScheduleConfig.method)
    for i, a in enumerate(argv):
        if a == "--method" and i + 1 < len(argv):
            method = argv[i + 1]
        elif a.startswith("--method="):
            method = a.split("=", 1)[1]
    return method, recipe


def parse_command_line(argv: Sequence[str] | None = None) -> CommandLine:
    """Step 1: the command line and its recipe read, our settings built (and validated), the training
    arguments checked by name and form. ``--help``, ``--help-all`` and ``--version`` exit here."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "--help-all", "--help_all") for a in argv):  # before anything can fail
        full = "--help-all" in argv or "--help_all" in argv
        method = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--method"), ScheduleConfig.method)
        build_parser(method, full=full).print_help()
        raise SystemExit(0)
    method, recipe = peek_method(argv)
    args = build_parser(method).parse_args(argv)
    for key, value in (recipe.pop("env", None) or {}).items():  # TRL recipes' env block
        os.environ[str(key)] = str(value)
    fields = training_fields(method)
    unknown = sorted(set(recipe) - set(fields) - {n for _, cls in OURS for n in args_of_class(cls)})
    if unknown:
        raise UserError(f"recipe: unknown setting {unknown[0]!r}")
    built = {}
    for title, cls in OURS:
        names = args_of_class(cls)
        values = {n: recipe[n] for n in names if n in recipe}
        values.update({n: getattr(args, n) for n in names if hasattr(args, n)})
        try:
            built[title] = cls(**values)
        except TypeError as e:
            raise UserError(f"{title} settings: {e}") from None
    for name, flag in REQUIRED.items():
        if name == "output_dir":
            if "output_dir" not in getattr(args, "trl_given", set()) and not recipe.get("output_dir"):
                raise UserError(f"{flag} is required")
        elif not getattr(built["data" if name.startswith("dataset") else "model"], name):
            raise UserError(f"{flag} is required")
    training_recipe = {k: v for k, v in recipe.items() if k in fields}
    return CommandLine(built["data"], built["model"], built["schedule"], built["quiz"], built["schedule"].method,
                       list(getattr(args, "trl_argv", [])), training_recipe)


def training_arguments(line: CommandLine):
    """Step 2: the training arguments as TRL's parser reads them, into ``AP2ODPOConfig`` or
    ``AP2OSFTConfig`` (imports TRL). A value TRL refuses is a ``UserError`` line."""
    from transformers import HfArgumentParser

    from trainer import trl_config  # imports TRL: only once our own settings have been read and checked

    cls = trl_config.AP2OSFTConfig if line.method == SFT else trl_config.AP2ODPOConfig

    class Parser(HfArgumentParser):
        def error(self, message):
            raise UserError(message)

    parser = Parser(cls)
    parser.set_defaults(**line.training_recipe)
    try:
        (targs,) = parser.parse_args_into_dataclasses(args=line.training_argv)
    except UserError:
        raise
    except (ValueError, TypeError) as e:  # TrainingArguments.__post_init__: a combination TRL refuses
        raise UserError(str(e).strip().splitlines()[0]) from None
    return targs


__all__ = [
    "Arg",
    "CommandLine",
    "args_of_class",
    "build_parser",
    "parse_command_line",
    "peek_method",
    "training_arguments",
    "training_fields",
    "trl_fields",
]
