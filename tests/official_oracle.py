"""The official AP2O pair stream, transcribed for the tests from the official code, independently
of ``trainer/schedule.py``: what the official run feeds ``DPOTrainer`` at each step, rank and
place in the batch. Test-only; nothing in the package imports it.

Sources (each rule below names its file and lines):

- TsingZ0/AP2O at commit bf1fac9: ``merge.py``, ``utils/collator.py``, ``utils/trainer.py``,
  ``utils/define.py``, ``train.py`` (``dpo_dyn`` runs: ``pipe-qwen2.5-coder.sh`` L7-9);
- transformers 4.51.3 ``trainer.py`` and accelerate 1.6.0 ``data_loader.py``, the versions of the
  official README's requirements (transformers 4.51.3) and of their release month (accelerate), for
  how the Trainer cuts epochs into batches, deals them to ranks and advances ``state.epoch``.

Where the transcription simplifies, it says so. Pure Python: no torch, no numpy (numpy's 1-D
slicing, ``floor`` and ``ceil`` are Python's on these values; the random draws are represented by
the exact distribution they draw from, as fractions).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

PASS_SCALAR = 0.0  # utils/define.py L64


# --- merge.py: which problems, which answers, in which order ------------------------------------------

@dataclass
class Answer:
    text: str
    error_frequency: float
    error_type: str  # '' for a passed answer (the runs files' convention, merge.py L59)
    answer_length: int


@dataclass
class MergedProblem:
    task_id: Any
    answers: list[Answer]  # merged.json's ``answers`` list, in merge.py's order (L115-119)


def merge(rows: Sequence[Mapping[str, Any]]) -> list[MergedProblem]:
    """``merge.py`` L29-119 on one split. ``rows``: the runs file's records in their order, each a
    mapping with ``task_id``, ``answer`` and ``error_type`` ('' when the answer passed).

    Simplification: L49-50 group rows by (task_id, answer_id, prompt, answer, output, error_type)
    to average timings over repeated runs of the same answer; with one runs file each answer is its
    own group, so the rows pass through in order."""
    rows = list(rows)
    # L41: per task, each error type's share of the task's answers (passed ones included, as '')
    per_task = Counter(r["task_id"] for r in rows)
    per_type = Counter((r["task_id"], r["error_type"]) for r in rows)
    frequency = {key: count / per_task[key[0]] for key, count in per_type.items()}
    # L57-61, L70: a passed answer scores PASS_SCALAR, a failed one its type's frequency
    scored = [dict(r, error_frequency=PASS_SCALAR if r["error_type"] == "" else frequency[(r["task_id"], r["error_type"])])
              for r in rows]
    # L78-83: a passed answer's length; every failed answer the same value past the longest
    over_large = max(len(r["answer"]) for r in scored) + 10000
    for r in scored:
        r["answer_length"] = len(r["answer"]) if r["error_type"] == "" else over_large
    # L85-89: sort_values on three columns; pandas sorts several columns with a stable lexsort,
    # so equal keys keep their order
    scored.sort(key=lambda r: (r["task_id"], r["error_frequency"], r["answer_length"]))
    # L90: drop_duplicates(subset=['answer']): the first row of each exact text, over all tasks
    seen: set[str] = set()
    kept = []
    for r in scored:
        if r["answer"] not in seen:
            seen.add(r["answer"])
            kept.append(r)
    # L93-96: >= 1 passed and >= 2 failed; L97-100: >= 2 passed (length != over_large) and >= 1 failed
    by_task: dict[Any, list[dict]] = {}
    for r in kept:
        by_task.setdefault(r["task_id"], []).append(r)
    out = []
    for task_id, answers in by_task.items():  # L119: groupby(sort=False) keeps the sorted order
        passed = sum(a["error_frequency"] == PASS_SCALAR for a in answers)
        failed = len(answers) - passed
        if not (passed >= 1 and failed >= 2):
            continue
        if not (sum(a["answer_length"] != over_large for a in answers) >= 2
                and sum(a["answer_length"] == over_large for a in answers) >= 1):
            continue
        out.append(MergedProblem(task_id, [Answer(a["answer"], a["error_frequency"], a["error_type"], a["answer_length"])
                                           for a in answers]))
    return out


# --- utils/collator.py: the rejected answer at a fractional epoch --------------------------------------

@dataclass
class Pool:
    """What ``dpo_dyn_format`` draws the rejected answer from: indices into the problem's failed
    answers (the window) and, per quizzed type, how many replayed copies it adds."""

    window: list[int]
    added: dict[str, int]
    failed_types: list[str]

    @property
    def empty(self) -> bool:
        """L287's ``random.choice`` of an empty sequence: the official run stops with an IndexError."""
        return not self.window and not self.added

    def distribution(self) -> dict[int, Fraction]:
        """P(failed answer i is the rejected one): L287 ``random.choice`` over the window plus the
        added indices, each added index an independent uniform draw among its type's answers
        (L278-279, ``np.random.choice(..., replace=True)``)."""
        size = len(self.window) + sum(self.added.values())
        probs: dict[int, Fraction] = {}
        for i in self.window:
            probs[i] = probs.get(i, Fraction(0)) + Fraction(1, size)
        for error_type, count in self.added.items():
            of_type = [i for i, t in enumerate(self.failed_types) if t == error_type]
            for i in of_type:
                probs[i] = probs.get(i, Fraction(0)) + Fraction(count, size * len(of_type))
        return probs


