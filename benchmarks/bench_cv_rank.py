"""Side by side, in one run: one backbone pass over a dataset, K-fold linear-probe cross-validation, and a rank of
several checkpoints on a sample of the same data.

The claim under test: `hf-transfer cv` on a linear probe costs little more than one backbone pass (under 1.5x),
because the train rows' features are extracted once and each fold only trains a head on its rows of them. Every
measurement starts from a cold feature cache.

Full run (from the repository root; several minutes on 2 CPU cores):

    .venv/bin/python benchmarks/bench_cv_rank.py --checkpoint ../shared/models/all-MiniLM-L6-v2 \
        --data ../shared/data/rotten_tomatoes/train.csv --folds 5

Quick check that the script works (a tiny random BERT on 300 rows, seconds; the 1.5x bound is not enforced there,
as the fixed costs of K folds outweigh a tiny model's pass):

    .venv/bin/python benchmarks/bench_cv_rank.py --quick
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
MAX_CV_OVER_ONE_PASS = 1.5


def random_copy(checkpoint: str, folder: Path, tiny: bool = False) -> str:
    """The checkpoint's architecture (or a 2-layer, 32-wide BERT when `tiny`) with random weights and its tokenizer:
    a candidate that rank should place below the pretrained one."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if tiny:
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            pad_token_id=tokenizer.pad_token_id,
        )
    else:
        config = AutoConfig.from_pretrained(checkpoint)
    folder.mkdir(parents=True, exist_ok=True)
    AutoModel.from_config(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return str(folder)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(SHARED / "models" / "all-MiniLM-L6-v2"))
    parser.add_argument("--data", default=str(SHARED / "data" / "rotten_tomatoes" / "train.csv"))
    parser.add_argument("--rows", type=int, help="Use at most this many train rows (default: all).")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10, help="Epochs of each fold's head.")
    parser.add_argument("--rank-samples", type=int, default=1000, help="Rows rank scores the checkpoints on.")
    parser.add_argument("--rank-checkpoints", nargs="*", help="More candidates for rank, besides the built ones.")
    parser.add_argument("--quick", action="store_true", help="A tiny configuration that runs in seconds.")
    parser.add_argument("--json", help="Also write the measurements to this file.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_cv_rank-") as tmp:  # random copies, caches, CV folders
        return measure(args, Path(tmp))


def measure(args: argparse.Namespace, work: Path) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    import transformers

    transformers.logging.set_verbosity_error()

    from hf_transfer.apps.cross_validation import cross_validate
    from hf_transfer.apps.rank import RankInputs, format_rank_table, fresh_accelerator, rank_checkpoints
    from hf_transfer.backbones import build_backbone
    from hf_transfer.config.recipe import recipe_from_dict
    from hf_transfer.config.sections import DataConfig
    from hf_transfer.data.train_rows import load_train_split
    from hf_transfer.strategies.factory import build_strategy

    checkpoint, rows, folds, epochs = args.checkpoint, args.rows, args.folds, args.epochs
    rank_samples = args.rank_samples
    random_twin = random_copy(args.checkpoint, work / "random-init")
    candidates = [args.checkpoint, random_twin]
    if args.quick:  # a tiny random BERT plays the backbone, and joins the candidates
        checkpoint = random_copy(args.checkpoint, work / "tiny-bert", tiny=True)
        rows, folds, epochs, rank_samples = rows or 300, 3, 3, 400
        candidates.append(checkpoint)
    candidates += args.rank_checkpoints or []

    recipe = recipe_from_dict(
        {
            "model": {"checkpoint": checkpoint},
            "data": {"train_files": [args.data], "max_train_samples": rows},
            "strategy": {"name": "linear_probe", "pooling": "mean"},
            "train": {"epochs": epochs, "batch_size": 64, "learning_rate": 1e-3, "scheduler": "cosine", "seed": 0},
            "output": {"dir": str(work / "outputs" / "bench")},
        },
        name="bench",
    )

    def one_pass():
        backbone = build_backbone(recipe.model, recipe.data, recipe.modality)
        data, _ = load_train_split(recipe.data, backbone, recipe.train.seed)
        return build_strategy(recipe.strategy, backbone).split_features(data, fresh_accelerator(), "train")

    # Untimed warm-up: first imports, the CSV's conversion to Arrow and the tokenisation (cached by `datasets`), which
    # both measurements would otherwise pay unequally. Then each runs from its own cold feature cache: the one pass is
    # model load + extraction; the CV is that plus K folds of head training.
    os.environ["HF_TRANSFER_CACHE"] = str(work / "cache-warm-up")
    from sklearn.model_selection import StratifiedKFold  # noqa: F401

    warm = build_backbone(recipe.model, recipe.data, recipe.modality)
    warm.prepare(load_train_split(recipe.data, warm, recipe.train.seed)[0], train=False)

    os.environ["HF_TRANSFER_CACHE"] = str(work / "cache-one-pass")
    features, pass_seconds = timed(one_pass)
    os.environ["HF_TRANSFER_CACHE"] = str(work / "cache-cv")
    report, cv_seconds = timed(lambda: cross_validate(recipe, folds=folds, output_dir=work / "cv"))

    os.environ["HF_TRANSFER_CACHE"] = str(work / "cache-rank")
    inputs = RankInputs(data=DataConfig(train_files=[args.data]), task="text-classification", pooling="mean")
    ranking, rank_seconds = timed(lambda: rank_checkpoints(candidates, inputs, max_samples=rank_samples, folds=5))

    ratio = cv_seconds / pass_seconds
    accuracy = report["summary"]["accuracy"]
    cv_label = f"{folds}-fold linear-probe CV ({epochs} epochs a fold)"
    rank_label = f"rank of {len(candidates)} checkpoints on {ranking['samples']} rows"
    print(f"backbone: {checkpoint}\ndata: {args.data} ({len(features)} train rows)\n")
    print(f"{'one backbone pass over the train rows':<44} {pass_seconds:8.1f} s")
    print(
        f"{cv_label:<44} {cv_seconds:8.1f} s  = {ratio:.2f}x one pass (of which feature extraction "
        f"{report['feature_extraction_seconds']:.1f} s); accuracy {accuracy['mean']:.4f} ± {accuracy['std']:.4f}"
    )
    print(f"{rank_label:<44} {rank_seconds:8.1f} s\n")
    print(format_rank_table(ranking))
    results = {
        "checkpoint": checkpoint,
        "train_rows": len(features),
        "folds": folds,
        "one_pass_seconds": round(pass_seconds, 2),
        "cv_seconds": round(cv_seconds, 2),
        "cv_over_one_pass": round(ratio, 3),
        "cv_accuracy": accuracy,
        "rank_seconds": round(rank_seconds, 2),
        "ranking": ranking,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.quick:
        print(f"\n--quick: CV took {ratio:.2f}x one pass (the {MAX_CV_OVER_ONE_PASS}x bound is for a full run).")
        return 0
    ok = ratio < MAX_CV_OVER_ONE_PASS
    print(f"\n{'PASS' if ok else 'FAIL'}: CV / one pass = {ratio:.2f} (bound {MAX_CV_OVER_ONE_PASS})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
