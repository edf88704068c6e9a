"""Answers that were sampled elsewhere: a JSONL or Parquet file with ``problem_id`` and ``completion``.

This is how answers from any system we do not drive (a hosted API batch job, another
framework's generations, a past run) enter the pipeline: the rest of the build -- grading, the
notebook, pairs -- cannot tell them from answers sampled here. ``completion`` is the model's answer
as it came out: the continuation of the prompt in completion mode, the reply in chat mode (choose
``--prompt-format`` to match; a completion that already starts with the prompt, as in a samples
file from ``ap2o-build sample``, is taken as prompt + continuation). Answers keep the file's order within a problem, or ``sample_index``
order when the file has that column.
"""

from __future__ import annotations

import os
import sys

import pyarrow as pa

from builder.errors import UserError
from builder.io import read_rows
from builder.sampling.base import Backend, Request, SamplingParams

REQUIRED = ("problem_id", "completion")


# Generation columns a recorded file keeps when all of its rows agree: answers recorded from an
# OpenAI server at temperature 1.0 stay recorded so, whatever the importing command's defaults.
PROVENANCE = ("backend", "temperature", "top_p", "max_new_tokens", "seed")


class FileBackend(Backend):
    """Serve each request the file's answers for its problem id, at most ``params.n`` of them."""

    name = "file"

    def __init__(self, path: str | os.PathLike, *, model: str | None = None, model_revision: str | None = None) -> None:
        self.path = os.fspath(path)
        try:
            table = read_rows(self.path, required=REQUIRED)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:  # e.g. a column mixing text and numbers
            raise UserError(f"{self.path}: inconsistent column types ({e})") from None
        self.answers = _group(table, self.path)
        # the file may say which model wrote it; an explicit argument wins
        self.model = model or _single(table, "model")
        self.model_revision = model_revision or _single(table, "model_revision")
        self.provenance = {c: v for c in PROVENANCE if (v := _single(table, c)) is not None}

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


def _group(table, path: str) -> dict[str, list[str]]:
    ids = table.column("problem_id").to_pylist()
    texts = table.column("completion").to_pylist()
    order = table.column("sample_index").to_pylist() if "sample_index" in table.column_names else [0] * len(ids)
    rows: dict[str, list[tuple[int, int, str]]] = {}
    for i, (pid, text, idx) in enumerate(zip(ids, texts, order)):
        if pid is None:
            raise UserError(f"{path}: row {i + 1}: 'problem_id' is null")
        if not isinstance(text, str):
            raise UserError(f"{path}: row {i + 1}: 'completion' is {type(text).__name__}, expected text")
        rows.setdefault(str(pid), []).append((idx if idx is not None else 0, i, text))
    return {pid: [t for *_, t in sorted(v)] for pid, v in rows.items()}


def _single(table, column: str) -> str | None:
    if column not in table.column_names:
        return None
    values = {v for v in table.column(column).to_pylist() if v is not None}
    return values.pop() if len(values) == 1 else None
