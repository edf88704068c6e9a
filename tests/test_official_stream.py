"""The pair stream against the official code, position by position: ``tests/official_oracle.py``
transcribes TsingZ0/AP2O's ``merge.py``, ``dpo_dyn_format`` and the Trainer/accelerate batching it
runs under; these tests feed it and ``trainer.schedule`` the same answers and the same quiz counts
and compare the kept problems, their ordered answers, the steps, and at every position of every
epoch the fractional epoch, the window, the replay counts and the rejected answer's distribution.
L2H and H2L, with and without replay, T = 2 and 200, one process and two. Pure Python: the
answers are generated here (no build, no model, no torch except where accelerate is the subject).
"""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from official_oracle import error_counts, merge, official_run, rejected_pool
from tiny_dataset import samples_table

from trainer import schedule as S
from trainer.data import problems_from_samples

PROMPT = "def f(x):\n"
TYPES = ["WrongResult", "NameError", "SyntaxError", "TypeError", "IndexError", "IndentationError"]


def synthetic_rows(problems: int = 30, answers: int = 16, seed: int = 0, numeric_ids: bool = False) -> list[dict]:
    """Graded answers with what the official order has to get right: exact duplicates (some
    failed before their passed copy), answers that differ only in trailing whitespace, the same
    text in two problems, error types of equal frequency in one problem, problems with one passed
    answer or one distinct failure (filtered out)."""
    rng = random.Random(seed)
    rows = []
    for k in range(problems):
        pid = str(7 + 9 * k) if numeric_ids else f"p{k:02d}"
        texts = [f"    return x + {k}  # ok {i}\n" for i in range(rng.randint(0, 3))]
        types = rng.sample(TYPES, rng.randint(1, 4))
        bad = [(f"    return {rng.choice('xyz')} * {i}  # {k}\n", rng.choice(types)) for i in range(rng.randint(1, 9))]
        for _ in range(answers):
            roll = rng.random()
            if texts and roll < 0.4:
                rows.append((pid, rng.choice(texts), None))
            elif roll < 0.47:
                rows.append((pid, "    pass\n", "WrongResult"))  # the same failed text in many problems
            elif roll < 0.52 and texts:
                rows.append((pid, rng.choice(texts) + "  ", None))  # trailing whitespace: another text
            else:
                rows.append((pid, *rng.choice(bad)))
    return [{"problem_id": pid, "split": "train", "kind": "function", "prompt": PROMPT, "test": "", "entry_point": "f",
             "completion": PROMPT + text, "sample_index": i, "prompt_format": "completion", "passed": error is None,
             "status": "passed" if error is None else "failed", "error_type": error}
            for i, (pid, text, error) in enumerate(rows)]


def oracle_rows(rows: list[dict], numeric_ids: bool = False) -> list[dict]:
    """The same answers as the official runs file holds them: the continuation, '' for a pass."""
    return [{"task_id": int(r["problem_id"]) if numeric_ids else r["problem_id"],
             "answer": r["completion"][len(PROMPT):], "error_type": r["error_type"] or ""} for r in rows]


def ours(rows: list[dict], **kw) -> list[S.Problem]:
    problems, _ = problems_from_samples(samples_table(rows), S.ScheduleConfig(**kw))
    return problems


# --- merge.py: kept problems and ordered answers -------------------------------------------------------

@pytest.mark.parametrize("seed,numeric_ids", [(0, False), (1, False), (2, True), (3, True)])
def test_kept_problems_and_their_ordered_answers_are_merge_pys(seed, numeric_ids):
    rows = synthetic_rows(seed=seed, numeric_ids=numeric_ids)
    official = {str(p.task_id): p for p in merge(oracle_rows(rows, numeric_ids))}
    mine = {p.problem_id: p for p in ours(rows)}
    assert set(mine) == set(official) and len(mine) >= 8
    for pid, prob in mine.items():
        answers = official[pid].answers
        assert list(prob.passed) == [a.text for a in answers if a.error_type == ""], pid  # shortest first
        assert list(prob.failed) == [a.text for a in answers if a.error_type != ""], pid  # rarest first, ties in order
        assert list(prob.failed_types) == [a.error_type for a in answers if a.error_type != ""], pid


