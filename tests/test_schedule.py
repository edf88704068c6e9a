"""The schedule: window slices, error-type order, replay, determinism, resume, every baseline.

``write_dataset`` also builds the small builder-style dataset folder that ``test_feed`` and
``test_train_e2e`` train on: real Python answers, labelled with the error each one really raises.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections import Counter

import pyarrow as pa
import pytest

import schemas
from builder import taxonomy
from builder.errors import UserError
from builder.io import write_parquet
from trainer import schedule as S

# --- a tiny MBPP-like split -----------------------------------------------------------------------
# problem id -> (prompt, test, entry point, passed answers, failed answers with the error each raises)
TRAIN = {
    "add": ('def add(a, b):\n    """Return the sum of a and b."""\n',
            "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n", "add",
            ["    return a + b\n", "    return b + a\n", "    return sum((a, b))\n"],
            [("    return a - b\n", "WrongResult"), ("    return a + c\n", "NameError"),
             ("    return a +\n", "SyntaxError"), ("    return a * b\n", "WrongResult"),
             ("    return str(a) + b\n", "TypeError"), ("    return a - b\n", "WrongResult")]),  # a duplicate
    "first": ('def first(xs):\n    """Return the first item of the list xs."""\n',
              "def check(candidate):\n    assert candidate([4, 5]) == 4\n", "first",
              ["    return xs[0]\n"],
              [("    return xs[len(xs)]\n", "IndexError"), ("    return xs[1]\n", "WrongResult"),
               ("    return xs[-1]\n", "WrongResult"), ("    return xs.first()\n", "AttributeError")]),
    "mean": ('def mean(xs):\n    """Return the arithmetic mean of xs."""\n',
             "def check(candidate):\n    assert candidate([1, 2]) == 1.5\n", "mean",
             ["    return sum(xs) / len(xs)\n", "    total = sum(xs)\n    return total / len(xs)\n"],
             [("    return sum(xs) / 0\n", "ZeroDivisionError"), ("    return sum(xs) // len(xs)\n", "WrongResult"),
              ("    return sum(xs) / len(x)\n", "NameError"), ("    return sum(xs) / len(xs\n", "SyntaxError"),
              ("    return sum(xs) / len(xs) + 1\n", "WrongResult")]),
    "is_even": ('def is_even(n):\n    """Return True when n is even."""\n',
                "def check(candidate):\n    assert candidate(2) is True\n    assert candidate(3) is False\n", "is_even",
                ["    return n % 2 == 0\n"],
                [("    return n % 2 == 1\n", "WrongResult"), ("    retrun n % 2 == 0\n", "SyntaxError"),
                 ("    return n % 0 == 0\n", "ZeroDivisionError")]),
    "concat": ('def concat(a, b):\n    """Join the strings a and b."""\n',
               "def check(candidate):\n    assert candidate('x', 'y') == 'xy'\n", "concat",
               ["    return a + b\n", "    return ''.join([a, b])\n"],
               [("    return a + 1\n", "TypeError"), ("    return b + a\n", "WrongResult")]),
    # filtered out: no failed answer / a single failed answer / no passed answer
    "square": ('def square(x):\n    """Return x squared."""\n',
               "def check(candidate):\n    assert candidate(3) == 9\n", "square", ["    return x * x\n"], []),
    "neg": ('def neg(x):\n    """Return -x."""\n', "def check(candidate):\n    assert candidate(2) == -2\n", "neg",
            ["    return -x\n"], [("    return x\n", "WrongResult")]),
    "last": ('def last(xs):\n    """Return the last item of xs."""\n',
             "def check(candidate):\n    assert candidate([1, 2]) == 2\n", "last",
             [], [("    return xs[0]\n", "WrongResult"), ("    return xs[len(xs)]\n", "IndexError")]),
}
KEPT = ["add", "concat", "first", "is_even", "mean"]

VALIDATION = {
    "double": ('def double(x):\n    """Return 2 * x."""\n', "def check(candidate):\n    assert candidate(2) == 4\n", "double"),
    "inc": ('def inc(x):\n    """Return x + 1."""\n', "def check(candidate):\n    assert candidate(1) == 2\n", "inc"),
    "head": ('def head(s):\n    """Return the first character of s."""\n',
             "def check(candidate):\n    assert candidate('ab') == 'a'\n", "head"),
}

CARD = """---
configs:
- config_name: samples
  data_files:
  - split: train
    path: data/samples/train-*.parquet
- config_name: problems
  data_files:
  - split: validation
    path: data/problems/validation-*.parquet
