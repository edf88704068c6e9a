"""The order in which preference pairs are trained: AP2O's error sliding window and adaptive error
replay, and the paper's baselines, as one pure, seeded, resumable object.

Everything here is plain Python over the ``samples`` table (DESIGN, "The method, precisely",
steps 3-6). Nothing imports torch: the schedule is tested in milliseconds and every rank of a
distributed run builds the same one from the same seed. The trainer's feed pulls pairs one at a
time with ``next_pair()`` and the quiz pushes its error counts with ``set_quiz()``; the next pair
already reflects them, which is what makes the replay *adaptive*.

Positions, not wall time, define the stream: the pair at position ``i`` depends only on the data,
the config and the quiz updates applied before ``i``. ``state_dict()`` captures everything needed
to continue (round, cursor, RNG, replay pool, quiz counts, version) as JSON, so a resumed run
yields exactly the pairs an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from builder.errors import UserError
from builder.prompts import CHAT, COMPLETION, make_request

# The schedules of the paper's Table 2 (SFT is not a pair schedule: see ``sft_rows``).
DPO, CURRI_DPO, DYN_DPO, AP2O_L2H, AP2O_H2L, SFT = "dpo", "curri-dpo", "dyn-dpo", "ap2o-l2h", "ap2o-h2l", "sft"
PAIR_METHODS = (DPO, CURRI_DPO, DYN_DPO, AP2O_L2H, AP2O_H2L)
METHODS = (SFT, *PAIR_METHODS)
STATIC_METHODS = (DPO, CURRI_DPO)
L2H, H2L = "l2h", "h2l"
GLOBAL, PROBLEM = "global", "problem"

STATE_FORMAT = 1  # bump when ``state_dict`` changes shape

# Columns of ``schemas.SAMPLES`` the schedule reads (names only: the schema owns their types).
SAMPLE_COLUMNS = ("problem_id", "prompt", "completion", "passed", "error_type")


@dataclass
class ScheduleConfig:
    """How pairs are drawn from the ``samples`` data. Defaults follow the paper."""

    method: str = field(default=AP2O_L2H, metadata={
        "help": f"training method: {', '.join(PAIR_METHODS)} (pair schedules) or sft (passed answers)"})
    rounds: int = field(default=3, metadata={
        "help": "T, the depth of the error sliding window: rounds over every kept problem "
                "(dyn-dpo and ap2o-*; static dpo/curri-dpo make one pass over all pairs)"})
    scope: str = field(default=GLOBAL, metadata={
        "help": "error-frequency scope that orders error types: 'global' (paper: one order for the split) "
                "or 'problem' (official code: each problem's own frequencies)"})
    order: str | None = field(default=None, metadata={
        "help": "'l2h' or 'h2l'; default: from the method (ap2o-l2h/ap2o-h2l), l2h for curri-dpo"})
    replay: bool = field(default=True, metadata={"help": "adaptive error replay from quiz results (ap2o-*); "
                                                          "false = the paper's no-replay ablation"})
    min_passed: int = field(default=1, metadata={"help": "keep problems with at least this many distinct passed answers"})
    min_failed: int = field(default=2, metadata={"help": "keep problems with at least this many distinct failed answers"})
    schedule_seed: int = field(default=42, metadata={"help": "seed of every random draw of the schedule"})

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown method {self.method!r} (choose from: {', '.join(METHODS)})")
        if self.scope not in (GLOBAL, PROBLEM):
            raise UserError(f"scope must be 'global' or 'problem', got {self.scope!r}")
        if self.order is None:
            self.order = H2L if self.method == AP2O_H2L else L2H
        if self.order not in (L2H, H2L):
            raise UserError(f"order must be 'l2h' or 'h2l', got {self.order!r}")
        if self.rounds < 1:
            raise UserError(f"rounds must be >= 1, got {self.rounds}")


@dataclass(frozen=True)
class Problem:
    """One kept problem: its prompt, distinct passed answers, and distinct failed answers already
    sorted by the error-type order (ties: shorter answer first)."""

    problem_id: str
    prompt: Any  # str (completion format) or list of chat messages
    passed: tuple[str, ...]
    failed: tuple[str, ...]
    failed_types: tuple[str, ...]

    def indices_of(self, error_type: str) -> list[int]:
        return [i for i, e in enumerate(self.failed_types) if e == error_type]


# --- building problems from samples -----------------------------------------------------------------

def type_order(counts: Mapping[str, int], order: str) -> list[str]:
    """Error types sorted by frequency, ``l2h`` (rarest first) or ``h2l``; ties by name so that the
    order never depends on row order."""
    sign = 1 if order == L2H else -1
    return sorted(counts, key=lambda e: (sign * counts[e], e))


def group_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows per problem, answers de-duplicated (DESIGN step 3): an answer sampled twice is one
    answer, so it cannot be paired with itself nor weigh twice in a window."""
    problems: dict[str, dict[str, Any]] = {}
    for n, row in enumerate(rows):
        for col in SAMPLE_COLUMNS:
            if col not in row:
                raise UserError(f"samples row {n}: missing column {col!r}")
        pid = str(row["problem_id"])
        prompt, text = training_text(row)
        p = problems.setdefault(pid, {"prompt": prompt, "passed": {}, "failed": {}})
        if row["passed"]:
            p["passed"].setdefault(text, None)
        else:
            if row["error_type"] is None:
                raise UserError(f"samples row {n} (problem {pid!r}): failed answer without error_type")
            p["failed"].setdefault(text, row["error_type"])
    return problems