# dpo_dyn_format's tasks: AP2O L2H and H2L (pipe-qwen2.5-coder.sh L8-9) and their no-replay
# ablations, the same slices without L243-285
TASKS = {"pvf_iter_priority": (False, True), "pvf_iter_reverse_priority": (True, True),
         "pvf_iter": (False, False), "pvf_iter_reverse": (True, False)}  # task -> (reverse, replay)


def rejected_pool(problem: MergedProblem, task: str, current_epoch: float, total_epochs: int,
                  val_metrics: Mapping[str, Any]) -> Pool:
    """``dpo_dyn_format`` (L147-166) for ``task`` 'pvf_iter_priority' (L227-287, L2H),
    'pvf_iter_reverse_priority' (L308-370, H2L), 'pvf_iter' (L173-188) or 'pvf_iter_reverse'
    (L289-306), without the draw: the indices are positions in the problem's failed answers
    (``np.flatnonzero(~mask)``, L163 and L231)."""
    reverse, replay = TASKS[task]
    types = [a.error_type for a in problem.answers]
    failed_types = [t for a, t in zip(problem.answers, types) if a.error_frequency != PASS_SCALAR]
    rejected_inds = list(range(len(failed_types)))  # L231: the failed answers, in merged order
    total_elements = len(rejected_inds)               # L233
    elements_per_epoch = total_elements / total_epochs  # L234
    start_idx = math.floor(current_epoch * elements_per_epoch)  # L235: int(np.floor(...))
    end_idx = math.floor((current_epoch + 1) * elements_per_epoch)  # L236
    if end_idx == start_idx:  # L238-239
        end_idx = min(start_idx + 1, total_elements)
    if not reverse:
        window = rejected_inds[start_idx:end_idx]  # L241 (L187)
    else:  # L321-324 (L302-305): a negative start counts from the end, as numpy's does
        window = rejected_inds[total_elements - end_idx:total_elements - start_idx]
    added: dict[str, int] = {}
    if replay and "error_counts" in val_metrics:  # L243 (L326)
        current_rejected_len = len(window)  # L244
        all_error_cnts = [c for t, c in val_metrics["error_counts"].items() if t != ""]  # L252-255
        if all_error_cnts:  # L257-258: otherwise "Replay is not activated"
            least_error_cnt = min(all_error_cnts)  # L260
            val_total_errors = sum(all_error_cnts)  # L261
            least_error_cnts = {t: math.ceil(c / least_error_cnt)
                                for t, c in val_metrics["error_counts"].items() if t != ""}  # L263-266
            for error_type, error_cnt in val_metrics["error_counts"].items():  # L268-279
                if error_type != "" and error_type in failed_types:
                    error_ratio = error_cnt / val_total_errors
                    added_rejected_cnt = int(current_rejected_len * error_ratio)
                    added[error_type] = max(least_error_cnts[error_type], added_rejected_cnt)
    return Pool(window, added, failed_types)


def error_counts(quiz: Mapping[str, int], passed: int) -> dict[str, int]:
    """``run_code_unit_test``'s ``error_counts`` (``utils/trainer.py`` L137-142): every quiz
    answer's type counted, '' for a passed one, most frequent first."""
    counts = Counter({"": passed, **quiz}) if passed else Counter(quiz)
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


# --- the Trainer: epochs, batches, ranks and state.epoch ---------------------------------------------

def batch_sampler(permutation: Sequence[int], batch_size: int) -> list[list[int]]:
    """torch's ``BatchSampler`` over the ``RandomSampler`` (transformers 4.51.3 ``trainer.py``
    L971-996, L1031) with ``dataloader_drop_last=False`` (``train.py`` L112): consecutive batches,
    the last one short."""
    return [list(permutation[i:i + batch_size]) for i in range(0, len(permutation), batch_size)]


