"""LoRA or full fine-tuning of MiniLM for Rotten Tomatoes, side by side in one process: hf-transfer vs a plain
PyTorch loop vs the transformers Trainer with PEFT, at its defaults and at its strongest (length-grouped sampling,
and bf16 autocast where the CPU or GPU computes it natively). Same model, training rows, batch size, epochs, LoRA
settings and learning rate.

    python benchmarks/bench_text_lora.py --lr 1e-3 --epochs 2                       # the whole training file
    python benchmarks/bench_text_lora.py --strategy finetune --lr 1e-4 --epochs 2
    python benchmarks/bench_text_lora.py --train-samples 2000 --systems trainer_grouped,hf_transfer

Every system trains on the same 90% of the training rows: the benchmark carves the stratified 10% validation split
that hf-transfer would carve itself and hands it to hf-transfer as its validation file (to choose the best epoch);
the others never see it. Prints training samples/s (training steps only: no loading, tokenising or evaluation) and
test accuracy for each, and the ratio of hf-transfer's throughput to each Trainer row's.
"""

from __future__ import annotations

import argparse
import json
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
    p.add_argument("--model", default=str(SHARED / "models" / "all-MiniLM-L6-v2"))
    p.add_argument("--train", default=str(SHARED / "data" / "rotten_tomatoes" / "train.csv"))
    p.add_argument("--test", default=str(SHARED / "data" / "rotten_tomatoes" / "test.csv"))
    p.add_argument("--train-samples", type=int, default=None, help="First N shuffled train rows (default all).")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--strategy", choices=["lora", "finetune"], default="lora")
    p.add_argument(
        "--systems",
        default="plain,trainer,trainer_grouped,trainer_grouped_bf16,hf_transfer",
        help=f"Comma-separated, from: {', '.join(RUNNERS)}. hf_transfer uses the recipe's train.mixed_precision "
        "(auto: bf16 where the device computes it natively); hf_transfer_fp32 forces fp32.",
    )
    p.add_argument("--json", help="Also write the results to this file.")
    return p.parse_args()


def load_data(args):
    import datasets

    data = datasets.load_dataset("csv", data_files={"train": args.train, "test": args.test})
    train = data["train"].shuffle(seed=0)
    if args.train_samples:
        train = train.select(range(min(args.train_samples, len(train))))
    split = train.class_encode_column("label").train_test_split(test_size=0.1, stratify_by_column="label", seed=0)
    return split["train"], split["test"], data["test"]


def build_model(args):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)
    if args.strategy == "lora":
        config = LoraConfig(
            r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"], task_type="SEQ_CLS"
        )
        model = get_peft_model(model, config)
    return model


@torch.no_grad()
def accuracy(model, tokenizer, test) -> float:
    from transformers import DataCollatorWithPadding

    model.eval()
    enc = test.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True)
    enc = enc.remove_columns(["text"]).rename_column("label", "labels")
    loader = torch.utils.data.DataLoader(enc, batch_size=64, collate_fn=DataCollatorWithPadding(tokenizer))
    correct = 0
    for batch in loader:
        labels = batch.pop("labels")
        correct += (model(**batch).logits.argmax(-1) == labels).sum().item()
    return correct / len(enc)


def run_plain(args, train, validation, test) -> dict:
    """What a user writes by hand: tokenised once, random batches padded to their longest, loss.item() per step."""
    from transformers import AutoTokenizer, DataCollatorWithPadding, get_linear_schedule_with_warmup

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = build_model(args)
    enc = train.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True)
    enc = enc.remove_columns(["text"]).rename_column("label", "labels")
    g = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(
        enc, batch_size=args.batch_size, shuffle=True, generator=g, collate_fn=DataCollatorWithPadding(tokenizer)
    )
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.01)
    total = len(loader) * args.epochs
    sched = get_linear_schedule_with_warmup(opt, int(0.06 * total), total)
    start = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            loss.item()
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "samples_per_s": len(enc) * args.epochs / seconds,
        "accuracy": accuracy(model, tokenizer, test),
    }


