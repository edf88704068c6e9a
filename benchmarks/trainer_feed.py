"""What the live schedule costs: DPO steps fed by ``trainer.feed`` vs. the same pairs from a plain,
pre-materialized ``datasets.Dataset``, in the same process; and the quiz's share of wall time.

The feed makes each pair when the data loader asks for it (and TRL tokenizes it then), where a
static dataset is tokenized once before training. The question is whether that laziness -- the
price of a schedule the quiz can steer -- shows up in the step time. Target: < 2% overhead.

    python benchmarks/trainer_feed.py                         # random 2-layer model (seconds)
    python benchmarks/trainer_feed.py --hidden 512 --layers 8 # closer to a real step's weight

Runs alternate (feed, static, feed, static, ...) so drift hits both alike; medians are reported.
The model is random (no download): step time depends on its size, not its weights.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tests' helpers: tiny_models, tiny_dataset
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tiny_dataset import write_dataset  # from tests/, put on the path above
from tiny_models import make_tiny_model

from trainer.config import ModelArguments, QuizConfig
from trainer.data import load_training_data
from trainer.schedule import Batching, Schedule, ScheduleConfig

# torch, transformers, TRL, datasets, matplotlib and the trainer modules that load them (feed, quiz,
# trl_config) are imported in the functions that train or draw: --help answers at once.


def build_model(folder: pathlib.Path, hidden: int, layers: int) -> pathlib.Path:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    make_tiny_model(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                         num_key_value_heads=max(1, hidden // 128), max_position_embeddings=1024,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    return folder


def run(kind: str, model_dir, problems, args, out: pathlib.Path, quiz_problems=None) -> dict:
    """One training run of ``args.steps`` steps; returns seconds per step (and quiz seconds)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOTrainer

    from trainer.feed import Feed
    from trainer.quiz import QuizCallback
    from trainer.trl_config import AP2ODPOConfig

    cfg = AP2ODPOConfig(output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                        max_length=args.max_length, report_to="none", save_strategy="no", logging_steps=10**6,
                        disable_tqdm=True, seed=0, use_cpu=args.cpu)
    schedule = Schedule(problems, ScheduleConfig(method="ap2o-l2h"), args.epochs, Batching.of(cfg))
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if kind == "feed":
        feed = Feed(schedule)
        data = feed.dataset()
    else:  # the same pairs, made up front: what a static dataset on disk would give TRL
        feed = None
        data = Dataset.from_list([schedule.example(p) for p in Schedule(problems, schedule.config, args.epochs,
                                                                         schedule.batching).pairs()])
    trainer = DPOTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok,
                         peft_config=ModelArguments(model_name_or_path=str(model_dir)).peft_config())
    if feed is not None:
        feed.attach(trainer)
    quiz = None
    if quiz_problems:
        config = QuizConfig(quiz_strategy="steps", quiz_steps=args.quiz_every, quiz_max_new_tokens=32,
                            keep_best=False, quiz_workers=1)
        quiz = QuizCallback(quiz_problems, config, due=config.due(schedule.steps_per_epoch), feed=feed).attach(trainer)

    class Clock(TrainerCallback):  # steps only: model loading and TRL's set-up are not the feed's cost
        def on_step_begin(self, *a, **k):
            self.t0 = getattr(self, "t0", None) or time.perf_counter()

        def on_train_end(self, *a, **k):
            self.t1 = time.perf_counter()

    # data alone: the batches of the run through the trainer's own loader (the feed rewinds after;
    # until training starts each pass over it is the first epoch again)
    t0 = time.perf_counter()
    batches = 0
    while batches < args.steps:
        for _, _batch in zip(range(args.steps - batches), trainer.get_train_dataloader()):
            batches += 1
    loading = (time.perf_counter() - t0) / args.steps
    clock = Clock()
    trainer.add_callback(clock)
    trainer.train()
    wall = clock.t1 - clock.t0
    return {"per_step": wall / args.steps, "loading": loading, "wall": wall, "quiz": quiz.seconds if quiz else 0.0}