def test_the_synthetic_answers_exercise_every_rule():
    rows = synthetic_rows(seed=0)
    kept = {p.problem_id: p for p in ours(rows)}
    # equal-frequency types interleave in sample order: some kept problem's list is not grouped by type
    assert any(len(set(p.failed_types)) < len([t for i, t in enumerate(p.failed_types) if i == 0 or t != p.failed_types[i - 1]])
               for p in kept.values())
    # the text "    pass\n" fails in several problems and survives only in the first (merge.py L90)
    assert sum("    pass\n" in p.failed for p in kept.values()) <= 1
    assert sum(r["completion"].endswith("    pass\n") for r in rows) > 5
    # the per-problem de-duplication and the trailing-whitespace one are options, and change the data
    loose = {p.problem_id: p for p in ours(rows, dedup_per_problem=True, dedup_ignore_trailing_whitespace=True)}
    assert loose != kept


# --- the stream: positions, steps, windows, replay ---------------------------------------------------

QUIZZES = [{"WrongResult": 3, "NameError": 1}, {"SyntaxError": 2, "WrongResult": 2, "TypeError": 5}, {},
           {"IndexError": 1}]


def quiz_of(epoch: int) -> dict[str, int]:
    """The quiz counts left by the evaluation at the end of ``epoch`` (fixed, so both sides get the same)."""
    return QUIZZES[epoch % len(QUIZZES)]


def compare(method: str, replay: bool, epochs: int, per_device: int, processes: int, seed: int = 0):
    """Walk both streams; return, where the official H2L slice wraps, its window and whether its
    pool is empty."""
    rows = synthetic_rows(seed=seed)
    problems = ours(rows)
    sched = S.Schedule(problems, S.ScheduleConfig(method=method, replay=replay), epochs,
                       S.Batching(per_device, processes))
    merged = merge(oracle_rows(rows))
    index = {str(p.task_id): i for i, p in enumerate(merged)}
    task = {(S.AP2O_L2H, True): "pvf_iter_priority", (S.AP2O_H2L, True): "pvf_iter_reverse_priority",
            (S.AP2O_L2H, False): "pvf_iter", (S.AP2O_H2L, False): "pvf_iter_reverse"}[method, replay]
    permutations = [[index[problems[k].problem_id] for k in sched._epoch_order(e)] for e in range(epochs)]
    quizzes = [{"error_counts": error_counts(quiz_of(e), passed=3)} for e in range(epochs)]
    run = official_run(len(merged), per_device, processes, epochs, permutations, quizzes)

    assert sched.steps_per_epoch == len(run[0]) and len(sched) == sum(
        len(batch) for epoch in run for step in epoch for batch in step)
    wrapped = []
    length, round_ = sched.epoch_length, per_device * processes
    for position in range(len(sched)):
        epoch, i = divmod(position, length)
        if i == 0 and epoch > 0:  # the quiz at the end of the previous epoch, as QuizCallback pushes it
            sched.set_quiz(quiz_of(epoch - 1))
        step, rank, place = i // round_, (i % round_) // per_device, i % per_device
        drawn = run[epoch][step][rank][place]
        _, item, fraction = sched.slot(position)
        where = (position, epoch, step, rank, place)
        assert problems[item].problem_id == str(merged[drawn.problem].task_id), where
        assert fraction == drawn.epoch, where  # the same float, computed the official way
        official = rejected_pool(merged[drawn.problem], task, drawn.epoch, epochs, drawn.val_metrics)
        lo, hi, extra = sched.pool(item, fraction)
        n = len(problems[item].failed)
        if method == S.AP2O_H2L and math.floor((drawn.epoch + 1) * (n / epochs)) > n:
            wrapped.append((official.window, official.empty))
            w_lo, w_hi = S.window(drawn.epoch, n, epochs)
            assert (lo, hi) == (n - w_hi, n - w_lo), where  # the clamped slice, from the back
            continue
        assert list(range(lo, hi)) == official.window, where
        assert extra == official.added, where
        sched.next_pair()
    return wrapped


@pytest.mark.parametrize("processes,per_device", [(1, 4), (2, 4), (2, 3)])
@pytest.mark.parametrize("method", [S.AP2O_L2H, S.AP2O_H2L])
@pytest.mark.parametrize("replay", [True, False])
@pytest.mark.parametrize("epochs", [2, 200])
def test_every_position_draws_from_the_official_pool(method, replay, epochs, processes, per_device):
    wrapped = compare(method, replay, epochs, per_device, processes)
    if method == S.AP2O_L2H or epochs == 200:
        assert wrapped == []


