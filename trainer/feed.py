"""The schedule as a ``datasets.IterableDataset`` that TRL trains on, lazily, one pair at a time.

Why a generator and not a pre-built dataset: AP2O's data depends on the model. A quiz changes
which failed answers are replayed, and the pairs after it must show that. So pairs are made only
when the data loader asks for them; the loader runs in the training process
(``dataloader_num_workers=0``: a worker process would hold its own copy of the schedule that no
quiz reaches).

Why one epoch per iterator: the official code trains a map-style dataset, and the HF Trainer makes
every epoch its own pass with its own last, possibly short, batch; the quiz (the Trainer's
evaluation) runs between two passes, so the whole next epoch sees it. Here the generator ends at
each epoch's end (``Schedule.epoch_length``), ``attach`` gives the Trainer's dataset that length,
and the Trainer does the rest exactly as for the official dataset: the epoch's steps, the short
last batch, the gradient step at the epoch's end, ``state.epoch``, and the quiz in between
(``trainer.schedule`` has the details and ``tests/test_official_stream.py`` the comparison).

What the feed keeps track of, by *position* in the stream:

- the state at the start of the epoch being generated: a checkpoint saves it, and a resumed run
  makes that epoch again from its start while the Trainer skips the batches it already trained
  (its own resume, ``ignore_data_skip=False``), so the steps and the pairs are the uninterrupted
  run's;
- quiz updates (``events``), replayed at their positions on resume;
- the key of every pair, for sample efficiency (distinct pairs consumed vs. available).

TRL's ``DPOTrainer.__init__`` probes the dataset with ``next(iter(...))`` several times; each probe
runs our generator. ``rewind()`` (called at train begin by ``FeedCallback``) undoes them.

TRL drops an example whose prompt alone fills ``max_length``; such a pair is made but never
trained on, which would shift the counts, so ``ap2o-train`` leaves such problems out first.
"""

from __future__ import annotations

import json
import pathlib
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from torch.utils.data import IterableDataset as TorchIterableDataset
from transformers import TrainerCallback

from builder.errors import UserError
from builder.io import atomic_path
from trainer.schedule import SFT, Batching, Schedule

# datasets and torch.distributed are imported where the feed makes its dataset or shares it
# between processes (transformers, imported above, has already loaded torch by then).

STATE_FILE = "ap2o_schedule.json"
EFFICIENCY_FILE = "sample_efficiency.json"
METADATA_COLUMNS = ("problem_id", "rejected_error_type", "ap2o_epoch", "ap2o_fractional_epoch", "ap2o_version",
                    "ap2o_position", "ap2o_replayed", "ap2o_chosen", "ap2o_rejected")


