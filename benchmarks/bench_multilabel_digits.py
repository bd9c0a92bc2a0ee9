"""The offline multi-label recipe against always answering the most frequent label set (issue 10).

    python benchmarks/bench_multilabel_digits.py images/efficientnet-lite0-multilabel-digits \
        model.checkpoint=local-dir:../shared/models/tf_efficientnet_lite0

Runs the recipe as given (its test split: sklearn:digits-multilabel's 500 grids), then scores on the same test rows
the constant answer: the label set most frequent among the train grids, answered for every grid (subset accuracy,
F1), with each label's train frequency as its score for every grid (mAP: each label's AP is then its prevalence).
Prints both side by side; --json writes them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

import hf_transfer
from hf_transfer.config.loading import load_recipe
from hf_transfer.data.splits import limit
from hf_transfer.metrics.multilabel import multilabel_metrics

KEYS = ("subset_accuracy", "f1_micro", "f1_macro", "map_macro", "hamming_loss")


def multi_hot(sets, k: int) -> np.ndarray:
    out = np.zeros((len(sets), k))
    for row, labels in enumerate(sets):
        out[row, list(labels)] = 1.0
    return out


def constant_answer(train_sets, test_sets, k: int) -> dict:
    names = [str(i) for i in range(k)]
    most_common, count = Counter(tuple(s) for s in train_sets).most_common(1)[0]
    y_true = multi_hot(test_sets, k)
    decided = multilabel_metrics(y_true, np.tile(multi_hot([most_common], k), (len(test_sets), 1)), names)
    frequency = np.tile(multi_hot(train_sets, k).mean(axis=0), (len(test_sets), 1))
    ranked = multilabel_metrics(y_true, frequency, names)
    return {
        "label_set": list(most_common),
        "label_set_train_share": count / len(train_sets),
        "distinct_label_sets_in_train": len({tuple(s) for s in train_sets}),
        **{key: decided[key] for key in KEYS if key != "map_macro"},
        "map_macro": ranked["map_macro"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--json")
    args = p.parse_args()

    from hf_transfer.data.builtins import BUILTIN_DATASETS

    recipe = load_recipe(args.recipe, args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_dir = Path(hf_transfer.run(args.recipe, [*args.overrides, f"output.dir={tmp}/run"]))
        seconds = time.perf_counter() - start
        metrics = json.loads((run_dir / "metrics.json").read_text())
    test = metrics["test"]

    data = BUILTIN_DATASETS.get(recipe.data.dataset)(recipe.data.config)
    train_sets = limit(data["train"], recipe.data.max_train_samples, recipe.train.seed)["label"]
    test_sets = limit(data["test"], recipe.data.max_test_samples, recipe.train.seed)["label"]
    constant = constant_answer(train_sets, test_sets, 10)

    print(f"{args.recipe}: {metrics['data']} rows, {seconds:.0f} s")
    print(
        f"constant answer: label set {constant['label_set']} ({constant['label_set_train_share']:.1%} of train, "
        f"{constant['distinct_label_sets_in_train']} distinct sets)"
    )
    print(f"{'metric':<16} {'linear probe':>12} {'constant':>10}")
    for key in KEYS:
        print(f"{key:<16} {test[key]:>12.4f} {constant[key]:>10.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"probe": {k: test[k] for k in KEYS}, "constant": constant}, indent=2))


if __name__ == "__main__":
    main()
