"""Config dataclasses <-> command-line flags: the one place a flag is made from a field.

Every field of a stage's config dataclass carries its ``help`` in the field's metadata; the flag,
its type, its help text (with the default appended) and the value read back all come from the
field, so a flag cannot drift from the setting it sets, and a YAML recipe uses the same names.
Each flag answers to both spellings, ``--max-new-tokens`` and ``--max_new_tokens``. A field whose
name would be ambiguous on a command that mixes configs names its flag in its metadata (``flag``:
``PairsConfig.seed`` is ``--pairs-seed`` on every command). Help is plain text: the docstrings'
and helps' reStructuredText backticks are dropped (``plain``), and a group is titled by what it
configures (``sample``, ``grader``), not by its class.

Why a module of its own: every stage's command (``run``, ``sample``, ``grade``, ``notebook``,
``card``, ``push``) and ``ap2o-eval`` make flags this way; living in the orchestration
(``builder.pipeline``) it made each of them import the module that imports them back.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from builder.errors import UserError

__all__ = ["PlainHelpFormatter", "add_dataclass_arguments", "add_quiet", "add_version", "borrowed", "build_dataclass",
           "check_types", "config_title", "dataclass_from_args", "field_help", "first_paragraph", "flag_name",
           "flag_values", "named_by_flag", "package_version", "plain", "prefixed", "unprefixed"]


def first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph on one line: what a parser or an argument group shows as its
    description (its first *line* would stop mid-sentence where the sentence wraps)."""
    paragraph = (doc or "").strip().split("\n\n")[0]
    return plain(" ".join(line.strip() for line in paragraph.splitlines()))


def plain(text: str) -> str:
    """``text`` without reStructuredText's inline-literal backticks (``x`` and `x` -> x): what a
    terminal shows of a docstring or a field's help."""
    return re.sub(r"`{1,2}([^`]+?)`{1,2}", r"\1", text)


