"""The order in which preference pairs are trained: AP2O's error sliding window and adaptive error
replay, and the paper's baselines, as one pure, seeded, resumable object.

Everything here is plain Python over the answers the builder publishes. Nothing imports torch: the
schedule is tested in milliseconds and every rank of a distributed run builds the same one from
the same seed. The trainer's feed pulls pairs one at a time with ``next_pair()`` and the quiz
pushes its error counts with ``set_quiz()``.

The stream is the official code's (TsingZ0/AP2O), position by position, in distribution:

- **Problems and lists.** The kept problems and their answers are ``builder.dataset.pairs``'s
  (``merge.py``'s filter and de-duplication). A problem's failed answers are sorted by their error
  type's count, rarest first, *stable*: types of equal count keep sample order, interleaved, as
  ``merge.py`` L85-89 sorts them; its passed answers shortest first. The counts are the
  ``notebook`` config's (the dataset is the contract), per problem as ``merge.py`` L41 counts them
  (``scope='problem'``) or over the split (``scope='global'``, the paper's wording).
- **Epochs and steps.** The official code trains a map-style dataset of the kept problems with the
  HF Trainer: every epoch a fresh permutation (``RandomSampler``), cut into batches of
  ``per_device_train_batch_size``, the last one short; on several processes accelerate's
  ``BatchSamplerShard`` deals the batches to the ranks and fills the epoch's last round from the
  epoch's first problems, so every rank gets full batches. ``Batching`` says how; one epoch here
  is exactly those positions (``epoch_length``), and the feed ends its iterator at each epoch so
  that the Trainer makes the same steps (``steps_per_epoch``).
- **Window.** ``utils/collator.py`` (``pvf_iter_priority``, L227-241) slices a problem's ``n``
  failed answers at the trainer's fractional epoch ``e = state.epoch`` read *when the batch is
  collated*: ``[floor(e*n/T), floor((e+1)*n/T))``, widened to one answer when empty. The Trainer
  sets ``state.epoch = epoch + steps done / steps per epoch`` after each optimizer step and the
  data loader collates one batch ahead, so micro-batch ``j`` of an epoch is drawn when ``j - 1``
  of its batches are trained (``fractional_epoch``); the arithmetic is the code's floating point. H2L
  (``pvf_iter_reverse_priority``, L308-324) takes the same slice from the back; where the
  official slice runs past the list (small T, last epoch) its start wraps around and the window
  comes out empty, so here the slice is clamped to the list first (the one official bug avoided).
  ``continuous_slide`` instead moves the window per pair (``e = epoch + place in epoch / epoch
  length``), not official.
- **Replay** (L243-285). For every quizzed error type ``e`` the problem has answers of, add
  ``max(ceil(c_e/min_c), int(w*(c_e/sum(c))))`` of them, drawn with replacement, where ``w`` is
  the window width and ``min_c``, ``sum(c)`` run over *all* quizzed types; the rejected answer is
  drawn from window + replay. No replay before the first quiz. A quiz at the end of epoch E
  (``utils/trainer.py`` L181-221 sets ``val_metrics`` during the Trainer's epoch-end evaluation)
  reaches every pair of epoch E+1.
- **Baselines.** DPO: every passed x failed pair, one epoch, shuffled (the Trainer's
  RandomSampler). Curri-DPO: the same pairs listed as ``curri_dpo_format`` lists them (problem by
  problem, rejected answers by error frequency) -- and then shuffled by the same RandomSampler,
  so the official Curri-DPO trains the DPO pair set in random order; ``shuffle=False`` keeps the
  curriculum order the paper describes. Dyn-DPO (``pvf``): a fresh random pair per problem per
  epoch. SFT (``select_pass`` + ``MySFTCollator``): a random passed answer per problem per epoch.

Positions, not wall time, define the stream: the pair at position ``i`` depends only on the data,
the config, the batching and the quiz updates applied before ``i``. ``state_dict()`` captures what
is needed to continue (position, RNG, quiz counts, version) as JSON, so a resumed run yields
exactly the pairs an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from builder import PairsConfig
from builder.errors import UserError
from builder.flags import borrowed

# The schedules of the paper's Table 2
DPO, CURRI_DPO, DYN_DPO, AP2O_L2H, AP2O_H2L, SFT = "dpo", "curri-dpo", "dyn-dpo", "ap2o-l2h", "ap2o-h2l", "sft"
PAIR_METHODS = (DPO, CURRI_DPO, DYN_DPO, AP2O_L2H, AP2O_H2L)
METHODS = (SFT, *PAIR_METHODS)
STATIC_METHODS = (DPO, CURRI_DPO)
WINDOW_METHODS = (AP2O_L2H, AP2O_H2L)
L2H, H2L = "l2h", "h2l"
GLOBAL, PROBLEM = "global", "problem"

# T when the command line does not say: the official scripts' --n_epoch (pipe-qwen2.5-coder.sh)
DEFAULT_EPOCHS = {DPO: 1, CURRI_DPO: 1, DYN_DPO: 200, AP2O_L2H: 200, AP2O_H2L: 200, SFT: 200}

STATE_FORMAT = 3  # bump when ``state_dict`` changes shape
# the builder's pairs filter and de-duplication, stated once (builder.dataset.pairs.PairsConfig)
FILTER_FIELDS = ("min_passed", "min_failed", "dedup", "dedup_per_problem", "dedup_ignore_trailing_whitespace")


@dataclass
class ScheduleConfig:
    """How pairs are drawn from the dataset's answers. Defaults follow the official code."""

    method: str = field(default=AP2O_L2H, metadata={
        "help": f"training method: {', '.join(PAIR_METHODS)} (pair schedules) or sft (passed answers)"})
    scope: str = field(default=PROBLEM, metadata={
        "help": "whose error counts order the failed answers: 'problem' (each problem's own, as the official "
                "merge.py L41 counts them) or 'global' (the split's, the paper's wording)"})
    order: str | None = field(default=None, metadata={
        "help": "'l2h' (rare error types first) or 'h2l'; default: from the method, l2h for the others"})
    replay: bool = field(default=True, metadata={
        "help": "adaptive error replay from quiz results (ap2o-*); false = the paper's no-replay ablation"})
    shuffle: bool = field(default=True, metadata={
        "help": "dpo/curri-dpo: shuffle the pair list every epoch, as the official Trainer's RandomSampler "
                "does; false keeps curri-dpo's curriculum order (problem by problem, rare errors first)"})
    continuous_slide: bool = field(default=False, metadata={
        "help": "move the window per pair (fractional epoch = epoch + place in the epoch / its length) instead of "
                "per micro-batch as the official collator reads trainer.state.epoch (utils/collator.py L148-149, "
                "L233-236; transformers Trainer: state.epoch = epoch + steps / steps per epoch); not official"})
    sft_official: bool = field(default=True, metadata={
        "help": "sft: as the official code runs it (train.py L148-176): the text '### Question: {prompt}\\n ### "
                "Answer: {answer}' (utils/collator.py L30-39), loss on the answer, the best checkpoint by the "
                "validation answers' eval_loss, no quiz. false: the dataset's prompt and answer, as the DPO "
                "methods see them, and the quiz picks the best checkpoint"})
    min_passed: int = borrowed(PairsConfig, "min_passed")
    min_failed: int = borrowed(PairsConfig, "min_failed")
    dedup: bool = borrowed(PairsConfig, "dedup")
    dedup_per_problem: bool = borrowed(PairsConfig, "dedup_per_problem")
    dedup_ignore_trailing_whitespace: bool = borrowed(PairsConfig, "dedup_ignore_trailing_whitespace")
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

    def pairs_config(self) -> PairsConfig:
        """The builder's filter with these settings: the one function both halves use."""
        return PairsConfig(**{name: getattr(self, name) for name in FILTER_FIELDS})