class Feed:
    """Wraps a ``Schedule``: yields TRL rows one epoch per iterator, records positions, the
    epoch's starting state and quiz events."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._start = schedule.snapshot()     # where this training run starts (0, or a resumed epoch's start)
        self._epoch: tuple[int, dict[str, Any]] | None = None  # (position, state) of the epoch being made
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
        """The generator behind the IterableDataset: the rest of the current epoch (from the run's
        start while training has not begun), then the end of the iterator."""
        if not self.started:
            self.rewind()
        sched = self.schedule
        end = min(len(sched), sched.epoch_start(sched.position) + sched.epoch_length)
        while sched.position < end:
            while self._pending and self._pending[0][0] <= sched.position:
                event = self._pending.pop(0)  # a quiz of the run we resume, at its own position
                self.events.append(event)
                sched.set_quiz(event[1])
            if sched.position == sched.epoch_start(sched.position):
                self._epoch = (sched.position, sched.snapshot())
            pair = sched.next_pair()
            pos = pair["position"]
            del self.keys[pos:], self.versions[pos:]
            self.keys.append(sched.pair_key(pair))
            self.versions.append(pair["version"])
            yield sched.example(pair)

    def dataset(self):
        """A ``datasets.IterableDataset`` over ``generate``, for the trainer's constructor. On
        several processes TRL turns accelerate's batch dispatching off for an IterableDataset, so
        every rank reads the whole stream from its own (identical) schedule and accelerate's
        ``IterableDatasetShard`` keeps the rank's slice of each round: pairs ``[r*b, (r+1)*b)`` of
        every ``b x W`` (the official ``BatchSamplerShard`` deals the same batches)."""
        from datasets import IterableDataset

        return IterableDataset.from_generator(_generate, gen_kwargs={"feed": _Ref(self)})

    def attach(self, trainer) -> FeedCallback:
        """Give ``trainer``'s (processed) training set the epoch's length, so that the Trainer cuts
        epochs and steps as it cuts the official map-style dataset, and add ``FeedCallback``."""
        trainer.train_dataset = EpochLength(trainer.train_dataset, self.schedule.epoch_length)
        callback = FeedCallback(self)
        trainer.add_callback(callback)
        return callback

    def rewind(self) -> None:
        """Back to the start of this run, forgetting whatever probes pulled."""
        self.schedule.restore(self._start)
        self._pending = list(self._start_pending)
        self._epoch = None
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
        """What a checkpoint after ``consumed`` pairs saves: the schedule state at the start of
        their epoch (a resumed run makes the epoch again and the Trainer skips what it trained),
        the quiz updates from there on, and the keys before it (sample efficiency)."""
        sched = self.schedule
        start = sched.epoch_start(consumed) if consumed < len(sched) else consumed
        if start == sched.position:
            state = sched.state_dict()
        elif self._epoch is not None and self._epoch[0] == start:
            live = sched.snapshot()
            sched.restore(self._epoch[1])
            state = sched.state_dict()
            sched.restore(live)
        else:
            raise RuntimeError(f"no schedule state at position {start}, the start of the epoch of pair {consumed} "
                               f"(generated: {sched.position})")
        # an update pushed at position p precedes pair p, so the state at p already holds it
        return {"schedule": state, "consumed": consumed, "pending": [(p, c) for p, c in self.events if p > start],
                "events": [e for e in self.events if e[0] <= start], "keys": [list(k) for k in self.keys[:start]]}

    def load_state(self, saved: Mapping[str, Any]) -> None:
        """Continue from a ``state_at`` dict: the run starts at the saved epoch's start, quiz
        updates replay at their positions, and sample efficiency keeps counting from the saved keys."""
        self.schedule.load_state_dict(saved["schedule"])
        self._start = self.schedule.snapshot()
        self._start_pending = [(int(p), dict(c)) for p, c in saved["pending"]]
        self._pending = list(self._start_pending)
        self._epoch = None
        self.events = [(int(p), dict(c)) for p, c in saved["events"]]
        self.keys = [tuple(k) for k in saved["keys"]]
        self.versions = [None] * len(self.keys)  # not saved: only tests and logs read them

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


class EpochLength(TorchIterableDataset):
    """An iterable training set with a length: one epoch of positions. The Trainer then reads
    ``len(train_dataloader)`` as the official dataset's batches per epoch (``Schedule.epoch_length``
    is whole rounds on several processes, so accelerate's shard pads nothing), starts a new
    iterator -- the feed's next epoch -- for each epoch, and steps at each epoch's end."""

    def __init__(self, dataset, length: int) -> None:
        self.dataset, self.length = dataset, length

    def __iter__(self):
        return iter(self.dataset)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


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


def consumed_pairs(feed: Feed, args, step: int) -> int:
    """Pairs the optimizer has consumed after ``step`` steps (``Schedule.position_after``)."""
    return feed.schedule.position_after(step)


class FeedCallback(TrainerCallback):
    """Rewinds the feed at train begin (undoing TRL's probes, or loading the checkpoint's schedule
    state on resume), saves the state with every checkpoint, and writes the run's sample
    efficiency (``sample_efficiency.json``) at the end. ``Feed.attach`` adds it."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed

    def on_train_begin(self, args, state, control, **kwargs):
        if Batching.of(args) != self.feed.schedule.batching:  # it decides every epoch's steps and windows
            raise UserError(f"the schedule was cut for {self.feed.schedule.batching}, the trainer runs "
                            f"{Batching.of(args)}; build the Schedule with Batching.of(training_args)")
        mine = self.feed.schedule.fingerprint()
        if broadcast(mine) != mine:  # every rank must walk the same stream in lockstep
            raise UserError(f"rank {args.process_index} built another schedule than rank 0 "
                            "(different data or options); every rank must read the same dataset")
        if state.global_step > 0:
            if args.ignore_data_skip:
                raise UserError("ignore_data_skip must stay false: a resumed run makes the interrupted epoch again "
                                "from its start and the Trainer skips the batches it already trained")
            self.feed.load(pathlib.Path(args.output_dir) / f"checkpoint-{state.global_step}")
        else:
            self.feed.rewind()
        self.feed.started = True

    def on_save(self, args, state, control, **kwargs):
        ckpt = pathlib.Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir() and state.is_world_process_zero:
            self.feed.save(ckpt, consumed_pairs(self.feed, args, state.global_step))

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.feed.schedule.config.method != SFT:  # no pairs in SFT
            eff = self.feed.efficiency(consumed_pairs(self.feed, args, state.global_step))
            with atomic_path(pathlib.Path(args.output_dir) / EFFICIENCY_FILE) as tmp:
                tmp.write_text(json.dumps(eff, indent=2) + "\n")
