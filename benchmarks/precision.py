"""Why full fine-tuning keeps fp32 master weights: the share of weights an AdamW step at the paper's
learning rate actually changes, fp32 weights under bf16 autocast (what ``ap2o-train`` does, as the
official code does) against weights stored in bf16 (what loading in bf16 did), in the same run.

    python benchmarks/precision.py [--steps 60] [--lr 5e-7] [--hidden 256 --layers 4]

Plain transformers + torch (no TRL), a random Qwen2 and a causal-LM loss on random tokens: the
property is about the optimizer update and the weights' dtype, not about the loss. On a CUDA GPU
with bf16 the autocast is the real one; on CPU it is torch's CPU autocast.
"""

from __future__ import annotations

import argparse
import sys
import time

# torch and transformers (seconds) are imported where the model is built: --help answers at once.


def changed_share(dtype, args, device) -> float:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=1024, hidden_size=args.hidden, intermediate_size=args.hidden * 2,
                         num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 64),
                         num_key_value_heads=max(1, args.hidden // 128), max_position_embeddings=512)
    model = Qwen2ForCausalLM(config).to(device=device, dtype=dtype)
    # the token embeddings are left out of the count: rows of tokens absent from a batch get no gradient
    counted = [p for n, p in model.named_parameters() if "embed_tokens" not in n]
    before = [p.detach().clone() for p in counted]
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    gen = torch.Generator(device="cpu").manual_seed(1)
    for _ in range(args.steps):
        ids = torch.randint(0, 1024, (4, 128), generator=gen).to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    changed = sum((p.detach() != b).sum().item() for p, b in zip(counted, before))
    return changed / sum(b.numel() for b in before)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[1, 60])
    p.add_argument("--lr", type=float, default=5e-7)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    args = p.parse_args()
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; lr {args.lr}; random Qwen2 {args.layers}x{args.hidden}")
    print("| AdamW steps | fp32 weights + bf16 autocast | bf16 weights | ratio |")
    print("| ---: | ---: | ---: | ---: |")
    for steps in args.steps:
        args_steps = argparse.Namespace(**{**vars(args), "steps": steps})
        t0 = time.perf_counter()
        fp32 = changed_share(torch.float32, args_steps, device)
        bf16 = changed_share(torch.bfloat16, args_steps, device)
        print(f"| {steps} | {fp32:.2%} | {bf16:.2%} | {fp32 / max(bf16, 1e-12):.1f}x |  ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
