"""Inference and data-loading throughput, side by side in one process (a script, not a test: CI times nothing).

Text (issue 12 item 2): hf-transfer's `predict` on a trained run vs `transformers.pipeline("text-classification")`
and a plain loop, on the same model, batch size and device, over the Rotten Tomatoes test split:

    hf-transfer run sentiment/minilm-lora-rotten-tomatoes model.checkpoint=../shared/models/all-MiniLM-L6-v2 \
        data.train_files=../shared/data/rotten_tomatoes/train.csv \
        data.test_files=../shared/data/rotten_tomatoes/test.csv \
        data.max_train_samples=500 train.epochs=1 output.dir=/tmp/minilm-lora
    python benchmarks/bench_inference.py text --run /tmp/minilm-lora --batch-size 32

The pipeline and the plain loop get the model as a user loads a LoRA run without hf-transfer (the base with
`PeftModel.from_pretrained`); the pipeline also runs on hf-transfer's merged model, to separate what the merge
gives from what batching by length and batched tokenising give.

Images (issue 12 item 3): is decoding the bottleneck? Samples/s of the digits recipe's training DataLoader alone
(workers 0 and auto) vs of the model alone (training steps on synthetic tensors of the same shape), on this CPU:

    python benchmarks/bench_inference.py images --batches 20
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    text = sub.add_parser("text", help="predict vs pipeline vs a plain loop")
    text.add_argument("--run", required=True, help="A trained LoRA run folder (see above).")
    text.add_argument("--test", default=str(SHARED / "data" / "rotten_tomatoes" / "test.csv"))
    text.add_argument("--batch-size", type=int, default=32)
    text.add_argument("--repeats", type=int, default=2, help="Timed passes per system; the fastest is kept.")
    text.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    images = sub.add_parser("images", help="data-only vs model-only samples/s for the digits recipe")
    images.add_argument("--recipe", default="images/efficientnet-lite0-lora-digits")
    images.add_argument("--checkpoint", default=f"local-dir:{SHARED / 'models' / 'tf_efficientnet_lite0'}")
    images.add_argument("--batches", type=int, default=20)
    return p.parse_args()


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    return f"{device}; {os.cpu_count()} cores, load average {load}; torch {torch.__version__}"


def best_rate(fn, n: int, repeats: int) -> float:
    """Samples/s of the fastest of `repeats` timed calls of `fn` (which handles `n` samples)."""
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return n / best


def bench_text(args) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    import hf_transfer

    with open(args.test, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    bs, device = args.batch_size, torch.device(args.device)
    classifier = hf_transfer.load(args.run, device=str(device))
    max_length = classifier.recipe.data.max_length
    tokenizer = AutoTokenizer.from_pretrained(args.run)
    base = AutoModelForSequenceClassification.from_pretrained(
        classifier.recipe.model.checkpoint, num_labels=len(classifier.label_names)
    )
    adapter_model = PeftModel.from_pretrained(base, args.run).to(device).eval()

    @torch.inference_mode()
    def plain_loop(rows):
        for i in range(0, len(rows), bs):
            batch = tokenizer(
                rows[i : i + bs], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            adapter_model(**batch.to(device)).logits.softmax(-1).cpu()

    def pipe_of(model):
        pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=device)
        return lambda rows: pipe(rows, batch_size=bs, truncation=True, max_length=max_length)

    systems = {
        "hf-transfer predict": lambda rows: classifier.predict(rows, batch_size=bs),
        "pipeline (adapter model)": pipe_of(adapter_model),
        "pipeline (merged model)": pipe_of(classifier.model),
        "plain loop (adapter model)": plain_loop,
    }
    print(f"# {len(texts)} texts, batch size {bs}, device {device}; {machine()}")
    rates = {}
    for name, fn in systems.items():
        fn(texts[:bs])  # warm-up
        rates[name] = best_rate(lambda fn=fn: fn(texts), len(texts), args.repeats)
        print(f"{name:28s} {rates[name]:8.1f} samples/s", flush=True)
    ours = rates["hf-transfer predict"]
    for name, rate in rates.items():
        if name != "hf-transfer predict":
            print(f"hf-transfer / {name}: {ours / rate:.2f}x")
    print(f"# after: {machine()}")


def bench_images(args) -> None:
    from accelerate import Accelerator

    from hf_transfer.backbones import build_backbone
    from hf_transfer.config.loading import load_recipe
    from hf_transfer.data.splits import load_splits
    from hf_transfer.strategies.factory import build_strategy
    from hf_transfer.train.loading import resolve_num_workers
    from hf_transfer.train.loop import TrainingLoop

    print(f"# {machine()}")
    for workers in ("0", "auto"):
        recipe = load_recipe(args.recipe, [f"model.checkpoint={args.checkpoint}", f"train.num_workers={workers}"])
        accelerator = Accelerator(cpu=True)
        backbone = build_backbone(recipe.model, recipe.data, recipe.modality)
        columns, fields = backbone.required_columns()
        splits = load_splits(recipe.data, columns, fields, recipe.train.seed, check_rows=backbone.check_rows)
        plan = build_strategy(recipe.strategy, backbone).plan(splits, recipe, accelerator)
        n_workers = resolve_num_workers(recipe.train.num_workers, recipe.modality, plan.train)
        with tempfile.TemporaryDirectory() as tmp:
            loop = TrainingLoop(recipe, accelerator, Path(tmp), splits.label_names)
            loop._setup(plan)
            bs = recipe.train.batch_size
            seen, start = 0, None
            for i, batch in enumerate(loop.train_loader):
                if i == 1:  # the first batch pays for starting the workers
                    seen, start = 0, time.perf_counter()
                seen += len(batch["labels"])
                if i == args.batches:
                    break
            data_rate = seen / (time.perf_counter() - start)
            print(f"data only, num_workers={workers} ({n_workers}): {data_rate:8.1f} samples/s", flush=True)
            if workers != "0":
                continue
            shape = batch["pixel_values"].shape
            synthetic = {
                "pixel_values": torch.randn(shape),
                "labels": torch.randint(0, len(splits.label_names), (bs,)),
            }
            loop.model.train()
            loop._train_step(dict(synthetic))
            start = time.perf_counter()
            for _ in range(args.batches):
                loop._train_step(dict(synthetic))
            model_rate = args.batches * bs / (time.perf_counter() - start)
            print(f"model only (training steps, {tuple(shape)}): {model_rate:8.1f} samples/s", flush=True)
    print(f"# after: {machine()}")


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(ROOT))
    bench_text(args) if args.mode == "text" else bench_images(args)


if __name__ == "__main__":
    main()
