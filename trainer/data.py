"""What the trainer reads from a builder dataset: the dataset is the contract.

The answers come from the ``samples`` config through ``builder.dataset.pairs.kept_answers`` -- the same
de-duplicate-and-filter step that made the published ``pairs`` config -- and the error order from
the ``notebook`` config's counts. A dataset made by another tool in ``schemas`` layout, in a local
folder or on the Hub, trains the same way; one without a ``notebook`` gets it counted by
``builder.dataset.notebook`` (the function that writes the config).

Splits, so that the embedded default trains with no split flags:

- training: ``train`` when the dataset has it; otherwise its only split (or ``test``) with a
  one-line contamination warning;
- quiz: ``validation`` problems when there are any (only the problems the filter keeps, as the
  official code quizzes, when the validation answers are in ``samples``); otherwise a seeded,
  printed share of the training problems is held out of training for the quiz.
"""

from __future__ import annotations

import os
import pathlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from builder import count_errors, kept_answers, looks_local, to_text
from builder.errors import UserError
from trainer.config import DataArguments
from trainer.schedule import PROBLEM, Problem, ScheduleConfig, build_problems

# datasets is imported where the dataset is loaded: ap2o-train's preflight checks the folder first,
# before seconds of imports.

# columns of schemas.SAMPLES the trainer needs (and label: passed in version 1), and those it uses
# when present (program and response: how builder.dataset.pairs tells the layouts apart and reads version 1)
NEEDED = ("problem_id", "prompt", "completion", "error_type")
VERDICTS = ("label", "passed")
OPTIONAL = ("prompt_format", "kind", "sample_index", "test", "entry_point", "inputs", "outputs", "split",
            "program", "response")
# reference_cpu_s: a quiz answer gets the per-problem time limit its build's answers got
QUIZ_COLUMNS = ("problem_id", "kind", "prompt", "test", "entry_point", "inputs", "outputs", "reference_cpu_s")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class TrainingData:
    """Everything ``ap2o-train`` takes from the dataset."""

    problems: list[Problem]
    quiz_problems: list[dict[str, Any]]
    prompt_format: str
    train_split: str
    notes: list[str] = field(default_factory=list)
    published_pairs: int | None = None  # rows of the dataset's own ``pairs`` config, when it has one
    # the quiz problems with their kept answers, where the dataset has them (validation samples or
    # held-out training problems): the official SFT baseline's eval_loss is computed on their passed answers
    validation: list[Problem] = field(default_factory=list)


def dataset_location(path: str | None) -> str:
    """The folder (``~`` expanded) or Hub id that ``path`` names; a ``UserError`` line for neither. Light
    (no ``datasets`` import): ``ap2o-train`` checks it before loading anything."""
    if not path:
        raise UserError("--dataset-name (or --dataset) is required (a folder written by ap2o-build, or a Hub dataset id)")
    if looks_local(path) or "/" not in path:  # a dataset's Hub id has an owner: a bare name is a folder
        if not pathlib.Path(os.path.expanduser(path)).is_dir():
            raise UserError(f"{path}: dataset not found (no such folder)")
        return os.path.expanduser(path)
    if not _HUB_ID.match(path):
        raise UserError(f"{path}: not a dataset folder nor a Hub id (owner/name)")
    return path


