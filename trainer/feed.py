"""The schedule as a ``datasets.IterableDataset`` that TRL trains on, lazily, one pair at a time.

Why a generator and not a pre-built dataset: AP2O's data depends on the model. A quiz at step
``k`` changes which failed answers are replayed, and the pairs after it must show that. So pairs
are made only when the data loader asks for them; the loader runs in the training process
(``dataloader_num_workers=0``: a worker process would hold its own copy of the schedule that no
quiz reaches) and reads at most one micro-batch ahead (accelerate's look-ahead), so a quiz's change
reaches the data within one micro-batch.

Three things the feed keeps track of, by *position* in the stream:

- a state snapshot before every pair still in flight, so a checkpoint can save the schedule as it
  was after the last pair the optimizer actually consumed, not after the look-ahead;
- quiz updates applied after that point (``pending``), replayed at their positions on resume;
- the key of every pair, for sample efficiency (distinct pairs consumed vs. available).

TRL's ``DPOTrainer.__init__`` probes the dataset with ``next(iter(...))`` several times; each probe
runs our generator. ``rewind()`` (called at train begin by ``FeedCallback``) undoes them.

Consumed pairs are counted as ``steps x examples_per_step``. TRL drops an example whose prompt
alone fills ``max_length``; such a pair is made but never consumed, which would shift that count,
so keep ``max_length`` above the longest prompt (it is, by far, for MBPP/HumanEval-sized prompts).
"""

from __future__ import annotations

import json
import pathlib
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from transformers import TrainerCallback

from builder.errors import UserError
from builder.io import atomic_path
from trainer.schedule import Schedule

STATE_FILE = "ap2o_schedule.json"
EFFICIENCY_FILE = "sample_efficiency.json"
METADATA_COLUMNS = ("problem_id", "rejected_error_type", "ap2o_epoch", "ap2o_version", "ap2o_position",
                    "ap2o_replayed", "ap2o_chosen", "ap2o_rejected")


class Feed:
    """Wraps a ``Schedule``: yields TRL rows, records positions, snapshots and quiz events."""

    def __init__(self, schedule: Schedule, *, keep: int = 4096) -> None:
        """``keep``: snapshots kept behind the newest pair; the look-ahead of the data loader
        (at most ``(gradient_accumulation_steps + 1) x batch x ranks`` pairs) must fit in it."""
        self.schedule = schedule
        self.keep = keep
        self._start = schedule.snapshot()     # where this training run starts (0, or a resumed state)
        self._snaps: dict[int, dict[str, Any]] = {}
        self.keys: list[tuple[int, int, int]] = []  # pair key at each position since 0
        self.events: list[tuple[int, dict[str, int]]] = []  # (position, quiz counts) in order
        self._pending: list[tuple[int, dict[str, int]]] = []
        self._start_pending: list[tuple[int, dict[str, int]]] = []
        self.versions: list[int] = []  # schedule version at each position (tests, logs)
        # until training begins, every new iteration (TRL's start-up probes) starts from the run's
        # start: three probes of a schedule shorter than three pairs would otherwise exhaust it
        self.started = False

    # -- the stream
    def generate(self) -> Iterator[dict[str, Any]]:
        """The generator behind the IterableDataset: continues the schedule from where it is
        (from the run's start while training has not begun)."""
        if not self.started:
            self.rewind()
        sched = self.schedule
        while True:
            while self._pending and self._pending[0][0] <= sched.position:
                event = self._pending.pop(0)  # a quiz of the run we resume, at its own position
                self.events.append(event)
                sched.set_quiz(event[1])
            snap = sched.snapshot()
            pair = sched.next_pair()
            if pair is None:
                return
            pos = pair["position"]
            self._snaps[pos] = snap
            self._snaps.pop(pos - self.keep, None)  # bounded: a snapshot holds the RNG state (~5 KB)
            del self.keys[pos:], self.versions[pos:]
            self.keys.append(sched.pair_key(pair))
            self.versions.append(pair["version"])
            yield sched.example(pair)

    def dataset(self):
        """A ``datasets.IterableDataset`` over ``generate``. Distributed, accelerate *dispatches* an
        IterableDataset's batches (its default): rank 0 reads the stream, one global batch at a time,
        and sends every rank its slice (pairs ``k*W + r`` of each global batch go to rank ``r``); the
        other ranks' feeds stay idle but receive the same quiz updates, so any rank could take over
        a resume. ``test_each_rank_trains_its_own_share_of_the_schedule`` checks this."""
        from datasets import IterableDataset

        return IterableDataset.from_generator(_generate, gen_kwargs={"feed": _Ref(self)})

    def rewind(self) -> None:
        """Back to the start of this run, forgetting whatever probes pulled."""
        self.schedule.restore(self._start)
        self._pending = list(self._start_pending)
        self._snaps.clear()
        self.events = [e for e in self.events if e[0] <= self._start["position"]]

    # -- quiz
    def push_quiz(self, error_counts: Mapping[str, int]) -> None:
        """Apply a quiz now: the next pair generated is the first to see it."""
        counts = {str(e): int(c) for e, c in error_counts.items()}
        self.events.append((self.schedule.position, counts))
        self.schedule.set_quiz(counts)

    @property
    def position(self) -> int:
        return self.schedule.position

    # -- checkpoints
    def state_at(self, consumed: int) -> dict[str, Any]:
        """The schedule state right after ``consumed`` pairs, plus the quiz updates that the
        look-ahead already applied beyond it, and the keys consumed (sample efficiency)."""
        if consumed == self.schedule.position:
            state = self.schedule.state_dict()
        elif consumed in self._snaps:
            live = self.schedule.snapshot()
            self.schedule.restore(self._snaps[consumed])
            state = self.schedule.state_dict()
            self.schedule.restore(live)
        else:
            raise RuntimeError(f"no schedule snapshot at position {consumed} (generated: {self.schedule.position}, "
                               f"kept: the last {self.keep}); the data loader reads further ahead than Feed(keep=...)")
        self._prune(consumed)
        # an update pushed at position p precedes pair p, so the snapshot at p already holds it
        pending = [(p, c) for p, c in self.events if p > consumed]
        return {"schedule": state, "pending": pending, "events": [e for e in self.events if e[0] <= consumed],
                "keys": [list(k) for k in self.keys[:consumed]]}

    def load_state(self, saved: Mapping[str, Any]) -> None:
        """Continue from a ``state_at`` dict: the run starts there, quiz updates replay at their
        positions, and sample efficiency keeps counting from the saved keys."""
        self.schedule.load_state_dict(saved["schedule"])
        self._start = self.schedule.snapshot()
        self._start_pending = [(int(p), dict(c)) for p, c in saved["pending"]]
        self._pending = list(self._start_pending)
        self.events = [(int(p), dict(c)) for p, c in saved["events"]]
        self.keys = [tuple(k) for k in saved["keys"]]
        self.versions = [None] * len(self.keys)  # not saved: only tests and logs read them
        self._snaps.clear()

    def save(self, folder: str | pathlib.Path, consumed: int) -> pathlib.Path:
        path = pathlib.Path(folder) / STATE_FILE
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.state_at(consumed)))
        return path

    def load(self, folder: str | pathlib.Path) -> None:
        path = pathlib.Path(folder) / STATE_FILE
        try:
            self.load_state(json.loads(path.read_text()))
        except FileNotFoundError:
            raise UserError(f"{path}: no schedule state in this checkpoint; cannot resume the pair stream exactly") from None
        except (json.JSONDecodeError, KeyError) as e:
            raise UserError(f"{path}: unreadable schedule state ({e})") from None

    def _prune(self, consumed: int) -> None:
        for pos in [p for p in self._snaps if p < consumed]:
            del self._snaps[pos]

    # -- sample efficiency
    def efficiency(self, consumed: int) -> dict[str, Any]:
        """Distinct pairs the optimizer saw vs. the pairs the data holds (the paper's sample
        efficiency): AP2O should reach its result with fewer distinct pairs."""
        consumed = min(consumed, len(self.keys))
        distinct = len(set(self.keys[:consumed]))
        available = self.schedule.available_pairs
        return {"pairs_consumed": consumed, "distinct_pairs_consumed": distinct, "pairs_available": available,
                "fraction_of_available": distinct / available if available else 0.0,
                "method": self.schedule.config.method}


