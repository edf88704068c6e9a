"""The schedule: window slices, error-type order, replay, determinism, resume, every baseline,
each checked against the official code's rule (TsingZ0/AP2O ``utils/collator.py``, ``merge.py``).

The data is ``tiny_dataset``'s (shared with the feed's, the callbacks' and the end-to-end tests).
"""

from __future__ import annotations

import json
import math
from collections import Counter

import pyarrow as pa
import pytest
from tiny_dataset import KEPT, TRAIN, make, sample_rows, samples_table

import schemas
from builder.errors import UserError
from builder.grading import taxonomy
from trainer import schedule as S
from trainer.data import problems_from_samples


def texts(sched: S.Schedule, pair: dict) -> tuple[str, str, str]:
    prob = sched.problems[pair["problem"]]
    return prob.problem_id, prob.passed[pair["chosen"]], prob.failed[pair["rejected"]]


def notebook_counts(scope_problem: str | None = None) -> Counter:
    """Failed answers per type *before* de-duplication, as the notebook counts them."""
    return Counter(e for pid, (*_, failed) in TRAIN.items() if scope_problem in (None, pid) for _, e in failed)


# --- filter and order ------------------------------------------------------------------------------

def test_filter_keeps_problems_with_two_passes_and_two_distinct_failures():
    sched = make()
    assert [p.problem_id for p in sched.problems] == KEPT
    add = sched.problems[0]
    assert add.failed.count("    return a - b\n") == 1  # the duplicate answer counts once
    assert len(add.failed) == 5
    rows = [r for r in sample_rows() if r["completion"] != TRAIN["first"][0] + "    return xs[:1][0]\n"]
    assert "first" not in [p.problem_id for p in make(rows=rows).problems]  # one passed answer: dropped
    assert "first" in [p.problem_id for p in make(rows=rows, min_passed=1).problems]


def test_answers_differing_only_in_trailing_whitespace_are_two_unless_asked_as_in_the_pairs_config():
    from builder.dataset.pairs import PairsConfig, make_pairs

    rows = sample_rows()
    rows.append({**rows[3], "completion": rows[3]["completion"] + "   \n", "sample_index": 99})
    assert make(S.DPO, epochs=1, rows=rows).available_pairs == make(S.DPO, epochs=1).available_pairs + 3
    assert make(S.DPO, epochs=1, rows=rows).available_pairs == make_pairs(samples_table(rows)).num_rows
    loose = make(S.DPO, epochs=1, rows=rows, dedup_ignore_trailing_whitespace=True)
    assert loose.available_pairs == make(S.DPO, epochs=1).available_pairs == make_pairs(
        samples_table(rows), PairsConfig(dedup_ignore_trailing_whitespace=True)).num_rows


def test_completion_format_trains_on_the_continuation_only():
    sched = make()
    pair = sched.next_pair()
    ex = sched.example(pair)
    prob = sched.problems[pair["problem"]]
    assert ex["prompt"] == prob.prompt and not ex["chosen"].startswith("def ")


def test_global_scope_orders_failed_answers_by_count_rarest_first():
    counts = notebook_counts()
    for prob in make(scope=S.GLOBAL).problems:
        keys = [counts[e] for e in prob.failed_types]
        assert keys == sorted(keys), prob.problem_id
    assert make(scope=S.GLOBAL).problems[0].failed_types[-2:] == ("WrongResult", "WrongResult")


def test_passed_answers_go_shortest_first_as_merge_py_sorts_them():
    add = make().problems[0]
    assert add.passed == ("    return a + b\n", "    return b + a\n", "    return sum((a, b))\n")
    assert [len(a) for a in make().problems[2].passed] == sorted(len(a) for a in make().problems[2].passed)


def test_within_an_error_type_answers_keep_their_sample_order():
    add = make(scope=S.GLOBAL).problems[0]
    wrong = [a for a, e in zip(add.failed, add.failed_types) if e == "WrongResult"]
    assert wrong == ["    return a - b\n", "    return a * b\n"]  # sample order, not length


