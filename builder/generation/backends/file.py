"""Answers that were sampled elsewhere: a JSONL or Parquet file with ``problem_id`` and ``completion``.

This is how answers from any system we do not drive (a hosted API batch job, another
framework's generations, a past run) enter the pipeline: the rest of the build -- grading, the
notebook, pairs -- cannot tell them from answers sampled here. ``completion`` is the model's answer
as it came out: the continuation of the prompt in completion mode, the reply in chat mode (choose
``--prompt-format`` to match; a completion that already starts with the prompt, as in a samples
file from ``ap2o-build sample``, is taken as prompt + continuation). Answers keep the file's order within a problem, or ``sample_index``
order when the file has that column.

Recorded provenance wins. A recording may say how its answers were made (``model``,
``model_revision``, ``backend``, ``prompt_format``, ``temperature``, ``top_p``, ``max_new_tokens``,
``seed`` columns); each imported row keeps its own recorded values, never the importing command's.
A setting the user states (a flag, a recipe line, a ``model=`` argument) that contradicts the
recording is an error naming both values; a setting left at its default takes the recording's
value (``reconcile``), so ``build.yaml`` and the card describe the answers as they were made.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Iterable, Mapping
from importlib.resources import files
from typing import Any

import pyarrow as pa

from builder.errors import UserError
from builder.generation.backends.base import Backend, Request, SamplingParams
from builder.io import read_rows

REQUIRED = ("problem_id", "completion")


# Generation columns a recording may carry; every imported row keeps its own values of them.
RECORDED = ("model", "model_revision", "backend", "prompt_format", "temperature", "top_p", "max_new_tokens", "seed")
# Of those, what a SampleConfig also states (``backend`` there is ours, ``file``; the recording's
# says where the answers came from and is no setting to contradict).
SETTINGS = tuple(c for c in RECORDED if c != "backend")
# Kept for callers that read the single-valued part: ``FileBackend.provenance``.
PROVENANCE = ("backend", "temperature", "top_p", "max_new_tokens", "seed")


# A recording shipped inside an installed package is named by a package-relative reference,
# ``pkg://<package>/<path inside it>`` (e.g. ``pkg://builder/data/humaneval-....parquet``), never by
# where the package happens to be installed: a recipe or ``build.yaml`` that names it works on
# any machine with ap2o-coder installed. ``resolve_path`` is the one place that reads the form.
PKG_SCHEME = "pkg://"


def resolve_path(ref: str | os.PathLike) -> str:
    """A local path for ``ref``: a ``pkg://PACKAGE/PATH`` reference resolved inside the installed
    package, anything else returned as given."""
    text = os.fspath(ref)
    if not text.startswith(PKG_SCHEME):
        return text
    package, _, inner = text[len(PKG_SCHEME):].partition("/")
    if not package or not inner:
        raise UserError(f"{text}: expected {PKG_SCHEME}PACKAGE/PATH (e.g. {PKG_SCHEME}builder/data/FILE.parquet)")

    try:
        root = files(package)
    except ModuleNotFoundError:
        raise UserError(f"{text}: no installed package {package!r}") from None
    return os.fspath(root.joinpath(*inner.split("/")))


def package_reference(path: str | os.PathLike, package: str = "builder") -> str:
    """``path`` as a ``pkg://`` reference when it lies inside ``package``; else as given."""
    text = os.fspath(path)
    if text.startswith(PKG_SCHEME):
        return text
    root = os.path.realpath(os.fspath(files(package)))
    real = os.path.realpath(text)
    if os.path.commonpath([root, real]) != root:
        return text
    return PKG_SCHEME + package + "/" + os.path.relpath(real, root).replace(os.sep, "/")


class FileBackend(Backend):
    """Serve each request the file's answers for its problem id, at most ``params.n`` of them."""

    name = "file"

    def __init__(self, path: str | os.PathLike, *, model: str | None = None, model_revision: str | None = None) -> None:
        self.path = resolve_path(path)
        try:
            table = read_rows(self.path, required=REQUIRED)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:  # e.g. a column mixing text and numbers
            raise UserError(f"{self.path}: inconsistent column types ({e})") from None
        self.answers, self._recorded_rows = _group(table, self.path)
        self.recorded = recorded_values(table)
        # the file says which model wrote it; an argument may only agree
        given = {"model": model, "model_revision": model_revision}
        conflict = contradictions({k: v for k, v in given.items() if v is not None}, self.recorded)
        if conflict:
            raise UserError(f"{self.path}: {conflict[0]}")
        self.model = model or _single(table, "model")
        self.model_revision = model_revision or _single(table, "model_revision")
        self.provenance = {c: v for c in PROVENANCE if (v := _single(table, c)) is not None}

    def recorded_for(self, key: str, index: int) -> dict[str, Any]:
        """The generation columns the file records for the ``index``-th answer served for ``key``
        (non-null values only): what that answer's row says, whatever the importer's settings."""
        rows = self._recorded_rows.get(key) or []
        return dict(rows[index]) if index < len(rows) else {}

    def generate(self, requests: list[Request], params: SamplingParams, *, progress: bool = True) -> list[list[str]]:
        missing = [r.key for r in requests if not self.answers.get(r.key)]
        if missing:
            more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
            raise UserError(f"{self.path}: no completions for problem_id "
                            f"{', '.join(repr(k) for k in missing[:3])}{more}")
        short = sum(len(self.answers[r.key]) < params.n for r in requests)
        if short and progress:
            print(f"note: {self.path}: {short} of {len(requests)} problems have fewer than n={params.n} "
                  "completions; all of theirs are used", file=sys.stderr)
        return [[_continuation(a, r) for a in self.answers[r.key][:params.n]] for r in requests]


