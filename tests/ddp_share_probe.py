"""Run under ``accelerate launch`` by ``test_train_e2e``: trains 2 epochs of an AP2O schedule (5
kept problems, 1 pair per rank per step: 3 steps an epoch, the last round filled with the epoch's
first problem as accelerate's ``BatchSamplerShard`` fills the official one) on 2 CPU processes and
writes, per rank, the (prompt + chosen, prompt + rejected) texts that reached that rank's
``training_step``, and, on rank 0, the schedule's pairs. The test then checks that the ranks
trained their shares of the schedule, in order."""

from __future__ import annotations

import json
import pathlib
import sys

from tiny_dataset import dpo_trainer, make

from trainer.feed import Feed
from trainer.schedule import AP2O_L2H, Batching

model_dir, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
feed = Feed(make(AP2O_L2H, epochs=2, batching=Batching(per_device=1, processes=2)))
trainer = dpo_trainer(model_dir, out / "run", feed, per_device_train_batch_size=1, max_steps=6, use_cpu=True)
tok, seen, step = trainer.processing_class, [], trainer.training_step


def recording_step(model, inputs, *args, **kwargs):
    ids = inputs["input_ids"]
    half = ids.shape[0] // 2  # DPO batches stack the chosen rows, then the rejected rows
    for i in range(half):
        seen.append([tok.decode(ids[i], skip_special_tokens=True), tok.decode(ids[half + i], skip_special_tokens=True)])
    return step(model, inputs, *args, **kwargs)


trainer.training_step = recording_step
trainer.train()
rank = trainer.args.process_index
(out / f"rank{rank}.json").write_text(json.dumps(seen))
if rank == 0:
    sched = feed.schedule
    head = []
    for p, c, r in feed.keys:
        prob = sched.problems[p]
        head.append([prob.prompt + prob.passed[c], prob.prompt + prob.failed[r]])
    (out / "schedule_head.json").write_text(json.dumps(head))