def test_problem_scope_counts_before_dedup_as_the_notebook_does():
    # the case: 2 passes, 5 identical NameErrors, 2 TypeErrors; NameError is the more
    # frequent type (5 > 2) although it is one distinct answer, so L2H puts TypeError first
    prompt, test, entry = 'def f(x):\n    """x + 1"""\n', "def check(candidate):\n    assert candidate(1) == 2\n", "f"
    answers = [("    return x + 1\n", None), ("    return 1 + x\n", None)] + [("    return y\n", "NameError")] * 5 + \
              [("    return x + '1'\n", "TypeError"), ("    return '1' + x\n", "TypeError")]
    rows = [{"problem_id": "f", "split": "train", "kind": "function", "prompt": prompt, "test": test,
             "entry_point": entry, "completion": prompt + a, "sample_index": i, "prompt_format": "completion",
             "passed": e is None, "status": taxonomy.status_of(e), "error_type": e} for i, (a, e) in enumerate(answers)]
    (prob,) = make(S.AP2O_L2H, rows=rows, scope=S.PROBLEM).problems
    assert prob.failed_types == ("TypeError", "TypeError", "NameError")
    (prob,) = make(S.AP2O_L2H, rows=rows, scope=S.GLOBAL).problems
    assert prob.failed_types == ("TypeError", "TypeError", "NameError")


def test_types_of_equal_count_keep_sample_order_as_merge_pys_stable_sort():
    # "concat": WrongResult and TypeError tie 1:1 in the problem: sample order (WrongResult was
    # sampled first), not the notebook rank's tie-break by name; globally TypeError is rarer
    glob = {p.problem_id: p for p in make(scope=S.GLOBAL).problems}
    prob = {p.problem_id: p for p in make(scope=S.PROBLEM).problems}
    assert glob["concat"].failed_types == ("TypeError", "WrongResult")
    assert prob["concat"].failed_types == ("WrongResult", "TypeError")


def test_order_follows_a_given_notebook_not_a_recount():
    from builder.dataset.notebook import count_errors

    nb = count_errors(samples_table()).table("train").to_pylist()
    for r in nb:  # a notebook that says the opposite of the samples: its counts win
        if r["scope"] == "global":
            r["count"] = 100 - r["count"]
    problems, _ = problems_from_samples(samples_table(), S.ScheduleConfig(scope=S.GLOBAL),
                                        pa.Table.from_pylist(nb, schema=schemas.NOTEBOOK))
    assert problems[0].failed_types[:2] == ("WrongResult", "WrongResult")


# --- the window -------------------------------------------------------------------------------------

def official_window(epoch, n: int, T: int) -> tuple[int, int]:
    """``pvf_iter_priority``'s slice: numpy's floor of the float products, one answer at least,
    the end clamped as slicing clamps it."""
    start, end = math.floor(epoch * (n / T)), math.floor((epoch + 1) * (n / T))
    if end == start:
        end = min(start + 1, n)
    return start, min(end, n)


@pytest.mark.parametrize("n,T,S_", [(5, 3, 4), (10, 4, 7), (2, 5, 3), (7, 7, 1), (1, 3, 2), (30, 200, 250)])
def test_window_is_the_official_slice_at_the_fractional_epoch(n, T, S_):
    for epoch in range(T):
        for step in range(S_):
            e = epoch + step / S_
            assert S.window(e, n, T) == official_window(e, n, T), e


@pytest.mark.parametrize("n,T,P", [(5, 3, 4), (2, 5, 3), (30, 200, 7)])
def test_window_walks_the_whole_list_in_order_and_is_never_empty(n, T, P):
    slices = [S.window(S.fractional_epoch(t, j, P), n, T) for t in range(T) for j in range(P)]
    assert all(0 <= lo < hi <= n for lo, hi in slices)
    assert sorted({i for lo, hi in slices for i in range(lo, hi)}) == list(range(n))
    assert [lo for lo, _ in slices] == sorted(lo for lo, _ in slices)


def test_the_fractional_epoch_is_the_trainers_when_the_batch_is_collated():
    # 4 micro-batches an epoch: batches 0 and 1 are collated before the first step, then one ahead
    assert [S.fractional_epoch(2, j, 4) for j in range(4)] == [2.0, 2.0, 2.25, 2.5]
    # accumulating 2: each step fetches 2 micro-batches, and the look-ahead one more
    assert [S.fractional_epoch(0, j, 5, accumulation=2) for j in range(5)] == [0.0, 0.0, 0.0, 0.4, 0.4]
    sched = make(S.AP2O_L2H, epochs=3, batching=S.Batching(per_device=2))
    pairs = sched.pairs()
    assert [p["fractional_epoch"] for p in pairs[:5]] == [0.0, 0.0, 0.0, 0.0, 1 / 3]
    continuous = make(S.AP2O_L2H, epochs=3, batching=S.Batching(per_device=2), continuous_slide=True).pairs()
    assert [p["fractional_epoch"] for p in continuous[:5]] == [i / 5 for i in range(5)]