def _continuation(answer: str, request: Request) -> str:
    """The answer without the prompt when it already starts with it. A samples file written by
    ``ap2o-build sample`` in completion mode stores whole programs (prompt + continuation); handing
    those back unchanged would make ``to_program`` repeat the prompt. This makes our own samples
    files round-trip through this backend (the embedded default is built that way)."""
    if request.text and answer.startswith(request.text):
        return answer[len(request.text):]
    return answer


def _group(table, path: str) -> tuple[dict[str, list[str]], dict[str, list[dict[str, Any]]]]:
    """Answers per problem in order, and beside each the generation columns its row records."""
    ids = table.column("problem_id").to_pylist()
    texts = table.column("completion").to_pylist()
    if "response" in table.column_names:  # a samples file: the model's reply, not the program that ran
        texts = [r if r is not None else c for r, c in zip(table.column("response").to_pylist(), texts)]
    order = table.column("sample_index").to_pylist() if "sample_index" in table.column_names else [0] * len(ids)
    columns = {c: table.column(c).to_pylist() for c in RECORDED if c in table.column_names}
    rows: dict[str, list[tuple[int, int, str]]] = {}
    for i, (pid, text, idx) in enumerate(zip(ids, texts, order)):
        if pid is None:
            raise UserError(f"{path}: row {i + 1}: 'problem_id' is null")
        if not isinstance(text, str):
            raise UserError(f"{path}: row {i + 1}: 'completion' is {type(text).__name__}, expected text")
        rows.setdefault(str(pid), []).append((idx if idx is not None else 0, i, text))
    answers = {pid: [t for *_, t in sorted(v)] for pid, v in rows.items()}
    recorded = {pid: [{c: values[i] for c, values in columns.items() if values[i] is not None}
                      for _, i, _ in sorted(v)] for pid, v in rows.items()}
    return answers, recorded


def recorded_values(table: pa.Table) -> dict[str, list[Any]]:
    """Each generation column the recording has: its distinct non-null values, in first-seen order."""
    out = {}
    for c in RECORDED:
        if c in table.column_names:
            values = list(dict.fromkeys(v for v in table.column(c).to_pylist() if v is not None))
            if values:
                out[c] = values
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _show(values: list[Any]) -> str:
    return " and ".join(repr(v) if isinstance(v, str) else str(v) for v in values[:3]) + (
        f" (and {len(values) - 3} more)" if len(values) > 3 else "")


def contradictions(stated: Mapping[str, Any], recorded: Mapping[str, list[Any]]) -> list[str]:
    """One line per stated setting that the recording contradicts, naming both values."""
    out = []
    for name, value in stated.items():
        have = recorded.get(name)
        if name not in SETTINGS or not have or value is None:
            continue
        if not all(_same(value, v) for v in have):
            flag = "--" + name.replace("_", "-")
            out.append(f"{flag} {value!r} contradicts the recording: its answers were sampled with {name} {_show(have)} "
                       f"(drop {flag}; imported rows keep what was recorded)")
    return out


def reconcile(cfg: Any, explicit: Iterable[str], where: str | None = None) -> Any:
    """``cfg`` (a ``SampleConfig`` with the file backend) made to agree with its recording: a
    setting in ``explicit`` (what the user stated) that the recording contradicts is a
    ``UserError`` naming both values; one left at its default takes the recording's value when
    the recording has a single one. Reads the recording once; returns a new config."""
    path = resolve_path(cfg.completions)
    if not os.path.isfile(path):
        return cfg  # nothing recorded to agree with; opening it for the answers names what is wrong
    try:
        table = read_rows(path, required=REQUIRED)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise UserError(f"{path}: inconsistent column types ({e})") from None
    recorded = recorded_values(table)
    explicit = set(explicit)
    stated = {k: getattr(cfg, k) for k in SETTINGS if k in explicit}
    conflict = contradictions(stated, recorded)
    if conflict:
        raise UserError(f"{where or path}: {conflict[0]}")
    adopted = {k: v[0] for k, v in recorded.items()
               if k in SETTINGS and k not in explicit and len(v) == 1 and not _same(getattr(cfg, k), v[0])}
    return dataclasses.replace(cfg, **adopted) if adopted else cfg


def _single(table, column: str) -> str | None:
    if column not in table.column_names:
        return None
    values = {v for v in table.column(column).to_pylist() if v is not None}
    return values.pop() if len(values) == 1 else None