class PlainHelpFormatter(argparse.HelpFormatter):
    """``--help`` as plain text: descriptions, group texts and every flag's help through ``plain``,
    whoever wrote them (a field's metadata, a hand-made flag, a docstring)."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return plain(super()._expand_help(action))


def _shown(value: Any) -> str | None:
    """A default as ``--help`` shows it; None when there is nothing to show."""
    if isinstance(value, (tuple, list)) and value and not isinstance(value, str):
        value = ",".join(map(str, value))
    if value is None or (isinstance(value, (str, list, dict, tuple)) and not value):
        return None
    return str(value)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def field_help(cls: type, name: str, preset: dict[str, Any] | None = None, preset_label: str = "") -> str:
    """A config field's ``help`` metadata with its default appended: how every flag that mirrors a
    dataclass field describes itself (``ap2o-build`` stages and ``ap2o-eval`` alike). ``preset``:
    the values a command uses when the user names nothing (``run``'s embedded default recipe);
    where one differs from the field's default, the help says both (``preset_label``: whose)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    default, text = _shown(_default(f)), plain(f.metadata.get("help", ""))
    if preset and name in preset and _shown(preset[name]) != default and _shown(preset[name]) is not None:
        mine = f"default: {default}; " if default is not None else ""
        return text + f" ({mine}{preset_label}: {_shown(preset[name])})"
    return text + (f" (default: {default})" if default is not None else "")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _comma_separated(item: type):
    def parse(text: str) -> tuple:
        try:
            return tuple(item(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {item.__name__} values, got {text!r}") from None

    return parse


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k, v


def flag_name(name: str, rename: dict[str, str] | None = None, cls: type | None = None) -> str:
    """The flag a field gets (before any group prefix a clash adds): ``max_new_tokens`` ->
    ``--max-new-tokens``; the field's ``flag`` metadata (its name on every command), else
    ``rename``, gives it another command-line name."""
    own = next((f.metadata.get("flag") for f in dataclasses.fields(cls) if f.name == name), None) if cls else None
    return "--" + (own or (rename or {}).get(name, name)).replace("_", "-")


def config_title(cls: type) -> str:
    """The ``--help`` heading of a config's flags: what it configures (``SampleConfig`` ->
    ``sample``), the same word a recipe's block and ``ap2o-build run``'s groups use."""
    name = cls.__name__.lstrip("_")
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name.removesuffix("Config")).lower() or name


def _with_underscores(flag: str) -> list[str]:
    return [flag] + (["--" + flag[2:].replace("-", "_")] if "-" in flag[2:] else [])


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, group: str | None = None,
                            exclude: tuple[str, ...] = (), rename: dict[str, str] | None = None,
                            aliases: dict[str, tuple[str, ...]] | None = None, title: str | None = None,
                            preset: dict[str, Any] | None = None, preset_label: str = "") -> None:
    """One flag per field of ``cls``, its help (and ``choices``) from the field's metadata. Flags
    that are not given stay out of the namespace (``SUPPRESS``), so a recipe's value is overridden
    only by a flag the user typed. A flag name already taken gets the group as prefix
    (``--problems-config``); ``aliases`` adds spellings a field is also known by on some command
    (``--timeout`` for ``timeout_s``), so the same setting has the same names everywhere. ``title``:
    the heading of the flags in ``--help`` (default: the group, else ``config_title``). ``preset``:
    the values the command uses when the user names nothing, shown beside the defaults (``field_help``)."""
    section = parser.add_argument_group(title or group or config_title(cls), plain(first_paragraph(cls.__doc__)))
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        flag = flag_name(f.name, rename, cls)
        if flag in parser._option_string_actions and group:
            flag = f"--{group}-{f.name}".replace("_", "-")
        spellings = [s for name in (flag, *(aliases or {}).get(f.name, ())) for s in _with_underscores(name)]
        kwargs: dict[str, Any] = {"dest": f"{group}.{f.name}" if group else f.name, "default": argparse.SUPPRESS,
                                  "help": field_help(cls, f.name, preset, preset_label)}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        tp = _unwrap_optional(hints[f.name])
        origin = typing.get_origin(tp)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs["required"] = True  # the dataclass cannot be built without it: argparse says so first
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is tuple:  # tuple[int, ...]: comma-separated on the command line (--k 1,5,10)
            kwargs.update(type=_comma_separated(typing.get_args(tp)[0]), metavar=f"{f.name.upper()},...")
        elif origin is list:
            kwargs.update(action="append", metavar=f.name.upper())
        elif origin is dict:
            kwargs.update(action="append", type=_key_value, metavar="KEY=VALUE")
        elif tp in (int, float, str):
            kwargs["type"] = tp
            if "choices" not in kwargs:  # argparse shows the choices themselves
                kwargs["metavar"] = f.name.upper() if tp is str else tp.__name__.upper()
        else:
            kwargs.update(type=str)
        section.add_argument(*spellings, **kwargs)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` (or ``--no-progress``): no progress bars; ``args.quiet``. The same two spellings on
    every command."""
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                        help="no progress bars (they draw only when stderr is a terminal; AP2O_PROGRESS=1 forces them)")


def package_version() -> str:
    """The installed ap2o-coder's version (``unknown`` in a source tree that was never installed)."""
    try:
        return version("ap2o-coder")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: the command and ap2o-coder's version, the same on every command."""
    parser.add_argument("--version", action="version", version=f"{parser.prog} (ap2o-coder) {package_version()}",
                        help="print the version and exit")


def named_by_flag(error: UserError, cls: type, rename: dict[str, str] | None = None) -> UserError:
    """A config's own error (``timeout_s must be in ...``) reworded with the flag the user typed
    (``--timeout must be in ...``): the command line is what the user knows, not the field."""
    message = str(error)
    for f in dataclasses.fields(cls):
        if message.startswith(f.name + " "):
            return UserError(flag_name(f.name, rename, cls) + message[len(f.name):])
    return error


def flag_values(args: argparse.Namespace, cls: type, group: str | None) -> dict[str, Any]:
    prefix = f"{group}." if group else ""
    names = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for key, value in vars(args).items():
        if key.startswith(prefix) and key[len(prefix):] in names:
            name = key[len(prefix):]
            is_pairs = isinstance(value, list) and value and isinstance(value[0], tuple)
            out[name] = dict(value) if is_pairs else value  # KEY=VALUE flags -> a dict
    return out


def build_dataclass(cls: type, values: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(names))})")
    check_types(cls, values, where)
    try:
        return cls(**values)
    except TypeError as e:
        raise UserError(f"{where}: {e}") from None


def check_types(cls: type, values: dict[str, Any], where: str) -> None:
    """``UserError`` naming the first value (from a recipe or a caller) whose type is not its
    field's: a YAML ``limit: ten``, ``n: [1, 2]`` or ``chunk_problems: lots`` would otherwise fail
    deep inside the build, and ``limit: true`` or ``limit: 2.5`` would be taken as 1 and 2.5.
    Fields of a type this does not know are left to the dataclass."""
    hints = _hints(cls)
    for name, value in values.items():
        tp = hints.get(name)
        if tp is not None and not _of_type(value, tp):
            raise UserError(f"{where}: {name} must be {_type_words(tp)}, got {value!r}")


def _of_type(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_of_type(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (tuple, list):  # a YAML list stands for either
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and (not args or all(_of_type(v, args[0]) for v in value))
    if origin is dict:
        return isinstance(value, dict)
    return True  # Any, Literal, a class of ours: the dataclass checks it


def _type_words(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_words(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        plural = {int: "whole numbers", float: "numbers", str: "strings", bool: "true/false values"}
        return f"a list of {plural.get(args[0], 'values')}" if args else "a list"
    words = {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
             type(None): "null", dict: "a mapping"}
    return words.get(tp, getattr(tp, "__name__", str(tp)))


def dataclass_from_args(cls: type, args: argparse.Namespace, base: dict[str, Any] | None = None,
                        group: str | None = None) -> Any:
    """``cls`` from ``base`` values overridden by the flags the user gave."""
    return build_dataclass(cls, {**(base or {}), **flag_values(args, cls, group)}, "command line")




# --- the same fields for flat parsers --------------------------------------------------------------
# ``ap2o-train`` reads flat dataclasses only, as TRL's ``HfArgumentParser`` does (``trainer.arguments``):
# it cannot hold a ``GraderConfig`` inside ``QuizConfig``. So a trainer config that needs
# another config's settings takes *the same fields* -- default, help and choices read from the owner,
# not retyped -- and turns them back into the owner's class when it uses them.

_PARSER_KEYS = ("help", "choices")  # what HfArgumentParser passes on to argparse; builder-only keys stay home


def _field(cls: type, name: str) -> dataclasses.Field:
    try:
        return next(f for f in dataclasses.fields(cls) if f.name == name)
    except StopIteration:
        raise AttributeError(f"{cls.__name__} has no field {name!r}") from None


def borrowed(cls: type, name: str, *, help_prefix: str = "") -> Any:
    """A ``dataclasses.field`` with ``cls.name``'s default, help and choices: one field stated once,
    used by a second config that cannot nest ``cls``."""
    f = _field(cls, name)
    metadata = {k: v for k, v in f.metadata.items() if k in _PARSER_KEYS}
    metadata["help"] = help_prefix + plain(metadata.get("help", ""))
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=metadata)
    return dataclasses.field(default=f.default, metadata=metadata)


def prefixed(cls: type, prefix: str, *, help_prefix: str = "") -> type:
    """A dataclass with every field of ``cls`` as ``prefix + name`` (types, defaults and help
    borrowed), to inherit from; ``unprefixed`` turns an instance back into a ``cls``. A field added
    to ``cls`` later appears in every prefixed copy with no edit."""
    hints = typing.get_type_hints(cls)
    fields = [(prefix + f.name, hints[f.name], borrowed(cls, f.name, help_prefix=help_prefix))
              for f in dataclasses.fields(cls)]
    made = dataclasses.make_dataclass(f"_{prefix.strip('_').title()}{cls.__name__}", fields)
    made.__doc__ = f"The fields of {cls.__module__}.{cls.__name__}, each named {prefix}<field>."
    return made


def unprefixed(obj: Any, cls: type, prefix: str) -> Any:
    """The ``cls`` that ``obj``'s ``prefix``-ed fields describe (``cls``'s own validation runs, and
    its complaint names the field as the user spelt it)."""
    names = [f.name for f in dataclasses.fields(cls)]
    try:
        return cls(**{name: getattr(obj, prefix + name) for name in names})
    except UserError as e:
        text = str(e)
        named = next((n for n in sorted(names, key=len, reverse=True) if text.startswith(n)), None)
        raise UserError(prefix + text if named else text) from None