def test_ap2o_rejects_come_from_the_window_at_their_position():
    sched = make(S.AP2O_L2H, epochs=3)
    pairs = sched.pairs()
    assert len(pairs) == 3 * len(KEPT) == len(sched)
    for pair in pairs:
        prob = sched.problems[pair["problem"]]
        lo, hi = S.window(pair["fractional_epoch"], len(prob.failed), 3)
        assert lo <= pair["rejected"] < hi and not pair["replayed"]
    # every epoch has one pair per kept problem, in a shuffled order that changes between epochs
    by_epoch = [[p["problem"] for p in pairs if p["epoch"] == t] for t in range(3)]
    assert all(sorted(r) == list(range(len(KEPT))) for r in by_epoch)
    assert len({tuple(r) for r in by_epoch}) > 1


def test_h2l_walks_the_same_list_from_the_back():
    sched = make(S.AP2O_H2L, epochs=3)
    for pair in sched.pairs():
        n = len(sched.problems[pair["problem"]].failed)
        lo, hi = S.window(pair["fractional_epoch"], n, 3)
        assert n - hi <= pair["rejected"] < n - lo


def test_l2h_meets_rare_errors_first_and_h2l_the_frequent_ones():
    first_epoch = lambda s: Counter(p["error_type"] for p in s.pairs() if p["epoch"] == 0)
    assert first_epoch(make(S.AP2O_H2L, epochs=2, scope=S.GLOBAL))["WrongResult"] >= 3
    assert first_epoch(make(S.AP2O_L2H, epochs=2, scope=S.GLOBAL))["WrongResult"] <= 1


def test_epochs_end_with_their_own_short_step_and_several_processes_fill_the_last_round():
    one = make(S.AP2O_L2H, epochs=2, batching=S.Batching(per_device=2))
    assert (one.epoch_length, one.steps_per_epoch, one.max_steps) == (5, 3, 6)  # 2 + 2 + 1 per epoch
    assert [one.position_after(k) for k in range(7)] == [0, 2, 4, 5, 7, 9, 10]
    two = make(S.AP2O_L2H, epochs=2, batching=S.Batching(per_device=2, processes=2))
    assert (two.epoch_length, two.steps_per_epoch, two.max_steps) == (8, 2, 4)  # 5 problems + 3 of the first again
    items = [two.slot(i)[1] for i in range(8)]
    assert sorted(items[:5]) == list(range(5)) and items[5:] == items[:3]
    accumulated = make(S.AP2O_L2H, epochs=2, batching=S.Batching(per_device=1, accumulation=2))
    assert [accumulated.position_after(k) for k in range(5)] == [0, 2, 4, 5, 7]  # steps of 2 + 2 + 1 micro-batches


# --- replay -----------------------------------------------------------------------------------------

def test_replay_counts_are_the_official_formula():
    # max(ceil(c/min_c), int(w * c / sum(c))), min_c and sum(c) over every quizzed type
    assert S.replay_counts({"A": 6, "B": 3, "C": 3}, ["A", "B", "C"], 8) == {"A": 4, "B": 2, "C": 2}
    assert S.replay_counts({"A": 10, "B": 2}, ["A", "B"], 2) == {"A": 5, "B": 1}
    assert S.replay_counts({"A": 3, "B": 2}, ["A", "B"], 1) == {"A": 2, "B": 1}
    # the official floating point: int(w * (c / sum(c))), not an exact w * c // sum(c)
    assert S.replay_counts({"A": 7, "B": 3}, ["A"], 10) == {"A": int(10 * (7 / 10))}


def test_replay_ratios_run_over_all_quizzed_types_not_only_the_problems():
    # the problem has only A; Z's 99 failures still set sum(c) and min_c
    assert S.replay_counts({"A": 1, "Z": 99}, ["A"], 3) == {"A": 1}
    assert S.replay_counts({"A": 50, "Z": 2}, ["A"], 4) == {"A": 25}
    assert S.replay_counts({"Z": 4}, ["A"], 3) == {}