@pytest.mark.parametrize("replay", [True, False])
def test_where_the_official_h2l_slice_wraps_ours_is_the_clamped_slice(replay):
    """At small T the official H2L slice runs past the list in the last epoch; its start goes
    negative and counts from the end, so the window comes out empty (``compare`` checks ours is the
    clamped slice from the back there). Without replay the official run then stops on
    ``random.choice([])``."""
    wrapped = compare(S.AP2O_H2L, replay, 2, 1, 1)
    assert len(wrapped) >= 5 and all(window == [] for window, _ in wrapped)
    assert all(empty for _, empty in wrapped) == (not replay)


def test_steps_per_epoch_end_short_on_one_process_and_padded_on_two():
    problems = ours(synthetic_rows())
    p = len(problems)
    one = S.Schedule(problems, S.ScheduleConfig(), 2, S.Batching(4, 1))
    two = S.Schedule(problems, S.ScheduleConfig(), 2, S.Batching(4, 2))
    assert p % 4 and p % 8  # a short batch on one process, a padded round on two
    assert one.steps_per_epoch == -(-p // 4) and one.epoch_length == p and len(one) == 2 * p
    assert two.steps_per_epoch == -(-p // 8) and two.epoch_length == 8 * two.steps_per_epoch
    # the padding repeats the epoch's first problems, and every epoch starts a fresh permutation
    first = [two.slot(i)[1] for i in range(two.epoch_length)]
    assert sorted(first[:p]) == list(range(p)) and first[p:] == first[: two.epoch_length - p]
    assert [two.slot(two.epoch_length + i)[1] for i in range(p)] != first[:p]


def test_accelerate_deals_the_stream_to_ranks_as_the_schedule_lays_it_out():
    """The ranks' batches, from accelerate's own ``IterableDatasetShard`` over one epoch of
    positions (what ``prepare_data_loader`` wraps an IterableDataset in), are the official
    ranks' batches: the epoch length is whole rounds, so nothing is padded twice."""
    accelerate = pytest.importorskip("accelerate.data_loader")
    problems = ours(synthetic_rows())
    sched = S.Schedule(problems, S.ScheduleConfig(), 2, S.Batching(3, 2))
    positions = list(range(sched.epoch_length))
    merged_order = [sched.slot(i)[1] for i in positions]
    run = official_run(len(problems), 3, 2, 1, [merged_order[: len(problems)]], [{}])
    for rank in (0, 1):
        shard = accelerate.IterableDatasetShard(positions, batch_size=3, num_processes=2, process_index=rank)
        got = [merged_order[i] for i in shard]
        want = [d.problem for step in run[0] for d in step[rank]]
        assert got == want


def test_the_rejected_and_chosen_answers_are_drawn_as_the_official_pool_says():
    """A many-draws check of ``Schedule``'s sampler against the oracle's exact distribution, at
    positions with replay (deterministic seed, 5-sigma bounds: not load- or luck-dependent)."""
    rows = synthetic_rows()
    problems = ours(rows)
    merged = {str(p.task_id): p for p in merge(oracle_rows(rows))}
    sched = S.Schedule(problems, S.ScheduleConfig(method=S.AP2O_L2H), 200, S.Batching(4, 1))
    sched.set_quiz(quiz_of(1))
    checked = 0
    for p, prob in enumerate(problems):
        fraction = 37 + 1 / 3
        pool = rejected_pool(merged[prob.problem_id], "pvf_iter_priority", fraction, 200,
                             {"error_counts": error_counts(quiz_of(1), passed=2)})
        if not pool.added:
            continue
        draws = 20000
        counts = Counter(sched._draw(p, fraction)[1] for _ in range(draws))
        chosen = Counter(sched._draw(p, fraction)[0] for _ in range(2000))
        for i, want in pool.distribution().items():
            sigma = math.sqrt(float(want) * (1 - float(want)) / draws)
            assert abs(counts[i] / draws - float(want)) <= 5 * sigma + 1e-9, (prob.problem_id, i)
        assert set(counts) == set(pool.distribution())
        assert set(chosen) == set(range(len(prob.passed)))
        checked += 1
    assert checked >= 5