_LIVE: weakref.WeakValueDictionary[int, Feed] = weakref.WeakValueDictionary()


class _Ref:
    """Hands the feed to ``from_generator`` without ``datasets`` pickling the whole schedule to
    fingerprint ``gen_kwargs``: a reference pickles as the feed's id, looked up in this process."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        _LIVE[id(feed)] = feed

    def __reduce__(self):
        return (_lookup, (id(self.feed),))


def _lookup(key: int) -> _Ref:
    return _Ref(_LIVE[key])


def _generate(feed: _Ref) -> Iterator[dict[str, Any]]:
    yield from feed.feed.generate()


def broadcast(obj: Any) -> Any:
    """``obj`` from rank 0 on every rank (identity when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def examples_per_step(args) -> int:
    """Pairs the stream advances per optimizer step: the global batch, which rank 0 reads and
    accelerate dispatches in slices (see ``Feed.dataset``)."""
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)


def consumed_pairs(feed: Feed, args, step: int) -> int:
    """Pairs the optimizer has consumed after ``step`` steps: whole global batches, except that
    the last batch of a schedule may be short (the stream ends inside it)."""
    return min(step * examples_per_step(args), len(feed.schedule))


class FeedCallback(TrainerCallback):
    """Rewinds the feed at train begin (undoing TRL's probes, or loading the checkpoint's schedule
    state on resume), saves the state with every checkpoint, and writes the run's sample
    efficiency (``sample_efficiency.json``) at the end."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed

    def on_train_begin(self, args, state, control, **kwargs):
        mine = self.feed.schedule.fingerprint()
        if broadcast(mine) != mine:  # every rank must walk the same stream in lockstep
            raise UserError(f"rank {args.process_index} built another schedule than rank 0 "
                            "(different data or options); every rank must read the same dataset")
        if state.global_step > 0:
            self.feed.load(pathlib.Path(args.output_dir) / f"checkpoint-{state.global_step}")
        else:
            self.feed.rewind()
        self.feed.started = True

    def on_save(self, args, state, control, **kwargs):
        ckpt = pathlib.Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir() and state.is_world_process_zero:
            self.feed.save(ckpt, consumed_pairs(self.feed, args, state.global_step))

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            eff = self.feed.efficiency(consumed_pairs(self.feed, args, state.global_step))
            with atomic_path(pathlib.Path(args.output_dir) / EFFICIENCY_FILE) as tmp:
                tmp.write_text(json.dumps(eff, indent=2) + "\n")