def run_trainer(args, train, validation, test, grouped: bool = False, bf16: bool = False) -> dict:
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = build_model(args)
    enc = train.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True)
    enc = enc.remove_columns(["text"]).rename_column("label", "labels")
    out = tempfile.mkdtemp()
    targs = TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        weight_decay=0.01,
        warmup_steps=0.06,
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        save_strategy="no",
        report_to=[],
        logging_steps=50,
        seed=0,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        # The two flags a user who knows the Trainer turns on: batches of similar lengths pad less (transformers 5's
        # name for the old group_by_length=True), and bf16 autocast.
        train_sampling_strategy="group_by_length" if grouped else "random",
        bf16=bf16,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=enc, data_collator=DataCollatorWithPadding(tokenizer))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "samples_per_s": len(enc) * args.epochs / seconds,
        "accuracy": accuracy(trainer.model, tokenizer, test),
    }


def run_hf_transfer(args, train, validation, test, precision: str | None = None) -> dict:
    import hf_transfer

    tmp = Path(tempfile.mkdtemp())
    train_csv, validation_csv = tmp / "train.csv", tmp / "validation.csv"
    train.to_csv(str(train_csv), index=False)
    validation.to_csv(str(validation_csv), index=False)
    strategy = {"name": "lora", "r": 8, "alpha": 16, "dropout": 0.1} if args.strategy == "lora" else "finetune"
    overrides = [
        f"model.checkpoint={args.model}",
        f"data.train_files={train_csv}",
        f"data.validation_files={validation_csv}",
        f"data.test_files={args.test}",
        "data.label_names=null",
        f"train.epochs={args.epochs}",
        f"train.batch_size={args.batch_size}",
        f"train.learning_rate={args.lr}",
        "train.warmup_ratio=0.06",
        f"output.dir={tmp / 'run'}",
        "train.seed=0",
        f"strategy={json.dumps(strategy)}",
        *([f"train.mixed_precision={precision}"] if precision else []),
    ]
    run_dir = hf_transfer.run("sentiment/minilm-lora-rotten-tomatoes", overrides)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    seconds = metrics["train_seconds"]
    rows = metrics["data"]["train"]
    return {
        "seconds": seconds,
        "samples_per_s": rows * args.epochs / seconds,
        "accuracy": metrics["test"]["accuracy"],
        "train_rows": rows,
        "mixed_precision": metrics["mixed_precision"],
    }


RUNNERS = {
    "plain": run_plain,
    "trainer": run_trainer,
    "trainer_grouped": lambda *a: run_trainer(*a, grouped=True),
    "trainer_grouped_bf16": lambda *a: run_trainer(*a, grouped=True, bf16=True),
    "hf_transfer": run_hf_transfer,
    "hf_transfer_fp32": lambda *a: run_hf_transfer(*a, precision="no"),
}


def main():
    args = parse_args()
    torch.manual_seed(0)
    train, validation, test = load_data(args)
    results = {}
    for name in args.systems.split(","):
        results[name] = RUNNERS[name](args, train, validation, test)
        print(
            f"{name:20s} {results[name]['samples_per_s']:7.1f} samples/s  accuracy {results[name]['accuracy']:.4f}"
            f"  ({results[name]['seconds']:.1f} s, load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    machine = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    print(json.dumps({"args": vars(args), "machine": machine, "results": results}, indent=2))
    ours = results.get("hf_transfer") or results.get("hf_transfer_fp32")
    for name, result in results.items():
        if name.startswith("trainer") and ours:
            print(
                f"hf-transfer / {name}: {ours['samples_per_s'] / result['samples_per_s']:.2f}x throughput; accuracy "
                f"{ours['accuracy']:.4f} vs {result['accuracy']:.4f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
