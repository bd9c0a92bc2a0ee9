"""Linear probe, side by side in one process: the seed's loop (frozen backbone run again every epoch) against
hf-transfer's (features extracted once, head trained on them), on the same backbone, data and transform.

    python benchmarks/bench_linear_probe.py images/efficientnet-lite0-linear-probe-digits \
        model.checkpoint=local-dir:../shared/models/tf_efficientnet_lite0 --epochs 20 --seed-epochs 2
    python benchmarks/bench_linear_probe.py sentiment/minilm-linear-probe-rotten-tomatoes \
        model.checkpoint=../shared/models/all-MiniLM-L6-v2 data.train_files=../shared/data/rotten_tomatoes/train.csv \
        data.test_files=../shared/data/rotten_tomatoes/test.csv --epochs 20 --seed-epochs 1

Prints: one backbone pass over the train split; the seed loop's seconds per epoch (measured over --seed-epochs
epochs) and its test accuracy; hf-transfer's cost for --epochs epochs (its one extraction of the train split plus
its head training, cold feature cache) and test accuracy; and the ratios. The seed loop's cost at --epochs epochs
is its measured per-epoch cost times --epochs, labelled as such.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed-epochs", type=int, default=2, help="Epochs of the seed loop actually run.")
    p.add_argument("--json")
    return p.parse_args()


def seed_loop(recipe, epochs: int) -> dict:
    """The seed's example: every epoch runs the frozen backbone over every batch, then steps the head."""
    from hf_transfer.backbones import build_backbone
    from hf_transfer.data.splits import load_splits

    backbone = build_backbone(recipe.model, recipe.data, recipe.modality)
    splits = load_splits(recipe.data, *backbone.required_columns(), seed=0, check_rows=backbone.check_rows)
    extractor = backbone.build_feature_extractor(recipe.strategy.pooling)
    collate = backbone.collate_fn()
    train = torch.utils.data.DataLoader(
        backbone.prepare(splits.train, train=False),
        batch_size=recipe.train.batch_size,
        shuffle=True,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
    )
    head = None
    per_epoch = []
    for _ in range(epochs):
        start = time.perf_counter()
        for batch in train:
            labels = batch.pop("labels")
            with torch.no_grad():
                features = extractor(**batch)
            if head is None:
                head = nn.Linear(features.shape[1], len(splits.label_names))
                optimizer = torch.optim.AdamW(head.parameters(), lr=recipe.train.learning_rate)
            loss = nn.functional.cross_entropy(head(features), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        per_epoch.append(time.perf_counter() - start)
    test = torch.utils.data.DataLoader(backbone.prepare(splits.test, train=False), batch_size=64, collate_fn=collate)
    correct = 0
    with torch.no_grad():
        for batch in test:
            labels = batch.pop("labels")
            correct += (head(extractor(**batch)).argmax(-1) == labels).sum().item()
    return {
        "epochs_run": epochs,
        "seconds_per_epoch": sum(per_epoch) / len(per_epoch),
        "accuracy_after_epochs_run": correct / len(splits.test),
    }


def hf_transfer_probe(name: str, overrides: list[str], epochs: int) -> dict:
    """hf-transfer's linear probe with a cold cache; the train split's extraction is timed where it happens."""
    import hf_transfer
    import hf_transfer.backbones.features as features

    timings = {}
    original = features._run_extractor

    def timed(extractor, split, backbone, accelerator, batch_size, desc):
        start = time.perf_counter()
        out = original(extractor, split, backbone, accelerator, batch_size, desc)
        timings[desc] = time.perf_counter() - start
        return out

    features._run_extractor = timed
    tmp = Path(tempfile.mkdtemp())
    os.environ["HF_TRANSFER_CACHE"] = str(tmp / "cache")
    try:
        run_dir = hf_transfer.run(name, [*overrides, f"train.epochs={epochs}", f"output.dir={tmp / 'run'}"])
    finally:
        features._run_extractor = original
    metrics = json.loads((run_dir / "metrics.json").read_text())
    extraction = timings["Extracting train features"]
    return {
        "train_extraction_seconds": extraction,
        "head_training_seconds": metrics["train_seconds"],
        "cost_seconds": extraction + metrics["train_seconds"],
        "accuracy": metrics["test"]["accuracy"],
        "all_extractions": timings,
    }


def main():
    args = parse_args()
    from hf_transfer.config.loading import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    seed = seed_loop(recipe, args.seed_epochs)
    ours = hf_transfer_probe(args.recipe, args.overrides, args.epochs)
    one_pass = ours["train_extraction_seconds"]
    result = {
        "recipe": args.recipe,
        "overrides": args.overrides,
        "epochs": args.epochs,
        "threads": torch.get_num_threads(),
        "one_backbone_pass_seconds": one_pass,
        "seed_loop": seed,
        "hf_transfer": ours,
        "hf_transfer_cost_over_one_pass": ours["cost_seconds"] / one_pass,
        "seed_loop_cost_at_epochs_extrapolated": seed["seconds_per_epoch"] * args.epochs,
        "speedup_vs_seed_loop_at_epochs": seed["seconds_per_epoch"] * args.epochs / ours["cost_seconds"],
    }
    print(json.dumps(result, indent=2))
    print(
        f"one backbone pass over train: {one_pass:.1f} s; hf-transfer linear probe, {args.epochs} epochs: "
        f"{ours['cost_seconds']:.1f} s ({result['hf_transfer_cost_over_one_pass']:.2f}x one pass), "
        f"accuracy {ours['accuracy']:.4f}"
    )
    print(
        f"seed loop: {seed['seconds_per_epoch']:.1f} s/epoch measured over {seed['epochs_run']} epochs "
        f"(accuracy {seed['accuracy_after_epochs_run']:.4f} after them); at {args.epochs} epochs "
        f"{result['seed_loop_cost_at_epochs_extrapolated']:.0f} s -> hf-transfer is "
        f"{result['speedup_vs_seed_loop_at_epochs']:.1f}x faster"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