def test_no_replay_before_the_first_quiz():
    assert not any(p["replayed"] for p in make(S.AP2O_L2H, epochs=4).pairs())


def test_rejected_is_drawn_from_window_plus_replay_in_proportion():
    sched = make(S.AP2O_L2H, epochs=200)
    quiz = {"WrongResult": 3, "NameError": 1}
    sched.set_quiz(quiz)
    assert sched.version == 1
    p = next(i for i, prob in enumerate(sched.problems) if prob.problem_id == "add")
    prob = sched.problems[p]
    lo, hi = S.window(0.0, len(prob.failed), 200)
    extra = S.replay_counts(quiz, list(dict.fromkeys(prob.failed_types)), hi - lo)
    assert sched.pool(p, 0.0) == (lo, hi, extra)
    draws = [sched._draw(p, 0.0) for _ in range(6000)]
    outside = [r for _, r, replayed in draws if replayed]
    assert {prob.failed_types[r] for r in outside} == {"WrongResult", "NameError"}
    share = len(outside) / len(draws)
    want = sum(extra.values()) / (hi - lo + sum(extra.values()))
    assert abs(share - want) < 0.03, (share, want)
    # within a replayed type every answer of that type can come back (drawn with replacement)
    assert {r for r in outside if prob.failed_types[r] == "WrongResult"} == set(prob.indices_of("WrongResult"))


def test_no_replay_ablation_ignores_quizzes_but_counts_versions():
    a, b = make(S.AP2O_L2H, replay=False), make(S.AP2O_L2H, replay=False)
    a.set_quiz({"WrongResult": 5})
    assert a.version == 1
    assert [S.Schedule.pair_key(a, p) for p in a.pairs()] == [S.Schedule.pair_key(b, p) for p in b.pairs()]


# --- baselines --------------------------------------------------------------------------------------

def all_pairs(sched):
    return {(p, c, r) for p, prob in enumerate(sched.problems)
            for c in range(len(prob.passed)) for r in range(len(prob.failed))}