def plot(times: dict, loading: dict, args) -> None:
    """Every run's step time and loader time, feed beside static: the spread is the noise floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, data, title in ((axes[0], times, "training step"), (axes[1], loading, "loading the batches alone")):
        for x, kind in enumerate(("feed", "static")):
            ys = [t * 1e3 for t in data[kind]]
            ax.scatter([x] * len(ys), ys, label=kind)
            ax.hlines(statistics.median(ys), x - 0.2, x + 0.2, color="black")
        ax.set_xticks([0, 1], ["trainer.feed", "static Dataset"])
        ax.set_ylabel("ms / step")
        ax.set_ylim(bottom=0)
        ax.set_title(title)
    fig.suptitle(f"DPO on a random {args.layers}-layer Qwen2, batch {args.batch_size}: each dot one run, bar = median")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f"plot: {args.plot}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per run")
    p.add_argument("--repeats", type=int, default=3, help="runs of each kind (alternating)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--hidden", type=int, default=64, help="hidden size of the random model")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=40, help="schedule depth T (enough pairs for --steps)")
    p.add_argument("--quiz-every", type=int, default=10, help="quiz period K for the quiz-share run")
    p.add_argument("--cpu", action="store_true", help="force CPU even when a GPU is visible")
    p.add_argument("--plot", default=str(REPO / "docs" / "img" / "trainer_feed.png"), help="where to draw the runs")
    args = p.parse_args()

    from datasets import load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        model_dir = build_model(tmp / "model", args.hidden, args.layers)
        data_dir = write_dataset(tmp / "data")
        kept = load_training_data(str(data_dir), ScheduleConfig(), validation_split="none").problems
        problems = load_dataset(str(data_dir), "problems", split="validation").to_list()
        steps = args.epochs * -(-len(kept) // args.batch_size)  # each epoch's last batch is short
        if steps < args.steps:
            p.error(f"--epochs {args.epochs} gives {steps} steps, fewer than --steps {args.steps}")

        times = {"feed": [], "static": []}
        loading = {"feed": [], "static": []}
        run("static", model_dir, kept, args, tmp / "warm")  # warm-up: imports, kernels, caches
        for i in range(args.repeats):
            for kind in ("feed", "static"):
                got = run(kind, model_dir, kept, args, tmp / f"{kind}{i}")
                times[kind].append(got["per_step"])
                loading[kind].append(got["loading"])
        with_quiz = run("feed", model_dir, kept, args, tmp / "quiz", quiz_problems=problems)

    feed, static = statistics.median(times["feed"]), statistics.median(times["static"])
    overhead = feed / static - 1
    print(f"\nDPO steps on a random {args.layers}-layer, {args.hidden}-wide Qwen2, batch {args.batch_size}, "
          f"{args.steps} steps x {args.repeats} runs each (median)")
    print("| data | ms / step (training) | runs | ms / step (loading the batches alone) |")
    print("| --- | ---: | --- | ---: |")
    for kind in ("feed", "static"):
        runs_ms = ", ".join(f"{t * 1e3:.1f}" for t in times[kind])
        print(f"| {'trainer.feed (IterableDataset)' if kind == 'feed' else 'pre-materialized Dataset'} "
              f"| {statistics.median(times[kind]) * 1e3:.1f} | {runs_ms} | {statistics.median(loading[kind]) * 1e3:.2f} |")
    extra = statistics.median(loading["feed"]) - statistics.median(loading["static"])
    print(f"\nfeed overhead, end to end: {overhead * 100:+.2f}% (ratio {feed / static:.4f}; target < 2%)")
    print(f"feed overhead, loading alone: {extra * 1e3:+.2f} ms / step = {extra / static * 100:+.2f}% of a static step "
          "(less noisy: the difference of two loader timings, no model in it)")
    share = with_quiz["quiz"] / with_quiz["wall"] if with_quiz["wall"] else 0.0
    plot(times, loading, args)
    print(f"quiz share of wall time (quiz every {args.quiz_every} steps, {len(problems)} problems, 32 new tokens): "
          f"{share * 100:.1f}% ({with_quiz['quiz']:.2f} s of {with_quiz['wall']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
