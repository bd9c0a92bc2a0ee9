"""What makes one MiniLM training step faster on this device, side by side in one process: fp32, bf16 autocast,
torch.compile, and both, for LoRA (r 8 on query/value) and full fine-tuning.

    python benchmarks/bench_train_step.py                  # all four variants, LoRA and full fine-tuning
    python benchmarks/bench_train_step.py --variants fp32,bf16 --steps 48

Batches of 32 random token ids at the lengths length-grouped Rotten Tomatoes batches have (22 to 36 tokens), so
the compiled model meets several shapes (compiled with dynamic=True, as a recipe's varying batch lengths need). The
first steps of each variant (compilation included) are timed apart as warm-up; samples/s counts the steps after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
LENGTHS = (24, 28, 32, 26, 30, 36, 22, 27)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(SHARED / "models" / "all-MiniLM-L6-v2"))
    p.add_argument("--variants", default="fp32,bf16,compile,compile_bf16")
    p.add_argument("--strategies", default="lora,full")
    p.add_argument("--steps", type=int, default=24, help="Timed steps per variant (after 3 warm-up steps).")
    p.add_argument("--batch-size", type=int, default=32)
    return p.parse_args()


def build(args, strategy: str, compiled: bool):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)
    if strategy == "lora":
        config = LoraConfig(
            r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"], task_type="SEQ_CLS"
        )
        model = get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    return (torch.compile(model, dynamic=True) if compiled else model), optimizer


def measure(args, strategy: str, variant: str) -> dict:
    model, optimizer = build(args, strategy, compiled=variant.startswith("compile"))
    bf16 = variant.endswith("bf16")
    g = torch.Generator().manual_seed(0)

    def step(length: int) -> None:
        ids = torch.randint(1000, 20000, (args.batch_size, length), generator=g)
        labels = torch.randint(0, 2, (args.batch_size,), generator=g)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    start = time.perf_counter()
    for length in LENGTHS[:3]:
        step(length)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(args.steps):
        step(LENGTHS[i % len(LENGTHS)])
    seconds = time.perf_counter() - start
    return {"warmup_seconds": warmup, "samples_per_s": args.steps * args.batch_size / seconds}


def main():
    args = parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, AVX512-BF16 "
        f"{torch.cpu._is_avx512_bf16_supported()}, AMX {torch.cpu._is_amx_tile_supported()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    results = {}
    for strategy in args.strategies.split(","):
        for variant in args.variants.split(","):
            r = results[f"{strategy}/{variant}"] = measure(args, strategy, variant)
            base = results[f"{strategy}/{args.variants.split(',')[0]}"]["samples_per_s"]
            print(
                f"{strategy:5s} {variant:13s} {r['samples_per_s']:7.1f} samples/s  {r['samples_per_s'] / base:.2f}x  "
                f"(warm-up {r['warmup_seconds']:.1f} s, load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