def batch_sampler_shard(batches: list[list[int]], batch_size: int, num_processes: int,
                        process_index: int) -> list[list[int]]:
    """accelerate 1.6.0 ``BatchSamplerShard._iter_with_no_split`` (``data_loader.py`` L217-263),
    ``even_batches=True`` and ``drop_last=False`` (the defaults ``prepare_data_loader`` passes,
    L1212-1218): batch ``i`` goes to rank ``i % num_processes``; the last round is completed
    from the first batches, so that every rank gets the same number of full batches."""
    out = []
    initial_data: list[int] = []
    batch_to_yield: list[int] = []
    batch: list[int] = []
    idx = -1
    for idx, batch in enumerate(batches):
        if idx < num_processes:
            initial_data += batch
        if idx % num_processes == process_index:
            batch_to_yield = batch
        if idx % num_processes == num_processes - 1 and len(batch) == batch_size:
            out.append(batch_to_yield)
            batch_to_yield = []
    if len(initial_data) > 0:
        if len(batch_to_yield) == batch_size:
            out.append(batch_to_yield)
        while len(initial_data) < num_processes * batch_size:
            initial_data += initial_data
        if len(batch) == batch_size:
            batch = []
            idx += 1
        cycle_index = 0
        while idx % num_processes != 0 or len(batch) > 0:
            end_index = cycle_index + batch_size - len(batch)
            batch = batch + initial_data[cycle_index:end_index]
            if idx % num_processes == process_index:
                out.append(batch)
            cycle_index = end_index
            batch = []
            idx += 1
    return out


@dataclass
class Drawn:
    """One example as the official collator meets it: the problem, ``trainer.state.epoch`` and the
    quiz metrics at collate time."""

    problem: int
    epoch: float
    val_metrics: dict[str, Any]


def official_run(problems: int, batch_size: int, num_processes: int, epochs: int,
                 permutations: Sequence[Sequence[int]],
                 quizzes: Sequence[Mapping[str, Any]]) -> list[list[list[list[Drawn]]]]:
    """Every collated example of a ``dpo_dyn`` run: ``[epoch][step][rank] -> examples``.

    ``permutations[e]``: the ``RandomSampler``'s order in epoch ``e`` (the same on every rank:
    accelerate synchronizes the sampler's generator, ``data_loader.py`` L1201-1210);
    ``quizzes[e]``: the ``val_metrics`` the evaluation at the end of epoch ``e`` leaves (the
    ``metrics`` of ``MyDPOTrainer.evaluation_loop``, ``utils/trainer.py`` L218-220; ``{}`` before
    the first, L159).

    The loop is transformers 4.51.3 ``_inner_training_loop`` with ``gradient_accumulation_steps=1``
    (``train.py`` L96): ``state.epoch = 0`` (L2425); per epoch ``steps_in_epoch = len(dataloader)``
    (L2483-2487), ``total_updates = steps_in_epoch`` (L2508-2510), each update takes one batch
    (``get_batch_samples``, L5237-5243), trains, and sets ``state.epoch = epoch + (step + 1) /
    steps_in_epoch`` (L2625); the epoch ends with ``on_epoch_end`` and the evaluation
    (L2660-2663, ``eval_strategy='epoch'``, ``train.py`` L93). The batches come from accelerate
    1.6.0 ``DataLoaderShard.__iter__`` (L557-590), which collates the next batch before it yields
    the current one; the base loader (``num_workers=0``) collates at ``next()``."""
    state = {"epoch": 0.0, "val_metrics": {}}
    run = []
    for epoch in range(epochs):
        batches = batch_sampler(permutations[epoch], batch_size)
        if num_processes > 1:
            per_rank = [batch_sampler_shard(batches, batch_size, num_processes, r) for r in range(num_processes)]
        else:
            per_rank = [batches]
        steps_in_epoch = len(per_rank[0])
        iterators = [_data_loader_shard(b, state) for b in per_rank]
        steps = []
        for step in range(steps_in_epoch):
            steps.append([next(it) for it in iterators])  # every rank fetches its batch for this step
            state["epoch"] = epoch + (step + 1) / steps_in_epoch
        run.append(steps)
        state["val_metrics"] = dict(quizzes[epoch]) if epoch < len(quizzes) else state["val_metrics"]
    return run


def _data_loader_shard(batches: list[list[int]], state: dict) -> Iterator[list[Drawn]]:
    def collate(batch: list[int]) -> list[Drawn]:  # MyDPOCollator.torch_call, utils/collator.py L430-441
        return [Drawn(p, state["epoch"], state["val_metrics"]) for p in batch]

    it = iter(batches)
    current = collate(next(it))
    for batch in it:
        following = collate(batch)
        yield current
        current = following
    yield current
