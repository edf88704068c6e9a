"""The order in which preference pairs are trained: AP2O's error sliding window and adaptive error
replay, and the paper's baselines, as one pure, seeded, resumable object.

Everything here is plain Python over the answers the builder publishes (docs/method.md,
steps 3-6). Nothing imports torch: the schedule is tested in milliseconds and every
rank of a distributed run builds the same one from the same seed. The trainer's feed pulls pairs
one at a time with ``next_pair()`` and the quiz pushes its error counts with ``set_quiz()``; the
next pair already reflects them, which is what makes the replay *adaptive*.

What follows the official code (TsingZ0/AP2O) rather than the paper's prose, and why:

- **Window.** ``utils/collator.py`` (``pvf_iter_priority``) slices each problem's failed answers
  at the trainer's *fractional* epoch: ``[floor(e*n/T), floor((e+1)*n/T))`` with ``e =
  state.epoch``, widened to one answer when empty. With T = 200 epochs the window is about one
  answer wide and slides continuously. Here ``e = position / problems`` (the pair's place in the
  stream), which is the same slide counted per pair instead of per optimizer step, so the
  schedule does not depend on the batch size.
- **Order.** ``merge.py`` sorts a problem's failed answers by error frequency, rarest first, and
  keeps sample order within a type; L2H walks that list from the front, H2L (``..._reverse_...``)
  from the back. The frequencies are the ``notebook`` config's ranks (the dataset is the
  contract), per problem by default as ``merge.py`` counts them (``scope='problem'``), or over the
  split (``scope='global'``, the paper's wording).
- **Replay.** For every quizzed error type ``e`` the problem has answers of, add
  ``max(ceil(c_e/min_c), int(w*c_e/sum(c)))`` of them, drawn with replacement, where ``w`` is the
  window width and ``min_c``, ``sum(c)`` run over *all* quizzed types; the rejected answer is drawn
  from window + replay. The paper describes a replay as wide as the window; the code's is this,
  often wider. No replay before the first quiz of the model being trained.
- **Baselines.** DPO: every passed x failed pair, one epoch, shuffled (the Trainer's
  RandomSampler). Curri-DPO: the same pairs listed as ``curri_dpo_format`` lists them (problem by
  problem, rejected answers by error frequency) -- and then shuffled by the same RandomSampler,
  so the official Curri-DPO trains the DPO pair set in random order; ``shuffle=False`` keeps the
  curriculum order the paper describes. Dyn-DPO: a fresh random pair per problem per epoch.
  SFT: one random passed answer per problem per epoch (``sft_rows``).

Positions, not wall time, define the stream: the pair at position ``i`` depends only on the data,
the config and the quiz updates applied before ``i``. ``state_dict()`` captures what is needed to
continue (position, RNG, quiz counts, version) as JSON, so a resumed run yields exactly the pairs
an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from builder.dataset.pairs import PairsConfig
from builder.errors import UserError
from builder.flags import borrowed

# The schedules of the paper's Table 2 (SFT is not a pair schedule: see ``sft_rows``).
DPO, CURRI_DPO, DYN_DPO, AP2O_L2H, AP2O_H2L, SFT = "dpo", "curri-dpo", "dyn-dpo", "ap2o-l2h", "ap2o-h2l", "sft"
PAIR_METHODS = (DPO, CURRI_DPO, DYN_DPO, AP2O_L2H, AP2O_H2L)
METHODS = (SFT, *PAIR_METHODS)
STATIC_METHODS = (DPO, CURRI_DPO)
WINDOW_METHODS = (AP2O_L2H, AP2O_H2L)
L2H, H2L = "l2h", "h2l"
GLOBAL, PROBLEM = "global", "problem"

# T when the command line does not say: the official scripts' --n_epoch (pipe-qwen2.5-coder.sh)
DEFAULT_EPOCHS = {DPO: 1, CURRI_DPO: 1, DYN_DPO: 200, AP2O_L2H: 200, AP2O_H2L: 200, SFT: 200}

STATE_FORMAT = 2  # bump when ``state_dict`` changes shape


@dataclass
class ScheduleConfig:
    """How pairs are drawn from the dataset's answers. Defaults follow the official code."""

    method: str = field(default=AP2O_L2H, metadata={
        "help": f"training method: {', '.join(PAIR_METHODS)} (pair schedules) or sft (passed answers)"})
    scope: str = field(default=PROBLEM, metadata={
        "help": "whose error frequencies order the failed answers: 'problem' (each problem's own notebook "
                "counts, as the official merge.py ranks them) or 'global' (the split's, the paper's wording)"})
    order: str | None = field(default=None, metadata={
        "help": "'l2h' (rare error types first) or 'h2l'; default: from the method, l2h for the others"})
    replay: bool = field(default=True, metadata={
        "help": "adaptive error replay from quiz results (ap2o-*); false = the paper's no-replay ablation"})
    shuffle: bool = field(default=True, metadata={
        "help": "dpo/curri-dpo: shuffle the pair list every epoch, as the official Trainer's RandomSampler "
                "does; false keeps curri-dpo's curriculum order (problem by problem, rare errors first)"})
    # the builder's pairs filter, stated once (builder.dataset.pairs.PairsConfig): the trainer keeps
    # the problems the dataset's pairs config kept, by the same rule
    min_passed: int = borrowed(PairsConfig, "min_passed")
    min_failed: int = borrowed(PairsConfig, "min_failed")
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

    def pairs_config(self):
        """The builder's filter with these thresholds: the one function both halves use."""
        return PairsConfig(min_passed=self.min_passed, min_failed=self.min_failed)