def check_epochs(epochs: float) -> int:
    """T must be a whole number of epochs: the window's slices are defined per epoch."""
    if epochs is None or float(epochs) != int(epochs) or int(epochs) < 1:
        raise UserError(f"num_train_epochs must be a whole number >= 1 (T, the window's depth), got {epochs!r}")
    return int(epochs)


@dataclass(frozen=True)
class Batching:
    """How the Trainer cuts an epoch into optimizer steps: which positions share a micro-batch, and
    so the fractional epoch each is drawn at and where each epoch's last, short step falls."""

    per_device: int = 1    # per_device_train_batch_size
    processes: int = 1     # world size
    accumulation: int = 1  # gradient_accumulation_steps

    def __post_init__(self) -> None:
        if min(self.per_device, self.processes, self.accumulation) < 1:
            raise UserError(f"batch sizes must be >= 1, got {self}")

    @classmethod
    def of(cls, args: Any) -> Batching:
        """From ``TrainingArguments``."""
        return cls(args.per_device_train_batch_size, max(1, args.world_size), args.gradient_accumulation_steps)

    @property
    def round(self) -> int:
        """Positions one micro-batch of every rank takes: ``per_device x processes``."""
        return self.per_device * self.processes


def fractional_epoch(epoch: int, micro_batch: int, micro_batches: int, accumulation: int = 1) -> float:
    """``trainer.state.epoch`` when micro-batch ``micro_batch`` of ``epoch`` is collated.

    The Trainer sets ``state.epoch = epoch + (step + 1) / steps_in_epoch`` after each optimizer
    step (transformers 4.51.3 ``trainer.py`` L2625); each step fetches its ``accumulation``
    micro-batches (``get_batch_samples``, L5237) and accelerate's ``DataLoaderShard`` collates one
    batch ahead (accelerate 1.6.0 ``data_loader.py`` L564), so micro-batch ``j >= 1`` is collated
    while the step holding micro-batch ``j - 1`` fetches, after ``accumulation x floor((j - 1) /
    accumulation)`` micro-batches are trained; ``j = 0`` at the epoch's start."""
    done = accumulation * ((micro_batch - 1) // accumulation) if micro_batch > 0 else 0
    return epoch + done / micro_batches


@dataclass(frozen=True)
class Problem:
    """One kept problem: its prompt, distinct passed answers (shortest first) and distinct failed
    answers sorted rarest error type first, sample order on ties, as ``merge.py`` sorts them."""

    problem_id: str
    prompt: Any  # str (completion formats) or list of chat messages
    passed: tuple[str, ...]
    failed: tuple[str, ...]
    failed_types: tuple[str, ...]

    def indices_of(self, error_type: str) -> list[int]:
        return [i for i, e in enumerate(self.failed_types) if e == error_type]

    @property
    def prompt_text(self) -> str:
        """The prompt as text: the string, or the last user message of a conversation."""
        if isinstance(self.prompt, str):
            return self.prompt
        return next(m["content"] for m in reversed(self.prompt) if m["role"] == "user")


# --- building problems from the dataset ------------------------------------------------------------

def build_problems(answers: Sequence[Mapping[str, Any]], counts: Mapping[tuple[str | None, str], int],
                   scope: str) -> list[Problem]:
    """Problems from ``builder.dataset.pairs.kept_answers`` rows (already de-duplicated and
    filtered) and the notebook's counts: ``counts[(problem_id, type)]`` for scope 'problem',
    ``counts[(None, type)]`` for 'global'. Failed answers go by count, rarest first, in a *stable*
    sort: types of equal count keep sample order (``merge.py`` L85-89 sorts by frequency alone).
    Passed answers go shortest first, as L78-89 sort them."""
    grouped: dict[str, dict[str, Any]] = {}
    for a in answers:
        pid = str(a["problem_id"])
        p = grouped.setdefault(pid, {"prompt": a["prompt_messages"] or a["prompt"], "passed": [], "failed": []})
        if a["passed"]:
            p["passed"].append((len(a["answer"]), a["row"], a["answer"]))
        else:
            key = (pid if scope == PROBLEM else None, a["error_type"])
            if key not in counts:
                where = f"problem {pid!r}" if scope == PROBLEM else "the split"
                raise UserError(f"notebook has no {scope}-scope count for error type {a['error_type']!r} of {where}; "
                                "was it counted from other samples?")
            p["failed"].append((counts[key], a["row"], a["answer"], a["error_type"]))
    problems = []
    for pid, p in grouped.items():
        failed = sorted(p["failed"], key=lambda f: (f[0], f[1]))
        prompt = [dict(m) for m in p["prompt"]] if isinstance(p["prompt"], list) else p["prompt"]
        problems.append(Problem(pid, prompt, tuple(a for *_, a in sorted(p["passed"])),
                                tuple(f[2] for f in failed), tuple(f[3] for f in failed)))
    return problems


def window(epoch: float, n: int, epochs: int) -> tuple[int, int]:
    """``pvf_iter_priority``'s slice of ``n`` ordered failed answers at fractional epoch ``epoch``
    of ``epochs`` (``utils/collator.py`` L233-241, its floating point): ``[floor(e*(n/T)),
    floor((e+1)*(n/T)))``, one answer wide when that is empty, and ending at the list's end (numpy
    slicing clamps the official end; the reverse walk takes this clamped slice from the back)."""
    per_epoch = n / epochs
    lo = min(math.floor(epoch * per_epoch), n - 1)
    hi = math.floor((epoch + 1) * per_epoch)
    if hi == lo:
        hi = min(lo + 1, n)
    return lo, min(hi, n)


def replay_counts(quiz: Mapping[str, int], present: Sequence[str], width: int) -> dict[str, int]:
    """Answers of each quizzed type to add to a window of ``width`` (``utils/collator.py``
    L243-285, its floating point): ``max(ceil(c_e/min_c), int(width*(c_e/sum(c))))`` for each
    type ``e`` in ``present`` (the problem has answers of it), ``min_c`` and ``sum(c)`` over every
    quizzed type."""
    counts = {e: int(c) for e, c in quiz.items() if int(c) > 0}
    if not counts:
        return {}
    least, total = min(counts.values()), sum(counts.values())
    return {e: max(math.ceil(counts[e] / least), int(width * (counts[e] / total))) for e in present if e in counts}


# --- the schedule ---------------------------------------------------------------------------------

class Schedule:
    """A finite stream over ``problems`` following ``config.method`` for ``epochs`` epochs (T), cut
    into epochs and steps as the Trainer cuts the official dataset under ``batching``.

    ``next_pair()`` returns the next pair (a dict of answer indices and metadata) or ``None`` at
    the end; ``example(pair)`` turns it into the TRL row. An epoch holds ``items_per_epoch`` items
    -- one per kept problem (dyn-dpo, ap2o-*, sft) or every passed x failed pair (dpo, curri-dpo)
    -- padded on several processes to whole rounds (``epoch_length``)."""

    def __init__(self, problems: Sequence[Problem], config: ScheduleConfig, epochs: int,
                 batching: Batching | None = None) -> None:
        if not problems:
            raise UserError(f"no problem has >= {config.min_passed} passed and >= {config.min_failed} distinct "
                            "failed answers: nothing to train on")
        self.problems = list(problems)
        self.config = config
        self.epochs = check_epochs(epochs)
        self.batching = batching or Batching()
        self._static: list[tuple[int, int, int]] | None = None
        self._types = [{e: prob.indices_of(e) for e in dict.fromkeys(prob.failed_types)} for prob in self.problems]
        self.reset()

    # -- sizes
    @property
    def items_per_epoch(self) -> int:
        """What one epoch of the official dataset holds: every pair (static), one item per kept problem."""
        return self.available_pairs if self.config.method in STATIC_METHODS else len(self.problems)

    @property
    def epoch_length(self) -> int:
        """Positions per epoch: the items, and on several processes the copies of the epoch's first
        items that fill its last round (accelerate 1.6.0 ``BatchSamplerShard._iter_with_no_split``,
        ``data_loader.py`` L217-263, ``even_batches``)."""
        items, b = self.items_per_epoch, self.batching
        return items if b.processes == 1 else self.micro_batches_per_epoch * b.round

    @property
    def micro_batches_per_epoch(self) -> int:
        """Micro-batches per rank per epoch (``len(train_dataloader)``): the last one short on one process."""
        return -(-self.items_per_epoch // self.batching.round)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch: the Trainer steps at each epoch's end even mid-accumulation."""
        return -(-self.micro_batches_per_epoch // self.batching.accumulation)

    def __len__(self) -> int:
        return self.epochs * self.epoch_length

    @property
    def max_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def position_after(self, steps: int) -> int:
        """Positions the optimizer has consumed after ``steps`` optimizer steps."""
        epoch, step = divmod(steps, self.steps_per_epoch)
        per_step = self.batching.accumulation * self.batching.round
        return min(len(self), epoch * self.epoch_length + min(step * per_step, self.epoch_length))

    def epoch_start(self, position: int) -> int:
        """The first position of the epoch that ``position`` belongs to."""
        return position - position % self.epoch_length

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
                "batching": asdict(self.batching), "data": self.fingerprint(), "position": self.position,
                "version": self.version, "quiz": dict(self.quiz), "rng": [version, list(internal), gauss]}

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
        if state["batching"] != asdict(self.batching):
            raise UserError(f"schedule state was saved for batches {state['batching']}, this run has "
                            f"{asdict(self.batching)}; resume with the same batch size, processes and accumulation")
        self.position, self.version, self.quiz = state["position"], state["version"], dict(state["quiz"])
        v, internal, gauss = state["rng"]
        self.rng.setstate((v, tuple(internal), gauss))

    def snapshot(self) -> dict[str, Any]:
        """A cheap copy of the state for the feed's bookkeeping (see ``trainer.feed``)."""
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

    def slot(self, position: int) -> tuple[int, int, float]:
        """``(epoch, item, fractional epoch)`` of a position: which item of the epoch's shuffled
        order it holds (a padding position repeats the epoch's first items, cycling) and the
        fractional epoch its window is cut at."""
        length, items, b = self.epoch_length, self.items_per_epoch, self.batching
        epoch, i = divmod(position, length)
        order = self._epoch_order(epoch)
        item = order[i] if i < items else order[(i - items) % min(items, b.round)]
        if self.config.continuous_slide:
            fraction = epoch + i / length
        else:
            fraction = fractional_epoch(epoch, i // b.round, self.micro_batches_per_epoch, b.accumulation)
        return epoch, item, fraction

    def next_pair(self) -> dict[str, Any] | None:
        if self.position >= len(self):
            return None
        epoch, item, fraction = self.slot(self.position)
        replayed = False
        if self.config.method in STATIC_METHODS:
            p, c, r = self._static_pairs()[item]
        elif self.config.method == SFT:
            p, c, r = item, self.rng.randrange(len(self.problems[item].passed)), None
        else:
            p = item
            c, r, replayed = self._draw(p, fraction)
        self.position += 1
        return {"problem": p, "chosen": c, "rejected": r, "epoch": epoch, "fractional_epoch": fraction,
                "version": self.version, "replayed": replayed, "position": self.position - 1,
                "error_type": None if r is None else self.problems[p].failed_types[r]}

    def _epoch_order(self, epoch: int) -> list[int]:
        """This epoch's order of problems (dynamic) or of the static pair list: a shuffle seeded by
        (seed, epoch), so that it never depends on how many draws came before."""
        if epoch != self._order_epoch:
            order = list(range(self.items_per_epoch))
            if self.config.method not in STATIC_METHODS or self.config.shuffle:
                random.Random(f"{self.config.schedule_seed}:{epoch}").shuffle(order)
            self._order_epoch, self._order = epoch, order
        return self._order

    def pool(self, p: int, fraction: float) -> tuple[int, int, dict[str, int]]:
        """What problem ``p``'s rejected answer is drawn from at fractional epoch ``fraction``: the
        window ``[lo, hi)`` of its failed list and the replayed answers per error type."""
        prob = self.problems[p]
        n = len(prob.failed)
        lo, hi = window(fraction, n, self.epochs)
        if self.config.order == H2L:  # the official reverse walk: the same slice from the back
            lo, hi = n - hi, n - lo
        extra = replay_counts(self.quiz, list(self._types[p]), hi - lo) if self.config.replay else {}
        return lo, hi, extra

    def _draw(self, p: int, fraction: float) -> tuple[int, int, bool]:
        prob = self.problems[p]
        chosen = self.rng.randrange(len(prob.passed))
        if self.config.method == DYN_DPO:
            return chosen, self.rng.randrange(len(prob.failed)), False
        lo, hi, extra = self.pool(p, fraction)
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
        prompt is a message list) plus metadata columns the collator drops before the model; for
        sft, ``prompt``/``completion`` (``sft_example``)."""
        prob = self.problems[pair["problem"]]
        if self.config.method == SFT:
            return sft_example(prob, prob.passed[pair["chosen"]], official=self.config.sft_official)
        chosen, rejected = prob.passed[pair["chosen"]], prob.failed[pair["rejected"]]
        if isinstance(prob.prompt, str):
            prompt = prob.prompt
        else:
            prompt = list(prob.prompt)
            chosen = [{"role": "assistant", "content": chosen}]
            rejected = [{"role": "assistant", "content": rejected}]
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected, **metadata(prob, pair)}

    def pair_key(self, pair: Mapping[str, Any]) -> tuple[int, int, int]:
        return pair["problem"], pair["chosen"], -1 if pair["rejected"] is None else pair["rejected"]

    def pairs(self) -> list[dict[str, Any]]:
        """The whole stream from here on, without quiz updates (tests, benchmarks)."""
        return list(self)


def metadata(prob: Problem, pair: Mapping[str, Any]) -> dict[str, Any]:
    """Columns that describe a pair for logs and sample efficiency. They are not model inputs:
    transformers' Trainer removes every column outside the model's signature before collating."""
    return {"problem_id": prob.problem_id, "rejected_error_type": pair["error_type"],
            "ap2o_epoch": pair["epoch"], "ap2o_fractional_epoch": pair["fractional_epoch"],
            "ap2o_version": pair["version"], "ap2o_position": pair["position"],
            "ap2o_replayed": pair["replayed"], "ap2o_chosen": pair["chosen"], "ap2o_rejected": pair["rejected"]}


SFT_QUESTION, SFT_ANSWER = "### Question: {prompt}\n ### Answer:", " {answer}"


def sft_example(prob: Problem, answer: str, *, official: bool = True) -> dict[str, Any]:
    """An SFT row. Official (``utils/collator.py`` L30-39 ``sft_format``, with the response
    template ``' ### Answer:'`` of ``train.py`` L152-156 masking the question): the text
    ``### Question: {prompt}\n ### Answer: {answer}``, as TRL's prompt/completion pair so the loss
    is on the answer alone. Otherwise the dataset's prompt and the answer as they were sampled."""
    if official:
        return {"prompt": SFT_QUESTION.format(prompt=prob.prompt_text), "completion": SFT_ANSWER.format(answer=answer)}
    if isinstance(prob.prompt, str):
        return {"prompt": prob.prompt, "completion": answer}
    return {"prompt": list(prob.prompt), "completion": [{"role": "assistant", "content": answer}]}