def test_dpo_is_every_passed_failed_pair_once_per_epoch_shuffled():
    sched = make(S.DPO, epochs=2)
    pairs = sched.pairs()
    assert len(pairs) == 2 * sched.available_pairs == len(sched)
    for t in (0, 1):
        keys = [sched.pair_key(p) for p in pairs if p["epoch"] == t]
        assert len(keys) == len(set(keys)) and set(keys) == all_pairs(sched)
        assert keys != sorted(keys)
    assert [sched.pair_key(p) for p in pairs[: len(pairs) // 2]] != [sched.pair_key(p) for p in pairs[len(pairs) // 2:]]


def test_curri_dpo_lists_pairs_as_curri_dpo_format_and_the_official_trainer_shuffles_them():
    listed = make(S.CURRI_DPO, epochs=1, shuffle=False)
    pairs = listed.pairs()
    assert {listed.pair_key(p) for p in pairs} == all_pairs(listed)
    assert [p["problem"] for p in pairs] == sorted(p["problem"] for p in pairs)  # problem by problem
    for p_idx, prob in enumerate(listed.problems):  # within a problem: rare errors first, per chosen answer
        rejected = [p["rejected"] for p in pairs if p["problem"] == p_idx and p["chosen"] == 0]
        assert rejected == list(range(len(prob.failed)))
    shuffled = make(S.CURRI_DPO, epochs=1)
    assert {shuffled.pair_key(p) for p in shuffled.pairs()} == all_pairs(shuffled)
    assert [shuffled.pair_key(p) for p in make(S.CURRI_DPO, epochs=1).pairs()] == \
        [shuffled.pair_key(p) for p in make(S.DPO, epochs=1).pairs()]


def test_curri_dpo_h2l_lists_frequent_errors_first():
    sched = make(S.CURRI_DPO, epochs=1, shuffle=False, order=S.H2L, scope=S.GLOBAL)
    first = [p for p in sched.pairs() if p["problem"] == 0 and p["chosen"] == 0]
    assert [p["error_type"] for p in first][:2] == ["WrongResult", "WrongResult"]


def test_dyn_dpo_draws_a_fresh_pair_per_problem_per_epoch_from_everything():
    sched = make(S.DYN_DPO, epochs=40)
    pairs = sched.pairs()
    assert len(pairs) == 40 * len(KEPT)
    for t in range(40):
        assert sorted(p["problem"] for p in pairs if p["epoch"] == t) == list(range(len(KEPT)))
    seen = {sched.pair_key(p)[::2] for p in pairs}
    assert seen == {(p, r) for p, prob in enumerate(sched.problems) for r in range(len(prob.failed))}


def test_sft_is_one_random_passed_answer_per_kept_problem_per_epoch():
    sched = make(S.SFT, epochs=30)
    pairs = sched.pairs()
    assert len(pairs) == 30 * len(KEPT)
    for t in range(30):
        assert sorted(p["problem"] for p in pairs if p["epoch"] == t) == list(range(len(KEPT)))
    assert {(p["problem"], p["chosen"]) for p in pairs} == {
        (i, c) for i, prob in enumerate(sched.problems) for c in range(len(prob.passed))}  # every one drawn
    row = sched.example(pairs[0])
    prob = sched.problems[pairs[0]["problem"]]
    # the official text: '### Question: {prompt}\n ### Answer: {answer}', the loss on the answer
    assert row == {"prompt": f"### Question: {prob.prompt}\n ### Answer:", "completion": " " + prob.passed[pairs[0]["chosen"]]}
    plain = make(S.SFT, epochs=1, sft_official=False)
    first = plain.next_pair()
    assert plain.example(first) == {"prompt": plain.problems[first["problem"]].prompt,
                                    "completion": plain.problems[first["problem"]].passed[first["chosen"]]}


def test_epochs_must_be_whole():
    with pytest.raises(UserError, match="whole number"):
        make(epochs=2.5)
    with pytest.raises(UserError, match="whole number"):
        make(epochs=0)


# --- determinism and resume -------------------------------------------------------------------------

@pytest.mark.parametrize("method", S.METHODS)
def test_same_seed_same_stream_other_seed_other_stream(method):
    assert make(method).pairs() == make(method).pairs()
    one, two = make(method, schedule_seed=1).pairs(), make(method, schedule_seed=2).pairs()
    assert [(p["problem"], p["chosen"], p["rejected"]) for p in one] != [(p["problem"], p["chosen"], p["rejected"]) for p in two]


@pytest.mark.parametrize("method", S.METHODS)
def test_resume_from_json_state_yields_exactly_the_uninterrupted_stream(method):
    quizzes = {3: {"WrongResult": 2, "SyntaxError": 1}, 9: {"NameError": 1}}

    def run(sched, start=0):
        out = []
        while True:
            if sched.position in quizzes and sched.position >= start:
                sched.set_quiz(quizzes[sched.position])
            pair = sched.next_pair()
            if pair is None:
                return out
            out.append(pair)

    full = run(make(method, epochs=4))
    for cut in (1, 3, 7, 12):
        first = make(method, epochs=4)
        head = []
        while first.position < cut:
            if first.position in quizzes:
                first.set_quiz(quizzes[first.position])
            head.append(first.next_pair())
        state = json.loads(json.dumps(first.state_dict()))
        resumed = make(method, epochs=4)
        resumed.load_state_dict(state)
        assert head + run(resumed, start=cut) == full, cut


def test_state_of_another_configuration_is_refused():
    state = make(S.AP2O_L2H, epochs=3).state_dict()
    with pytest.raises(UserError, match="another dataset or configuration"):
        make(S.AP2O_L2H, epochs=4).load_state_dict(state)
    other = make(S.AP2O_L2H, epochs=3, rows=sample_rows()[1:])  # one answer fewer
    assert len(other.problems) == len(make().problems)
    with pytest.raises(UserError, match="another dataset or configuration"):
        other.load_state_dict(state)
    with pytest.raises(UserError, match="resume with the same batch size"):
        make(S.AP2O_L2H, epochs=3, batching=S.Batching(per_device=2)).load_state_dict(state)


def test_bad_input_names_what_is_wrong():
    with pytest.raises(UserError, match="unknown method"):
        S.ScheduleConfig(method="ppo")
    with pytest.raises(UserError, match="nothing to train on"):
        make(rows=[r for r in sample_rows() if r["passed"]])
    rows = pa.Table.from_pylist(sample_rows()).drop_columns(["completion"])
    with pytest.raises(UserError, match="missing column 'completion'"):
        problems_from_samples(rows, S.ScheduleConfig())