class Dataset:
    """One builder dataset, local or on the Hub: its configs and splits, read lazily."""

    def __init__(self, path: str, revision: str | None = None) -> None:
        path = dataset_location(path)
        self.path, self.revision = path, revision
        self._splits: dict[str, list[str]] = {}
        self.configs = self._call("configs", lambda ds: ds.get_dataset_config_names(path, revision=revision))

    def splits(self, config: str) -> list[str]:
        """The config's splits, looked up once (each lookup reads the card or asks the Hub)."""
        if config not in self.configs:
            return []
        if config not in self._splits:
            self._splits[config] = self._call(
                config, lambda ds: ds.get_dataset_split_names(self.path, config, revision=self.revision))
        return self._splits[config]

    def table(self, config: str, split: str) -> pa.Table:
        from datasets import load_dataset

        return self._call(f"{config}/{split}", lambda ds: load_dataset(
            self.path, config, split=split, revision=self.revision).data.table)

    def _call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        import datasets

        try:
            return fn(datasets)
        except (FileNotFoundError, ValueError) as e:  # unknown config/split, missing files
            raise UserError(f"{self.path}: cannot read {what}: {str(e).splitlines()[0]}") from None
        except (ConnectionError, OSError) as e:
            raise UserError(f"{self.path}: cannot reach the dataset ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None


def load_training_data(data: DataArguments | str, config: ScheduleConfig, **settings: Any) -> TrainingData:
    """Read a builder dataset into kept problems (ordered by the notebook), quiz problems and the
    prompt format the exam used. ``data``: where the dataset is and which parts of it to read
    (``trainer.config.DataArguments``); a path with ``DataArguments``' fields as keywords is the
    same (``load_training_data(path, config, validation_split="none")``)."""
    if not isinstance(data, DataArguments):
        data = DataArguments(dataset_name=os.fspath(data), **settings)
    path, samples_config, notebook_config = data.dataset_name, data.samples_config, data.notebook_config
    ds = Dataset(path, data.dataset_revision)
    notes: list[str] = []
    sample_splits = ds.splits(samples_config)
    if not sample_splits:
        if plain_pairs(ds):
            raise UserError(
                f"{path}: plain preference pairs (prompt, chosen, rejected), no {samples_config!r} config: ap2o-train "
                "orders pairs by each failed answer's error type and quizzes problems with tests, which such pairs "
                f"lack. Train them as they are with TRL's `trl dpo --dataset_name {path} --model_name_or_path MODEL`; "
                "for AP2O, grade the answers with `ap2o-build grade` and build the dataset with `ap2o-build notebook` "
                "(docs/build.md)")
        raise UserError(f"{path}: no {samples_config!r} config (have: {', '.join(ds.configs) or 'none'})")
    train_split = data.train_split or _training_split(sample_splits, notes)
    if train_split not in sample_splits:
        raise UserError(f"{path}: config {samples_config!r} has no split {train_split!r} (have: {', '.join(sample_splits)})")

    samples = _samples(ds.table(samples_config, train_split), f"{path} [{samples_config}/{train_split}]")
    notebook = None
    if train_split in ds.splits(notebook_config):
        notebook = ds.table(notebook_config, train_split)
    else:
        notes.append(f"no {notebook_config!r} config for {train_split!r}: error frequencies counted from the samples")
    problems, fmt = problems_from_samples(samples, config, notebook, where=f"{path} [{train_split}]")

    quiz, problems, validation = _quiz_problems(ds, problems, samples, train_split, data.validation_split,
                                                data.holdout_fraction, data.problems_config, samples_config, config,
                                                notes)
    published = None
    if train_split in ds.splits(PAIRS_CONFIG):
        published = ds.table(PAIRS_CONFIG, train_split).num_rows
    return TrainingData(problems, quiz, fmt, train_split, notes, published, validation)


PAIR_COLUMNS = ("prompt", "chosen", "rejected")
PAIRS_CONFIG = "pairs"  # the builder's pairs: only counted, to say how many the dataset publishes


def plain_pairs(ds: Dataset) -> bool:
    """Whether ``ds`` is another tool's preference dataset: a config whose first row has TRL's
    ``prompt``/``chosen``/``rejected`` (read streaming: one row, whatever the dataset's size)."""
    from datasets import load_dataset

    for config in ds.configs[:5]:
        for split in ds.splits(config)[:1]:
            try:
                row = next(iter(load_dataset(ds.path, config, split=split, streaming=True, revision=ds.revision)))
            except Exception:  # noqa: BLE001, S112 - an unreadable config says nothing either way
                continue
            if all(c in row for c in PAIR_COLUMNS):
                return True
    return False


def _training_split(splits: list[str], notes: list[str]) -> str:
    if "train" in splits:
        return "train"
    split = "test" if "test" in splits else splits[0]
    if len(splits) > 1 and split != "test":
        raise UserError(f"no 'train' split (have: {', '.join(splits)}); choose one with --train-split")
    notes.append(f"warning: training on the {split!r} split (the dataset has no 'train'): "
                 f"evaluating on these problems afterwards would be contaminated")
    return split


def _samples(table: pa.Table, where: str) -> pa.Table:
    """The columns the trainer reads, in the text layout whatever the version: a chat-format
    dataset of schema version 3 holds prompt/completion as TRL's message lists, which
    ``builder.dataset.conversational.to_text`` turns back into the strings of version 2, so the
    schedule sees one shape (its chat prompt rebuilt by ``kept_answers`` as ``prompt_messages``)."""
    missing = [c for c in NEEDED if c not in table.column_names]
    if not set(VERDICTS) & set(table.column_names):
        missing.append("label")
    if missing:
        raise UserError(f"{where}: missing column {missing[0]!r}")
    return to_text(table.select([c for c in (*NEEDED, *VERDICTS, *OPTIONAL) if c in table.column_names]), where)


def problems_from_samples(samples: pa.Table, config: ScheduleConfig, notebook: pa.Table | None = None, *,
                          where: str = "samples") -> tuple[list[Problem], str]:
    """Kept problems of one split's ``samples`` (``builder.dataset.pairs.kept_answers``), failed answers
    ordered by ``notebook``'s counts (``schemas.NOTEBOOK``; counted by ``builder.dataset.notebook`` when
    None), and the prompt format they were sampled in."""
    samples = _samples(samples, where)
    answers = kept_answers(samples, config.pairs_config())
    if answers.height == 0:
        raise UserError(f"{where}: no problem has >= {config.min_passed} passed and >= "
                        f"{config.min_failed} distinct failed answers: nothing to train on")
    formats = sorted(set(answers["prompt_format"].unique().to_list()))
    if len(formats) > 1:
        raise UserError(f"{where}: answers mix prompt formats {formats}; train on one")
    problems = build_problems(answers.to_dicts(), notebook_counts(notebook, samples, config.scope, where), config.scope)
    return problems, formats[0]


def notebook_counts(notebook: pa.Table | None, samples: pa.Table, scope: str,
                    where: str = "notebook") -> dict[tuple[str | None, str], int]:
    """``(problem_id or None, error_type) -> count`` of one scope: failed answers of that type,
    before de-duplication. The counts, not the ranks: the ranks break ties by name, while the
    official order keeps sample order on ties (``trainer.schedule.build_problems``)."""
    if notebook is None:
        plain = samples.drop_columns([c for c in ("split",) if c in samples.column_names])
        notebook = count_errors(plain).table("train")  # no split column: counted as one split
    missing = [c for c in ("scope", "problem_id", "error_type", "count") if c not in notebook.column_names]
    if missing:
        raise UserError(f"{where}: notebook lacks column {missing[0]!r}")
    return {(r["problem_id"] if scope == PROBLEM else None, r["error_type"]): int(r["count"])
            for r in notebook.select(["scope", "problem_id", "error_type", "count"]).to_pylist() if r["scope"] == scope}


def _quiz_problems(ds: Dataset, problems: list[Problem], samples: pa.Table, train_split: str,
                   validation_split: str | None, holdout_fraction: float, problems_config: str,
                   samples_config: str, config: ScheduleConfig,
                   notes: list[str]) -> tuple[list[dict], list[Problem], list[Problem]]:
    """The quiz's problem rows, the training problems that remain, and the quiz problems with
    their kept answers where the dataset has them."""
    split = validation_split
    if split is None and "validation" in ds.splits(problems_config):
        split = "validation"
    if split is not None and split.lower() in ("none", "off", ""):
        notes.append("no quiz (validation split turned off)")
        return [], problems, []
    if split is not None:
        if split not in ds.splits(problems_config):
            raise UserError(f"{ds.path}: config {problems_config!r} has no split {split!r} "
                            f"(have: {', '.join(ds.splits(problems_config)) or 'none'})")
        rows = ds.table(problems_config, split).to_pylist()
        validation: list[Problem] = []
        if split in ds.splits(samples_config):  # official: quiz the problems the filter keeps
            answers = _samples(ds.table(samples_config, split), split)
            kept = kept_answers(answers, config.pairs_config())
            if kept.height:
                validation = build_problems(kept.to_dicts(), notebook_counts(None, answers, config.scope), config.scope)
                ids = {p.problem_id for p in validation}
                rows = [r for r in rows if r["problem_id"] in ids]
        notes.append(f"quiz: {len(rows)} problems of {split!r}")
        return [_quiz_row(r) for r in rows], problems, validation
    if not 0 < holdout_fraction < 1 or len(problems) < 2:
        notes.append("no quiz: no validation split and nothing to hold out")
        return [], problems, []
    held = max(1, round(holdout_fraction * len(problems)))
    chosen = set(random.Random(config.schedule_seed).sample(range(len(problems)), held))
    ids = {problems[i].problem_id for i in chosen}
    by_id = {}
    for r in _statements(ds, samples, train_split, problems_config):
        by_id.setdefault(str(r["problem_id"]), r)
    notes.append(f"quiz: no validation split; held out {held} of {len(problems)} training problems "
                 f"(holdout_fraction={holdout_fraction}, seed {config.schedule_seed}): {', '.join(sorted(ids))}")
    held_out = [problems[i] for i in sorted(chosen)]
    return ([_quiz_row(by_id[i]) for i in sorted(ids)], [p for i, p in enumerate(problems) if i not in chosen],
            held_out)


def _statements(ds: Dataset, samples: pa.Table, split: str, problems_config: str) -> list[dict[str, Any]]:
    """The training problems as problem rows (their statement in ``prompt``): the ``problems``
    config's, else the samples' problem columns -- whose ``prompt`` is the problem's statement in
    version 1 and in completion format, but what the model was asked otherwise."""
    if split in ds.splits(problems_config):
        table = ds.table(problems_config, split)
    else:
        asked = [fmt for fmt, program in zip(
            samples.column("prompt_format").to_pylist() if "prompt_format" in samples.column_names else [],
            samples.column("program").to_pylist() if "program" in samples.column_names else [])
            if program is not None and fmt not in (None, "completion")]
        if asked:
            raise UserError(f"{ds.path}: no {problems_config!r} config for {split!r}, and the samples ({asked[0]} "
                            "format) hold the prompt the model was asked, not the problem: the quiz cannot hold "
                            "problems out; give a validation split")
        table = samples
    return table.select([c for c in QUIZ_COLUMNS if c in table.column_names]).to_pylist()


def _quiz_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in QUIZ_COLUMNS}