def training_text(row: Mapping[str, Any]) -> tuple[Any, str]:
    """(prompt, answer) as the model saw them when sampling. ``completion`` holds the program that
    ran, which in the completion format is prompt + continuation: the model only wrote the
    continuation, so that is what it is trained on. Chat answers are trained as assistant turns
    of the same user message the sampler sent (``builder.prompts``, one place for it)."""
    if (row.get("prompt_format") or COMPLETION) == CHAT:
        return list(make_request(row, CHAT).messages), row["completion"]
    prompt, program = row["prompt"], row["completion"]
    return prompt, program.removeprefix(prompt)


def build_problems(rows: Sequence[Mapping[str, Any]], config: ScheduleConfig) -> tuple[list[Problem], list[str], Counter]:
    """Filter and order: the kept problems, the global error-type order and the global counts.

    Frequencies are counted over every failed answer of the split (the error notebook), before
    the filter, so the order is the notebook's order whichever problems survive."""
    grouped = group_rows(rows)
    global_counts = Counter(e for p in grouped.values() for e in p["failed"].values())
    global_order = type_order(global_counts, config.order)
    kept = []
    for pid in sorted(grouped):
        p = grouped[pid]
        if len(p["passed"]) < config.min_passed or len(p["failed"]) < config.min_failed:
            continue
        if config.scope == GLOBAL:
            order = global_order
        else:
            order = type_order(Counter(p["failed"].values()), config.order)
        rank = {e: i for i, e in enumerate(order)}
        failed = sorted(p["failed"].items(), key=lambda kv: (rank[kv[1]], len(kv[0]), kv[0]))
        kept.append(Problem(pid, p["prompt"], tuple(p["passed"]),
                            tuple(t for t, _ in failed), tuple(e for _, e in failed)))
    return kept, global_order, global_counts


def window(t: int, n: int, rounds: int) -> tuple[int, int]:
    """The slice ``[lo, hi)`` of a problem's ``n`` ordered failed answers at round ``t`` of ``T``:
    ``[floor(t*n/T), floor((t+1)*n/T))``, widened to one answer when a problem has fewer failed
    answers than rounds (the window is never empty)."""
    lo, hi = (t * n) // rounds, ((t + 1) * n) // rounds
    lo = min(lo, n - 1)
    return lo, max(hi, lo + 1)


