"""Text zero-shot with the shared MiniLM on the Rotten Tomatoes test split: how far label names alone go.

The sentence-embedding MiniLM (mean pooled, as sentence-transformers uses it) embeds every review and each label's
prompts; a review goes to the label whose averaged prompt embedding is most similar (cosine). Several prompt sets
are scored on the same rows, from the bare label names to short descriptions, so the table shows how much the
wording matters. Nothing is trained or tuned on the test split: the prompt sets were written before this run.

    python benchmarks/bench_zero_shot_text.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
LABELS = ["negative", "positive"]  # label 0 / 1 of the shared CSVs
PROMPT_SETS = {
    "names": {},
    "names in a template": {"templates": ["a {label} movie review."]},
    "descriptions": {
        "descriptions": {
            "negative": ["a bad movie.", "a boring, disappointing film."],
            "positive": ["a good movie.", "a wonderful, entertaining film."],
        }
    },
    "descriptions x 2 templates": {
        "templates": ["{label}", "a review saying it is {label}"],
        "descriptions": {"negative": ["bad", "terrible"], "positive": ["good", "great"]},
    },
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(SHARED / "models" / "all-MiniLM-L6-v2"))
    p.add_argument("--test", default=str(SHARED / "data" / "rotten_tomatoes" / "test.csv"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import torch
    from datasets import load_dataset

    from hf_transfer.config.sections import DataConfig
    from hf_transfer.config.zero_shot import ZeroShotConfig
    from hf_transfer.metrics.classification import classification_metrics
    from hf_transfer.strategies.zero_shot import ZeroShotClassifier, label_prompts

    torch.set_num_threads(2)
    split = load_dataset("csv", data_files=args.test, split="train").rename_column("label", "labels")
    labels = np.asarray(split["labels"])
    data = DataConfig(train_files=[args.test])
    base = ZeroShotClassifier(ZeroShotConfig(checkpoint=args.model), "text", data)
    start = time.perf_counter()
    reviews = base.input_embeddings(split, args.batch_size, "MiniLM reviews")  # once, for every prompt set
    seconds = time.perf_counter() - start
    rows = []
    for name, section in PROMPT_SETS.items():
        config = ZeroShotConfig(checkpoint=args.model, **section)
        classifier = ZeroShotClassifier(config, "text", data)
        classifier.model = base.model  # the same loaded weights
        prompts = label_prompts(LABELS, config, "text")
        probs = classifier.probabilities(reviews, classifier.label_embeddings(prompts))
        metrics = classification_metrics(labels, probs, LABELS)
        rows.append(
            {
                "prompts": name,
                "example": prompts["positive"][0],
                "accuracy": metrics["accuracy"],
                "balanced_accuracy": metrics["balanced_accuracy"],
                "f1_macro": metrics["f1_macro"],
                "predicted_positive": float(probs.argmax(1).mean()),
            }
        )
    report = {
        "rows": len(split),
        "positive_share": float(labels.mean()),
        "embedding_seconds": round(seconds, 1),
        "results": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"MiniLM zero-shot on {report['rows']} Rotten Tomatoes test reviews ({labels.mean():.1%} positive), "
        f"embedded in {seconds:.1f} s"
    )
    print(f"{'prompts':<28} {'example (positive)':<34} {'acc':>7} {'bal acc':>7} {'F1':>7} {'pred +':>7}")
    for r in rows:
        print(
            f"{r['prompts']:<28} {r['example']:<34} {r['accuracy']:>7.4f} {r['balanced_accuracy']:>7.4f} "
            f"{r['f1_macro']:>7.4f} {r['predicted_positive']:>7.1%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
