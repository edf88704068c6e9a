"""Config dataclasses <-> command-line flags: the one place a flag is made from a field.

Every field of a stage's config dataclass carries its ``help`` in the field's metadata; the flag,
its type, its help text (with the default appended) and the value read back all come from the
field, so a flag cannot drift from the setting it sets, and a YAML recipe uses the same names.
Each flag answers to both spellings, ``--max-new-tokens`` and ``--max_new_tokens``.

Why a module of its own: every stage's command (``run``, ``card``, ``notebook``, ``push``,
``sample``) and ``ap2o-eval`` make flags this way; living in ``run.py`` it made each of them import
the orchestration that imports them back.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from builder.errors import UserError


def first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph on one line: what a parser or an argument group shows as its
    description (its first *line* would stop mid-sentence where the sentence wraps)."""
    paragraph = (doc or "").strip().split("\n\n")[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


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


def flag_name(name: str, rename: dict[str, str] | None = None) -> str:
    """The flag a field gets (before any group prefix a clash adds): ``max_new_tokens`` ->
    ``--max-new-tokens``; ``rename`` gives a field a shorter command-line name."""
    return "--" + (rename or {}).get(name, name).replace("_", "-")


def _with_underscores(flag: str) -> list[str]:
    return [flag] + (["--" + flag[2:].replace("-", "_")] if "-" in flag[2:] else [])


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, group: str | None = None,
                            exclude: tuple[str, ...] = (), rename: dict[str, str] | None = None,
                            aliases: dict[str, tuple[str, ...]] | None = None, title: str | None = None) -> None:
    """One flag per field of ``cls``, its help (and ``choices``) from the field's metadata. Flags
    that are not given stay out of the namespace (``SUPPRESS``), so a recipe's value is overridden
    only by a flag the user typed. A flag name already taken gets the group as prefix
    (``--pairs-seed``); ``aliases`` adds spellings a field is also known by on some command
    (``--timeout`` for ``timeout_s``), so the same setting has the same names everywhere. ``title``:
    the heading of the flags in ``--help`` (default: the group, else the class name)."""
    section = parser.add_argument_group(title or group or cls.__name__, first_paragraph(cls.__doc__))
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        flag = flag_name(f.name, rename)
        if flag in parser._option_string_actions and group:
            flag = f"--{group}-{f.name}".replace("_", "-")
        spellings = [s for name in (flag, *(aliases or {}).get(f.name, ())) for s in _with_underscores(name)]
        kwargs: dict[str, Any] = {"dest": f"{group}.{f.name}" if group else f.name, "default": argparse.SUPPRESS,
                                  "help": field_help(cls, f.name)}
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
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bars")


def named_by_flag(error: UserError, cls: type, rename: dict[str, str] | None = None) -> UserError:
    """A config's own error (``timeout_s must be in ...``) reworded with the flag the user typed
    (``--timeout must be in ...``): the command line is what the user knows, not the field."""
    message = str(error)
    for f in dataclasses.fields(cls):
        if message.startswith(f.name + " "):
            return UserError(flag_name(f.name, rename) + message[len(f.name):])
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


__all__ = ["add_dataclass_arguments", "add_quiet", "build_dataclass", "check_types", "dataclass_from_args", "field_help",
           "first_paragraph", "flag_name", "flag_values", "named_by_flag"]


# --- the same fields for flat parsers --------------------------------------------------------------
# ``ap2o-train`` parses with TRL's ``TrlParser`` (``HfArgumentParser``), which reads flat dataclasses
# only: it cannot hold a ``GraderConfig`` inside ``QuizConfig``. So a trainer config that needs
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
    metadata["help"] = help_prefix + metadata.get("help", "")
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