def replay_counts(counts: Mapping[str, int], present: Sequence[str], width: int) -> dict[str, int]:
    """How many answers of each quizzed error type to replay into a window of ``width``.

    The width is shared among the quizzed types this problem has failed answers of, in
    proportion to their quiz counts (largest remainder, so the total is exactly ``width``); then
    each such type ``e`` gets at least ``ceil(c_e / min_c)`` (official code), ``min_c`` being the
    smallest quiz count among them: even a narrow window then replays every current weakness, and
    the more frequent ones proportionally more. Only then can the total exceed ``width``."""
    quizzed = {e: int(counts[e]) for e in present if counts.get(e, 0) > 0}
    if not quizzed or width < 1:
        return {}
    total = sum(quizzed.values())
    quota = {e: width * c / total for e, c in quizzed.items()}
    alloc = {e: math.floor(q) for e, q in quota.items()}
    left = width - sum(alloc.values())
    for e in sorted(quizzed, key=lambda e: (-(quota[e] - alloc[e]), -quizzed[e], e))[:left]:
        alloc[e] += 1
    min_c = min(quizzed.values())
    return {e: max(alloc[e], math.ceil(c / min_c)) for e, c in quizzed.items()}


# --- the schedule ---------------------------------------------------------------------------------

class Schedule:
    """A finite stream of preference pairs over ``problems`` following ``config.method``.

    ``next_pair()`` returns the next pair (a dict of answer indices and metadata) or ``None`` at
    the end; ``example(pair)`` turns it into the TRL row. Length: ``rounds x kept problems`` for
    dyn-dpo and ap2o-*, every passed x failed pair once for dpo and curri-dpo."""

    def __init__(self, problems: Sequence[Problem], config: ScheduleConfig) -> None:
        if config.method not in PAIR_METHODS:
            raise UserError(f"{config.method!r} is not a pair schedule (use sft_rows for sft)")
        if not problems:
            raise UserError(f"no problem has >= {config.min_passed} passed and >= {config.min_failed} distinct "
                            "failed answers: nothing to train on")
        self.problems = list(problems)
        self.config = config
        # the notebook order; ``from_rows`` replaces it with the one counted over the whole split
        self.error_counts = dict(Counter(e for p in self.problems for e in p.failed_types))
        self.error_order = type_order(self.error_counts, config.order)
        self._static: list[tuple[int, int, int]] | None = None
        self.reset()

    # -- construction
    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]], config: ScheduleConfig) -> Schedule:
        problems, order, counts = build_problems(rows, config)
        self = cls(problems, config)
        self.error_order, self.error_counts = order, dict(counts)
        return self

    # -- sizes
    def __len__(self) -> int:
        if self.config.method in STATIC_METHODS:
            return self.available_pairs
        return self.config.rounds * len(self.problems)

    @property
    def available_pairs(self) -> int:
        """Distinct (chosen, rejected) pairs the data holds: the denominator of sample efficiency."""
        return sum(len(p.passed) * len(p.failed) for p in self.problems)

    # -- state
    def reset(self) -> None:
        """Back to position 0, as freshly built (quiz counts forgotten)."""
        self.rng = random.Random(self.config.schedule_seed)
        self.position = 0       # pairs produced so far
        self.round = 0
        self.cursor = 0         # index into this round's problem order (or into the static list)
        self.version = 0        # bumped by every quiz update
        self.quiz: dict[str, int] = {}
        self.replay: dict[int, tuple[int, ...]] = {}
        self.order: list[int] = []  # this round's problem order (dynamic schedules)
        if self.config.method not in STATIC_METHODS:
            self._start_round()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly from here, as JSON-able data."""
        version, internal, gauss = self.rng.getstate()
        return {
            "format": STATE_FORMAT, "config": asdict(self.config), "data": self.fingerprint(),
            "position": self.position, "round": self.round, "cursor": self.cursor, "version": self.version,
            "order": list(self.order), "quiz": dict(self.quiz),
            "replay": {str(p): list(v) for p, v in self.replay.items()},
            "rng": [version, list(internal), gauss],
        }

    def fingerprint(self) -> str:
        """What the indices in a saved state point into: kept problems and their ordered answers."""
        h = hashlib.sha256()
        for p in self.problems:
            h.update(json.dumps([p.problem_id, p.passed, p.failed]).encode())
        return h.hexdigest()[:16]

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise UserError(f"schedule state has format {state.get('format')!r}, this version reads {STATE_FORMAT}")
        if state["config"] != asdict(self.config) or state["data"] != self.fingerprint():
            raise UserError("schedule state was saved for another dataset or configuration; refusing to resume from it")
        self.position, self.round, self.cursor = state["position"], state["round"], state["cursor"]
        self.version, self.order, self.quiz = state["version"], list(state["order"]), dict(state["quiz"])
        self.replay = {int(p): tuple(v) for p, v in state["replay"].items()}
        v, internal, gauss = state["rng"]
        self.rng.setstate((v, tuple(internal), gauss))

    def snapshot(self) -> dict[str, Any]:
        """A cheap copy of the state for the feed's look-ahead bookkeeping (see ``trainer.feed``)."""
        return {"position": self.position, "round": self.round, "cursor": self.cursor, "version": self.version,
                "order": self.order, "quiz": self.quiz, "replay": self.replay, "rng": self.rng.getstate()}

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.position, self.round, self.cursor = snap["position"], snap["round"], snap["cursor"]
        self.version, self.order, self.quiz, self.replay = snap["version"], snap["order"], snap["quiz"], snap["replay"]
        self.rng.setstate(snap["rng"])

    # -- quiz
    def set_quiz(self, error_counts: Mapping[str, int]) -> None:
        """Take a quiz's error counts (error type -> failed answers of that type). The replay of
        every problem is redrawn for the current window at once, so the very next pair uses it."""
        self.quiz = {str(e): int(c) for e, c in error_counts.items() if int(c) > 0}
        self.version += 1
        if self.config.method in (AP2O_L2H, AP2O_H2L) and self.round < self.config.rounds:
            self._draw_replay()

    # -- pairs
    def __iter__(self) -> Iterator[dict[str, Any]]:
        while (pair := self.next_pair()) is not None:
            yield pair

    def next_pair(self) -> dict[str, Any] | None:
        m = self.config.method
        if m in STATIC_METHODS:
            pair = self._next_static()
        else:
            pair = self._next_dynamic()
        if pair is None:
            return None
        p, c, r, rnd = pair
        self.position += 1
        prob = self.problems[p]
        return {"problem": p, "chosen": c, "rejected": r, "round": rnd, "version": self.version,
                "error_type": prob.failed_types[r], "position": self.position - 1}

    def example(self, pair: Mapping[str, Any]) -> dict[str, Any]:
        """The TRL row of a pair: ``prompt``/``chosen``/``rejected`` (conversational when the
        prompt is a message list) plus metadata columns the collator drops before the model."""
        prob = self.problems[pair["problem"]]
        chosen, rejected = prob.passed[pair["chosen"]], prob.failed[pair["rejected"]]
        if isinstance(prob.prompt, str):
            prompt = prob.prompt
        else:
            prompt = list(prob.prompt)
            chosen = [{"role": "assistant", "content": chosen}]
            rejected = [{"role": "assistant", "content": rejected}]
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected, **metadata(prob, pair)}

    def pair_key(self, pair: Mapping[str, Any]) -> tuple[int, int, int]:
        return pair["problem"], pair["chosen"], pair["rejected"]

    def _next_static(self):
        if self._static is None:
            self._static = self._static_pairs()
        if self.cursor >= len(self._static):
            return None
        p, c, r = self._static[self.cursor]
        self.cursor += 1
        return p, c, r, 0

    def _static_pairs(self) -> list[tuple[int, int, int]]:
        """dpo: every passed x failed pair, shuffled. curri-dpo: the same pairs ordered by the
        rejected answer's error type in the notebook order (shuffled within a type)."""
        pairs = [(p, c, r) for p, prob in enumerate(self.problems)
                 for c in range(len(prob.passed)) for r in range(len(prob.failed))]
        rng = random.Random(self.config.schedule_seed)  # independent of the stream: the list is static
        rng.shuffle(pairs)
        if self.config.method == CURRI_DPO:
            rank = self._type_rank()
            pairs.sort(key=lambda pcr: rank(pcr[0], self.problems[pcr[0]].failed_types[pcr[2]]))
        return pairs

    def _type_rank(self):
        if self.config.scope == GLOBAL:
            ranks = {e: i for i, e in enumerate(self.error_order)}
            return lambda p, e: ranks[e]
        per = [{e: i for i, e in enumerate(dict.fromkeys(prob.failed_types))} for prob in self.problems]
        return lambda p, e: per[p][e]

    def _next_dynamic(self):
        if self.round >= self.config.rounds:
            return None
        p = self.order[self.cursor]
        prob = self.problems[p]
        chosen = self.rng.randrange(len(prob.passed))
        if self.config.method == DYN_DPO:
            rejected = self.rng.randrange(len(prob.failed))
        else:
            lo, hi = window(self.round, len(prob.failed), self.config.rounds)
            pool = hi - lo + len(self.replay.get(p, ()))
            k = self.rng.randrange(pool)
            rejected = lo + k if k < hi - lo else self.replay[p][k - (hi - lo)]
        rnd = self.round
        self.cursor += 1
        if self.cursor == len(self.order):
            self.round += 1
            self.cursor = 0
            if self.round < self.config.rounds:
                self._start_round()
        return p, chosen, rejected, rnd

    def _start_round(self) -> None:
        self.order = list(range(len(self.problems)))
        self.rng.shuffle(self.order)
        self._draw_replay()

    def _draw_replay(self) -> None:
        """Replay pool of every problem for the current round's window width (step 5)."""
        self.replay = {}
        if self.config.method not in (AP2O_L2H, AP2O_H2L) or not self.config.replay or not self.quiz:
            return
        for p, prob in enumerate(self.problems):
            lo, hi = window(self.round, len(prob.failed), self.config.rounds)
            present = [e for e in dict.fromkeys(prob.failed_types) if e in self.quiz]
            drawn: list[int] = []
            for e, k in replay_counts(self.quiz, present, hi - lo).items():
                drawn += draw(self.rng, prob.indices_of(e), k)
            if drawn:
                self.replay[p] = tuple(drawn)

    def pairs(self) -> list[dict[str, Any]]:
        """The whole stream from here on, without quiz updates (tests, benchmarks)."""
        return list(self)