def check_epochs(epochs: float | int) -> int:
    """T must be a whole number of epochs: the window's slices are defined per epoch."""
    if epochs is None or float(epochs) != int(epochs) or int(epochs) < 1:
        raise UserError(f"num_train_epochs must be a whole number >= 1 (T, the window's depth), got {epochs!r}")
    return int(epochs)


@dataclass(frozen=True)
class Problem:
    """One kept problem: its prompt, distinct passed answers, and distinct failed answers sorted
    rarest error type first (by the notebook's rank), sample order within a type."""

    problem_id: str
    prompt: Any  # str (completion formats) or list of chat messages
    passed: tuple[str, ...]
    failed: tuple[str, ...]
    failed_types: tuple[str, ...]

    def indices_of(self, error_type: str) -> list[int]:
        return [i for i, e in enumerate(self.failed_types) if e == error_type]


# --- building problems from the dataset ------------------------------------------------------------

def build_problems(answers: Sequence[Mapping[str, Any]], ranks: Mapping[tuple[str | None, str], int],
                   scope: str) -> list[Problem]:
    """Problems from ``builder.dataset.pairs.kept_answers`` rows (already de-duplicated and filtered) and
    the notebook's ranks: ``ranks[(problem_id, type)]`` for scope 'problem', ``ranks[(None, type)]``
    for 'global' (1 = most frequent). Failed answers go rarest type first (highest rank number),
    sample order within a type, as ``merge.py`` sorts them."""
    grouped: dict[str, dict[str, Any]] = {}
    for a in answers:
        pid = str(a["problem_id"])
        p = grouped.setdefault(pid, {"prompt": a["prompt_messages"] or a["prompt"], "passed": [], "failed": []})
        if a["passed"]:
            p["passed"].append(a["answer"])
        else:
            key = (pid if scope == PROBLEM else None, a["error_type"])
            if key not in ranks:
                where = f"problem {pid!r}" if scope == PROBLEM else "the split"
                raise UserError(f"notebook has no {scope}-scope count for error type {a['error_type']!r} of {where}; "
                                "was it counted from other samples?")
            p["failed"].append((-ranks[key], a["row"], a["answer"], a["error_type"]))
    problems = []
    for pid, p in grouped.items():
        failed = sorted(p["failed"], key=lambda f: (f[0], f[1]))
        prompt = [dict(m) for m in p["prompt"]] if isinstance(p["prompt"], list) else p["prompt"]
        problems.append(Problem(pid, prompt, tuple(p["passed"]), tuple(f[2] for f in failed),
                                tuple(f[3] for f in failed)))
    return problems