---
# tiny ap2o test dataset
"""


def sample_rows() -> list[dict]:
    rows = []
    for pid, (prompt, test, entry, passed, failed) in TRAIN.items():
        answers = [(a, None) for a in passed] + list(failed)
        for i, (answer, error) in enumerate(answers):
            rows.append({"problem_id": pid, "source": "test", "split": "train", "kind": "function",
                         "prompt": prompt, "test": test, "entry_point": entry, "completion": prompt + answer,
                         "sample_index": i, "prompt_format": "completion", "passed": error is None,
                         "status": taxonomy.status_of(error), "error_type": error,
                         "error_category": taxonomy.category_of(error)})
    return rows


def write_dataset(folder: pathlib.Path) -> pathlib.Path:
    """A Hub-layout dataset folder (samples/train + problems/validation + card) that
    ``datasets.load_dataset(folder, "samples")`` reads."""
    samples = schemas.conform(pa.Table.from_pylist(sample_rows()), schemas.SAMPLES)
    write_parquet(samples, folder / "data/samples/train-00000-of-00001.parquet")
    problems = [{"problem_id": pid, "source": "test", "split": "validation", "kind": "function", "prompt": p,
                 "test": t, "entry_point": e} for pid, (p, t, e) in VALIDATION.items()]
    write_parquet(schemas.conform(pa.Table.from_pylist(problems), schemas.PROBLEMS),
                  folder / "data/problems/validation-00000-of-00001.parquet")
    (folder / "README.md").write_text(CARD)
    return folder


def make(method=S.AP2O_L2H, **kw) -> S.Schedule:
    return S.Schedule.from_rows(sample_rows(), S.ScheduleConfig(method=method, **kw))


def texts(sched: S.Schedule, pair: dict) -> tuple[str, str, str]:
    prob = sched.problems[pair["problem"]]
    return prob.problem_id, prob.passed[pair["chosen"]], prob.failed[pair["rejected"]]


# --- filter and order ------------------------------------------------------------------------------

def test_filter_keeps_problems_with_a_pass_and_two_distinct_failures():
    sched = make()
    assert [p.problem_id for p in sched.problems] == KEPT
    add = sched.problems[0]
    assert add.failed.count("    return a - b\n") == 1  # the duplicate answer counts once
    assert len(add.failed) == 5


def test_completion_format_trains_on_the_continuation_only():
    sched = make()
    pair = sched.next_pair()
    ex = sched.example(pair)
    prob = sched.problems[pair["problem"]]
    assert ex["prompt"] == prob.prompt and not ex["chosen"].startswith("def ")


def test_l2h_and_h2l_order_error_types_by_global_frequency():
    counts = Counter(e for _, (_, _, _, _, failed) in TRAIN.items() for e in dict(failed).values())
    l2h, h2l = make(S.AP2O_L2H), make(S.AP2O_H2L)
    assert l2h.error_order == S.type_order(counts, S.L2H)
    assert h2l.error_order[0] == "WrongResult" and l2h.error_order[-1] == "WrongResult"
    assert h2l.error_order == sorted(counts, key=lambda e: (-counts[e], e))
    # within a problem: failed answers follow the order, shorter first inside one type
    add_l2h = l2h.problems[0]
    rank = {e: i for i, e in enumerate(l2h.error_order)}
    keys = [(rank[e], len(a)) for a, e in zip(add_l2h.failed, add_l2h.failed_types)]
    assert keys == sorted(keys)
    assert add_l2h.failed_types[-2:] == ("WrongResult", "WrongResult")
    assert make(S.AP2O_H2L).problems[0].failed_types[:2] == ("WrongResult", "WrongResult")


def test_problem_scope_orders_by_each_problems_own_frequencies():
    # in "first", WrongResult (2) beats IndexError/AttributeError (1 each); globally too, but
    # in "concat" TypeError and WrongResult tie 1:1, so the problem scope orders them by name
    # while the global scope puts TypeError (3 failures in the split) before WrongResult (10) in L2H
    glob = {p.problem_id: p for p in make(S.AP2O_H2L, scope=S.GLOBAL).problems}
    prob = {p.problem_id: p for p in make(S.AP2O_H2L, scope=S.PROBLEM).problems}
    assert glob["concat"].failed_types == ("WrongResult", "TypeError")
    assert prob["concat"].failed_types == ("TypeError", "WrongResult")
    assert prob["first"].failed_types[:2] == ("WrongResult", "WrongResult")


# --- the window -------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,T", [(5, 3), (10, 4), (2, 5), (7, 7), (1, 3)])
def test_window_slices_cover_the_list_in_order_and_are_never_empty(n, T):
    slices = [S.window(t, n, T) for t in range(T)]
    for t, (lo, hi) in enumerate(slices):
        assert 0 <= lo < hi <= n
        if n >= T:
            assert (lo, hi) == (math.floor(t * n / T), math.floor((t + 1) * n / T))
    covered = sorted({i for lo, hi in slices for i in range(lo, hi)})
    assert covered == list(range(n))
    assert [lo for lo, _ in slices] == sorted(lo for lo, _ in slices)


def test_ap2o_rejects_come_from_the_window_of_their_round():
    sched = make(S.AP2O_L2H, rounds=3)
    pairs = sched.pairs()
    assert len(pairs) == 3 * len(KEPT) == len(sched)
    for pair in pairs:
        prob = sched.problems[pair["problem"]]
        lo, hi = S.window(pair["round"], len(prob.failed), 3)
        assert lo <= pair["rejected"] < hi
    # every round has one pair per kept problem, in a shuffled order that changes between rounds
    by_round = [[p["problem"] for p in pairs if p["round"] == t] for t in range(3)]
    assert all(sorted(r) == list(range(len(KEPT))) for r in by_round)
    assert len({tuple(r) for r in by_round}) > 1


def test_l2h_meets_rare_errors_first_and_h2l_the_frequent_ones():
    first_round = lambda s: Counter(p["error_type"] for p in s.pairs() if p["round"] == 0)
    assert first_round(make(S.AP2O_H2L, rounds=2))["WrongResult"] >= 4
    assert first_round(make(S.AP2O_L2H, rounds=2))["WrongResult"] <= 1


# --- replay -----------------------------------------------------------------------------------------

def test_replay_counts_are_proportional_and_sum_to_the_width():
    assert S.replay_counts({"A": 6, "B": 3, "C": 3}, ["A", "B", "C"], 8) == {"A": 4, "B": 2, "C": 2}
    got = S.replay_counts({"A": 5, "B": 5}, ["A", "B"], 7)
    assert sum(got.values()) == 7 and sorted(got.values()) == [3, 4]
    # types the problem has no answer of share nothing; ratios renormalise over the present ones
    assert S.replay_counts({"A": 1, "Z": 99}, ["A"], 3) == {"A": 3}
    assert S.replay_counts({"Z": 4}, ["A"], 3) == {}


def test_replay_keeps_at_least_ceil_c_over_min_c_per_type():
    # width 2 cannot hold both types in proportion 10:2; the minimums ceil(10/2)=5, ceil(2/2)=1 win
    assert S.replay_counts({"A": 10, "B": 2}, ["A", "B"], 2) == {"A": 5, "B": 1}
    assert S.replay_counts({"A": 3, "B": 2}, ["A", "B"], 1) == {"A": 2, "B": 1}


def test_quiz_adds_replay_of_the_quizzed_types_from_the_whole_failed_list():
    sched = make(S.AP2O_L2H, rounds=2)
    sched.set_quiz({"WrongResult": 3, "NameError": 1})
    assert sched.version == 1
    for p, prob in enumerate(sched.problems):
        lo, hi = S.window(sched.round, len(prob.failed), 2)
        present = [e for e in ("WrongResult", "NameError") if e in prob.failed_types]
        replay = sched.replay.get(p, ())
        want = S.replay_counts({"WrongResult": 3, "NameError": 1}, present, hi - lo)
        assert Counter(prob.failed_types[i] for i in replay) == Counter(want)
        if present and all(want[e] <= prob.failed_types.count(e) for e in want):
            assert len(set(replay)) == len(replay)  # without replacement while the list lasts
    # the rejected answers now also come from outside the window, from the replayed types
    outside = [p for p in sched.pairs() if p["round"] == 0 and not (
        S.window(0, len(sched.problems[p["problem"]].failed), 2)[0] <= p["rejected"]
        < S.window(0, len(sched.problems[p["problem"]].failed), 2)[1])]
    assert all(p["error_type"] in ("WrongResult", "NameError") for p in outside)


def test_replay_pool_follows_the_window_width_in_every_round():
    sched = make(S.AP2O_L2H, rounds=2)
    sched.set_quiz({"WrongResult": 1})
    while sched.round == 0:
        sched.next_pair()
    for p, prob in enumerate(sched.problems):
        lo, hi = S.window(1, len(prob.failed), 2)
        if "WrongResult" in prob.failed_types:
            assert len(sched.replay[p]) == hi - lo


def test_no_replay_ablation_ignores_quizzes_but_counts_versions():
    a, b = make(S.AP2O_L2H, replay=False), make(S.AP2O_L2H, replay=False)
    a.set_quiz({"WrongResult": 5})
    assert a.replay == {} and a.version == 1
    assert [S.Schedule.pair_key(a, p) for p in a.pairs()] == [S.Schedule.pair_key(b, p) for p in b.pairs()]


# --- baselines --------------------------------------------------------------------------------------

def all_pairs(sched):
    return {(p, c, r) for p, prob in enumerate(sched.problems)
            for c in range(len(prob.passed)) for r in range(len(prob.failed))}


def test_dpo_is_every_passed_failed_pair_once_shuffled():
    sched = make(S.DPO)
    keys = [sched.pair_key(p) for p in sched.pairs()]
    assert len(keys) == len(set(keys)) == sched.available_pairs == len(sched)
    assert set(keys) == all_pairs(sched)
    assert keys != sorted(keys)


def test_curri_dpo_orders_the_same_pairs_by_error_frequency():
    for order in (S.L2H, S.H2L):
        sched = make(S.CURRI_DPO, order=order)
        pairs = sched.pairs()
        assert {sched.pair_key(p) for p in pairs} == all_pairs(sched)
        ranks = [sched.error_order.index(p["error_type"]) for p in pairs]
        assert ranks == sorted(ranks)
    assert make(S.CURRI_DPO, order=S.H2L).pairs()[0]["error_type"] == "WrongResult"


def test_dyn_dpo_draws_a_fresh_pair_per_problem_per_round_from_everything():
    sched = make(S.DYN_DPO, rounds=40)
    pairs = sched.pairs()
    assert len(pairs) == 40 * len(KEPT)
    for t in range(40):
        assert sorted(p["problem"] for p in pairs if p["round"] == t) == list(range(len(KEPT)))
    # no window: over many rounds every failed answer of a problem shows up, in any round
    seen = {sched.pair_key(p)[::2] for p in pairs}
    assert seen == {(p, r) for p, prob in enumerate(sched.problems) for r in range(len(prob.failed))}
    early = {sched.pair_key(p)[::2] for p in pairs if p["round"] < 10}
    assert any(r >= len(sched.problems[p].failed) - 1 for p, r in early)


def test_sft_rows_are_the_passed_answers_of_kept_problems():
    sched = make()
    rows = S.sft_rows(sched.problems, seed=0)
    assert len(rows) == sum(len(p.passed) for p in sched.problems)
    assert {r["completion"] for r in rows} >= {"    return a + b\n", "    return xs[0]\n"}


# --- determinism and resume -------------------------------------------------------------------------

@pytest.mark.parametrize("method", S.PAIR_METHODS)
def test_same_seed_same_stream_other_seed_other_stream(method):
    assert make(method).pairs() == make(method).pairs()
    assert [p["problem"] for p in make(method, schedule_seed=1).pairs()] != [p["problem"] for p in make(method, schedule_seed=2).pairs()] \
        or [p["chosen"] for p in make(method, schedule_seed=1).pairs()] != [p["chosen"] for p in make(method, schedule_seed=2).pairs()]


@pytest.mark.parametrize("method", S.PAIR_METHODS)
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

    full = run(make(method, rounds=4))
    for cut in (1, 3, 7, 12):
        first = make(method, rounds=4)
        head = []
        while first.position < cut:
            if first.position in quizzes:
                first.set_quiz(quizzes[first.position])
            head.append(first.next_pair())
        state = json.loads(json.dumps(first.state_dict()))
        resumed = make(method, rounds=4)
        resumed.load_state_dict(state)
        assert head + run(resumed, start=cut) == full, cut


def test_state_of_another_configuration_is_refused():
    state = make(S.AP2O_L2H, rounds=3).state_dict()
    with pytest.raises(UserError, match="another dataset or configuration"):
        make(S.AP2O_L2H, rounds=4).load_state_dict(state)
    other = S.Schedule.from_rows(sample_rows()[1:], S.ScheduleConfig(rounds=3))  # one answer fewer
    assert len(other.problems) == len(make().problems)
    with pytest.raises(UserError, match="another dataset or configuration"):
        other.load_state_dict(state)


def test_bad_input_names_what_is_wrong():
    with pytest.raises(UserError, match="unknown method"):
        S.ScheduleConfig(method="ppo")
    with pytest.raises(UserError, match="nothing to train on"):
        S.Schedule.from_rows([r for r in sample_rows() if r["passed"]], S.ScheduleConfig())
    rows = sample_rows()
    del rows[4]["completion"]
    with pytest.raises(UserError, match="row 4: missing column 'completion'"):
        S.Schedule.from_rows(rows, S.ScheduleConfig())