def draw(rng: random.Random, items: Sequence[int], k: int) -> list[int]:
    """``k`` items at random from the whole list: without replacement while it lasts, then again
    from a fresh shuffle, so a type with few answers is repeated evenly rather than by chance."""
    out: list[int] = []
    while len(out) < k:
        batch = list(items)
        rng.shuffle(batch)
        out += batch[: k - len(out)]
    return out


def metadata(prob: Problem, pair: Mapping[str, Any]) -> dict[str, Any]:
    """Columns that describe a pair for logs and sample efficiency. They are not model inputs:
    transformers' Trainer removes every column outside the model's signature before collating."""
    return {"problem_id": prob.problem_id, "rejected_error_type": pair["error_type"],
            "ap2o_round": pair["round"], "ap2o_version": pair["version"], "ap2o_position": pair["position"],
            "ap2o_chosen": pair["chosen"], "ap2o_rejected": pair["rejected"]}


def sft_rows(problems: Sequence[Problem], seed: int) -> list[dict[str, Any]]:
    """The SFT baseline's data: every distinct passed answer of the kept problems (the same filter
    as the pair schedules, so every method sees the same problems), shuffled."""
    rows = []
    for prob in problems:
        for answer in prob.passed:
            if isinstance(prob.prompt, str):
                rows.append({"prompt": prob.prompt, "completion": answer})
            else:
                rows.append({"prompt": list(prob.prompt), "completion": [{"role": "assistant", "content": answer}]})
    random.Random(seed).shuffle(rows)
    return rows