def window(position: int, problems: int, n: int, epochs: int) -> tuple[int, int]:
    """The official slice ``[floor(e*n/T), floor((e+1)*n/T))`` of a problem's ``n`` ordered failed
    answers at fractional epoch ``e = position / problems``, at least one answer wide."""
    total = problems * epochs
    lo = position * n // total
    hi = min(n, (position + problems) * n // total)
    return lo, max(hi, min(lo + 1, n))


def replay_counts(quiz: Mapping[str, int], present: Sequence[str], width: int) -> dict[str, int]:
    """Answers of each quizzed type to add to a window of ``width`` (official
    ``pvf_iter_priority``): ``max(ceil(c_e/min_c), int(width*c_e/sum(c)))`` for each type ``e`` in
    ``present`` (the problem has answers of it), ``min_c`` and ``sum(c)`` over every quizzed type."""
    counts = {e: int(c) for e, c in quiz.items() if int(c) > 0}
    if not counts:
        return {}
    min_c, total = min(counts.values()), sum(counts.values())
    return {e: max(math.ceil(counts[e] / min_c), width * counts[e] // total) for e in present if e in counts}


# --- the schedule ---------------------------------------------------------------------------------

class Schedule:
    """A finite stream of preference pairs over ``problems`` following ``config.method`` for
    ``epochs`` epochs (T).

    ``next_pair()`` returns the next pair (a dict of answer indices and metadata) or ``None`` at
    the end; ``example(pair)`` turns it into the TRL row. Length: ``T x kept problems`` for
    dyn-dpo and ap2o-*, ``T x every passed x failed pair`` for dpo and curri-dpo."""

    def __init__(self, problems: Sequence[Problem], config: ScheduleConfig, epochs: int) -> None:
        if config.method not in PAIR_METHODS:
            raise UserError(f"{config.method!r} is not a pair schedule (use sft_rows for sft)")
        if not problems:
            raise UserError(f"no problem has >= {config.min_passed} passed and >= {config.min_failed} distinct "
                            "failed answers: nothing to train on")
        self.problems = list(problems)
        self.config = config
        self.epochs = check_epochs(epochs)
        self._static: list[tuple[int, int, int]] | None = None
        self._types = [{e: prob.indices_of(e) for e in dict.fromkeys(prob.failed_types)} for prob in self.problems]
        self.reset()

    # -- sizes
    @property
    def per_epoch(self) -> int:
        """Pairs in one epoch: one per kept problem (dynamic), every pair (static)."""
        return self.available_pairs if self.config.method in STATIC_METHODS else len(self.problems)

    def __len__(self) -> int:
        return self.epochs * self.per_epoch

    @property
    def available_pairs(self) -> int:
        """Distinct (chosen, rejected) pairs the data holds: the denominator of sample efficiency."""
        return sum(len(p.passed) * len(p.failed) for p in self.problems)

    # -- state
    def reset(self) -> None:
        """Back to position 0, as freshly built (quiz counts forgotten)."""
        self.rng = random.Random(self.config.schedule_seed)
        self.position = 0       # pairs produced so far
        self.version = 0        # bumped by every quiz update
        self.quiz: dict[str, int] = {}
        self._order_epoch, self._order = -1, []

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly from here, as JSON-able data."""
        version, internal, gauss = self.rng.getstate()
        return {"format": STATE_FORMAT, "config": asdict(self.config), "epochs": self.epochs,
                "data": self.fingerprint(), "position": self.position, "version": self.version,
                "quiz": dict(self.quiz), "rng": [version, list(internal), gauss]}

    def fingerprint(self) -> str:
        """What the indices in a saved state point into: kept problems and their ordered answers."""
        h = hashlib.sha256()
        for p in self.problems:
            h.update(json.dumps([p.problem_id, p.passed, p.failed, p.failed_types]).encode())
        return h.hexdigest()[:16]

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise UserError(f"schedule state has format {state.get('format')!r}, this version reads {STATE_FORMAT}")
        if (state["config"] != asdict(self.config) or state["data"] != self.fingerprint()
                or state["epochs"] != self.epochs):
            raise UserError("schedule state was saved for another dataset or configuration; refusing to resume from it")
        self.position, self.version, self.quiz = state["position"], state["version"], dict(state["quiz"])
        v, internal, gauss = state["rng"]
        self.rng.setstate((v, tuple(internal), gauss))

    def snapshot(self) -> dict[str, Any]:
        """A cheap copy of the state for the feed's look-ahead bookkeeping (see ``trainer.feed``)."""
        return {"position": self.position, "version": self.version, "quiz": self.quiz, "rng": self.rng.getstate()}

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.position, self.version, self.quiz = snap["position"], snap["version"], snap["quiz"]
        self.rng.setstate(snap["rng"])

    # -- quiz
    def set_quiz(self, error_counts: Mapping[str, int]) -> None:
        """Take a quiz's error counts (error type -> failed answers of that type); the very next
        pair's replay uses them."""
        self.quiz = {str(e): int(c) for e, c in error_counts.items() if e and int(c) > 0}
        self.version += 1

    # -- pairs
    def __iter__(self) -> Iterator[dict[str, Any]]:
        while (pair := self.next_pair()) is not None:
            yield pair

    def next_pair(self) -> dict[str, Any] | None:
        if self.position >= len(self):
            return None
        epoch = self.position // self.per_epoch
        if self.config.method in STATIC_METHODS:
            p, c, r = self._static_pairs()[self._epoch_order(epoch)[self.position % self.per_epoch]]
            replayed = False
        else:
            p = self._epoch_order(epoch)[self.position % self.per_epoch]
            c, r, replayed = self._draw(p)
        self.position += 1
        return {"problem": p, "chosen": c, "rejected": r, "epoch": epoch, "version": self.version,
                "replayed": replayed, "error_type": self.problems[p].failed_types[r], "position": self.position - 1}

    def _epoch_order(self, epoch: int) -> list[int]:
        """This epoch's order of problems (dynamic) or of the static pair list: a shuffle seeded by
        (seed, epoch), so that it never depends on how many draws came before."""
        if epoch != self._order_epoch:
            order = list(range(self.per_epoch))
            if self.config.method not in STATIC_METHODS or self.config.shuffle:
                random.Random(f"{self.config.schedule_seed}:{epoch}").shuffle(order)
            self._order_epoch, self._order = epoch, order
        return self._order

    def _draw(self, p: int) -> tuple[int, int, bool]:
        prob = self.problems[p]
        chosen = self.rng.randrange(len(prob.passed))
        n = len(prob.failed)
        if self.config.method == DYN_DPO:
            return chosen, self.rng.randrange(n), False
        lo, hi = window(self.position, len(self.problems), n, self.epochs)
        if self.config.order == H2L:  # the official reverse walk: the same slice from the back
            lo, hi = n - hi, n - lo
        extra = replay_counts(self.quiz, list(self._types[p]), hi - lo) if self.config.replay else {}
        k = self.rng.randrange(hi - lo + sum(extra.values()))
        if k < hi - lo:
            return chosen, lo + k, False
        k -= hi - lo
        for e, count in extra.items():  # a replayed slot: an answer of type e, drawn with replacement
            if k < count:
                return chosen, self.rng.choice(self._types[p][e]), True
            k -= count
        raise AssertionError("unreachable: k is below the pool size")

    def _static_pairs(self) -> list[tuple[int, int, int]]:
        """Every passed x failed pair, problem by problem; rejected answers rarest error first for
        curri-dpo as ``curri_dpo_format`` sorts them (h2l: most frequent first, a stable sort)."""
        if self._static is None:
            self._static = []
            for p, prob in enumerate(self.problems):
                rejected = list(range(len(prob.failed)))
                if self.config.method == CURRI_DPO and self.config.order == H2L:
                    rank = {e: i for i, e in enumerate(reversed(list(self._types[p])))}
                    rejected.sort(key=lambda r: rank[prob.failed_types[r]])
                self._static += [(p, c, r) for c in range(len(prob.passed)) for r in rejected]
        return self._static

    # -- rows
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

    def pairs(self) -> list[dict[str, Any]]:
        """The whole stream from here on, without quiz updates (tests, benchmarks)."""
        return list(self)


def metadata(prob: Problem, pair: Mapping[str, Any]) -> dict[str, Any]:
    """Columns that describe a pair for logs and sample efficiency. They are not model inputs:
    transformers' Trainer removes every column outside the model's signature before collating."""
    return {"problem_id": prob.problem_id, "rejected_error_type": pair["error_type"],
            "ap2o_epoch": pair["epoch"], "ap2o_version": pair["version"], "ap2o_position": pair["position"],
            "ap2o_replayed": pair["replayed"], "ap2o_chosen": pair["chosen"], "ap2o_rejected": pair["rejected"]}


def sft_rows(problems: Sequence[Problem], epochs: int, seed: int) -> list[dict[str, Any]]:
    """The official SFT baseline's data (``select_pass`` + ``MySFTCollator``): every epoch, each
    kept problem once, in a seeded shuffled order, with one of its passed answers drawn at random."""
    rng = random.Random(seed)
    rows = []
    for epoch in range(check_epochs(epochs)):
        order = list(range(len(problems)))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        for p in order:
            prob = problems[p]
            answer = prob.passed[rng.randrange(len(prob.passed))]
            if isinstance(prob.prompt, str):
                rows.append({"prompt": prob.prompt, "completion": answer})
            else:
                rows.append({"prompt": list(prob.prompt), "completion": [{"role": "assistant", "content": answer}]})
    return rows
