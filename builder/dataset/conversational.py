"""TRL's conversational form of a chat-format dataset, and back to text.

TRL decides per dataset whether to apply the chat template (``trl.data_utils.is_conversational``):
only when ``prompt``/``chosen``/``rejected``/``completion`` hold message lists. So a dataset sampled
in the chat prompt format publishes those columns as ``[{"role": "user", "content": ...}]`` and
``[{"role": "assistant", "content": ...}]`` (``schemas.CONVERSATIONAL``, schema version 3), and
``DPOTrainer``, ``KTOTrainer`` and ``SFTTrainer`` format them with the model's template as loaded.
Completion and official formats are raw text and stay strings.

Inside ap2o-coder the text is computed and compared as strings (``builder.dataset.pairs`` makes
both configs' text with one function); this module is the boundary: ``to_messages`` when a config
is written, ``to_text`` when a config is read back (``builder.dataset.notebook.annotate``, the
trainer's reading layer ``trainer.data``). A column is either layout for a whole config -- every
split, every row -- because ``datasets`` gives a config one set of features; so a dataset whose
answers mix chat with a text format is refused (``is_chat``).
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

import schemas
from builder.errors import UserError
from builder.generation.prompts import CHAT, COMPLETION

# every conversational column's role, whichever config it belongs to
_ROLES = {name: role for columns in schemas.CONVERSATIONAL.values() for name, role in columns.items()}


def _is_list(tp: pa.DataType) -> bool:
    return pa.types.is_list(tp) or pa.types.is_large_list(tp)


def is_chat(formats: Iterable[str | None], where: str = "samples") -> bool:
    """Whether a dataset whose answers were asked in ``formats`` (one per answer, or the distinct
    ones; None is completion) is a chat-format dataset. A mix of chat and a text format has no
    one layout and is refused."""
    seen = {f or COMPLETION for f in formats}
    if CHAT in seen and len(seen) > 1:
        other = sorted(seen - {CHAT})
        raise UserError(f"{where}: the answers mix the chat prompt format with {', '.join(other)}: a chat dataset's "
                        "prompt and answers are message lists, the others' are text, and a column holds one; "
                        "build them as separate datasets")
    return seen == {CHAT}


def _messages(text: pa.ChunkedArray | pa.Array, role: str) -> pa.Array:
    """Each string as a one-message list ``[{role, content: string}]`` (a null stays null)."""
    text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    text = text.cast(pa.string())
    n = len(text)
    struct = pa.StructArray.from_arrays([pa.array([role] * n, pa.string()), text], names=["role", "content"])
    offsets = pa.array(range(n + 1), pa.int32())
    return pa.ListArray.from_arrays(offsets, struct, type=schemas.MESSAGES, mask=text.is_null())


def to_messages(table: pa.Table, config: str) -> pa.Table:
    """``config``'s text columns (``schemas.CONVERSATIONAL``) of a chat-format ``table`` as TRL's
    message lists; field help and the schema's metadata kept."""
    for name, role in schemas.CONVERSATIONAL[config].items():
        if name not in table.column_names or _is_list(table.schema.field(name).type):
            continue
        i = table.column_names.index(name)
        table = table.set_column(i, table.schema.field(name).with_type(schemas.MESSAGES),
                                 _messages(table.column(name), role))
    return table


def _content(column: pa.ChunkedArray, name: str, where: str) -> pa.Array:
    """The one message's content of each row of a message-list column, checking its role."""
    column = column.combine_chunks()
    lengths = pc.list_value_length(column).fill_null(1)
    bad = pc.not_equal(lengths, 1)
    if pc.any(bad).as_py():
        row = pc.index(bad, True).as_py()
        raise UserError(f"{where}: column {name!r} row {row} has {lengths[row].as_py()} messages; ap2o-coder reads "
                        f"a chat {name} of one {_ROLES[name]} message")
    valid = column.is_valid()
    first = pc.list_element(column.fill_null([{"role": _ROLES[name], "content": None}]), 0)
    roles = first.field("role")
    wrong = pc.not_equal(roles, _ROLES[name]).fill_null(False)
    if pc.any(wrong).as_py():
        at = pc.index(wrong, True).as_py()
        raise UserError(f"{where}: column {name!r} row {at} holds a {roles[at].as_py()!r} message, "
                        f"expected {_ROLES[name]!r}")
    return pc.if_else(valid, first.field("content"), pa.scalar(None, pa.string()))


def to_text(table: pa.Table, where: str = "samples") -> pa.Table:
    """``table`` with every message-list text column (a chat-format ``samples`` or ``pairs`` of
    schema version 3) as the string of its one message: the layout of version 2, which the rest of
    ap2o-coder computes with. Text columns pass unchanged, so any version can go through."""
    for name in _ROLES:
        if name not in table.column_names or not _is_list(table.schema.field(name).type):
            continue
        i = table.column_names.index(name)
        table = table.set_column(i, table.schema.field(name).with_type(pa.string()),
                                 _content(table.column(name), name, where))
    return table


def text_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every message-list text column typed string (what ``to_text`` makes)."""
    return pa.schema([f.with_type(pa.string()) if f.name in _ROLES and _is_list(f.type) else f
                      for f in schema], metadata=schema.metadata)


__all__ = ["is_chat", "text_schema", "to_messages", "to_text"]
