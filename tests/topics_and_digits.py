"""Data for multi-label and regression tests built as `Splits` (what the data loader hands the runner): texts with
several topics, digits with several properties; a count or a digit's value as the target. `text_data` and
`image_data` (in conftest.py) are built from these."""

from __future__ import annotations

import json
import random
from pathlib import Path

from datasets import Dataset
from fixtures_models import DIGIT_NAMES
from helpers import write_recipe

import hf_transfer
from hf_transfer.data.splits import Splits

MULTI = "multi_label_classification"
REGRESSION = "regression"
SINGLE = "single_label_classification"
TOPICS = {"sport": ["goal", "match", "team"], "music": ["song", "band", "guitar"], "food": ["pizza", "bread", "soup"]}
FILLER = "the a it was is and of this that with story film good bad".split()


def topic_rows(n: int, seed: int) -> list[tuple[str, list[float], float]]:
    """(text, multi-hot over TOPICS, how many topic words) rows: each topic appears with probability 0.4."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        present = [rng.random() < 0.4 for _ in TOPICS]
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
        count = 0
        for on, keywords in zip(present, TOPICS.values()):
            for _ in range(rng.randint(1, 2) if on else 0):
                words.insert(rng.randrange(len(words) + 1), rng.choice(keywords))
                count += 1
        rows.append((" ".join(words), [float(p) for p in present], float(count)))
    return rows


def topic_jsonl_files(folder: Path, problem_type: str) -> dict[str, Path]:
    """{split: jsonl file} of topic texts (train 96, validation 48, test 48 rows) labelled with the list of topics
    present (multi-label) or how many topic words (regression)."""
    names = list(TOPICS)
    files = {}
    for split, (n, seed) in {"train": (96, 0), "validation": (48, 1), "test": (48, 2)}.items():
        rows = [
            {"text": t, "label": [k for k, on in zip(names, y) if on] if problem_type == MULTI else c}
            for t, y, c in topic_rows(n, seed)
        ]
        files[split] = folder / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(row) + "\n" for row in rows))
    return files


DIGIT_PROPERTIES = ("even", "round", "large")  # round: 0, 6, 8, 9 have a loop


def digit_targets(label: str) -> tuple[list[float], float]:
    digit = DIGIT_NAMES.index(label)
    return [float(digit % 2 == 0), float(digit in (0, 6, 8, 9)), float(digit > 1)], float(digit)


def splits_of(problem_type, inputs, column, labels, names, scaling=None) -> Splits:
    """Splits of (train, validation, test) row lists; regression labels standardised with `scaling` as the data
    loader does with data.standardize_targets."""

    def dataset(part):
        xs, ys = part
        if scaling:
            ys = [[(v - m) / s for v, m, s in zip(y, scaling["mean"], scaling["std"])] for y in ys]
        return Dataset.from_dict({column: xs, "labels": ys})

    train, validation, test = (dataset((inputs[i], labels[i])) for i in range(3))
    return Splits(train, validation, test, names, problem_type=problem_type, target_scaling=scaling)


def problem_splits(problem_type, modality, text_data, image_data, scaling=None) -> Splits:
    inputs, multi, values = text_data if modality == "text" else image_data
    column = "text" if modality == "text" else "image"
    if problem_type == MULTI:
        names = list(TOPICS) if modality == "text" else list(DIGIT_PROPERTIES)
        return splits_of(MULTI, inputs, column, multi, names)
    return splits_of(REGRESSION, inputs, column, values, ["count" if modality == "text" else "digit"], scaling)


def raw_rows(splits: Splits, split: str = "test") -> Dataset:
    """A split's rows with regression labels back in the targets' units (what `hf-transfer eval` reads)."""
    rows = getattr(splits, split)
    if not splits.target_scaling:
        return rows
    mean, std = splits.target_scaling["mean"], splits.target_scaling["std"]
    return rows.map(lambda row: {"labels": [v * s + m for v, m, s in zip(row["labels"], mean, std)]})


STRATEGY_SETTINGS = {
    "linear_probe": ({"name": "linear_probe", "pooling": "mean"}, 1e-2),
    "finetune": ("finetune", 2e-3),
    "lora": ({"name": "lora", "r": 4, "alpha": 8}, 5e-3),
    "dora": ({"name": "lora", "r": 4, "alpha": 8, "use_dora": True}, 5e-3),
    "ia3": ("ia3", 2e-2),
}


def problem_recipe(tmp_path, modality, checkpoint, problem_type, strategy, name="run", library="auto", **sections):
    strategy_section, lr = STRATEGY_SETTINGS[strategy]
    train = {"epochs": 3, "batch_size": 16, "learning_rate": lr, "seed": 0, "log_every_steps": 2}
    train |= sections.pop("train", {})
    data = {"train_files": ["unused.csv"]}
    if modality == "image":
        data |= {"augment": "none"}
    return write_recipe(
        tmp_path / f"{name}.yaml",
        task="text-classification" if modality == "text" else "image-classification",
        problem_type=problem_type,
        model={"checkpoint": str(checkpoint), "library": library},
        data=data | sections.pop("data", {}),
        strategy=strategy_section,
        train=train,
        output={"dir": str(tmp_path / "outputs" / name)},
        **sections,
    )


def run_on(monkeypatch, recipe_path, splits: Splits):
    """Run a recipe on `splits` (standing in for what the data loader reads from the recipe's files)."""
    monkeypatch.setattr("hf_transfer.runs.runner.load_splits", lambda *args, **kwargs: splits)
    return hf_transfer.run(str(recipe_path))


# Topic texts as CSV rows, read as a user's file would be: topics as "sport|food" strings (data.label_separator),
# the number of topic words as a numeric target, and a mood word for a single-label target.
CSV_FILLER = "the a it was is and of this that with story good".split()


def topic_csv_rows(n: int, seed: int) -> list[dict]:
    """Rows with text, topics ("sport|food", each present with probability 0.4), the number of topic words
    (count), and mood ("up" / "down": which of two words is in the text)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        present = [name for name in TOPICS if rng.random() < 0.4]
        words = [rng.choice(CSV_FILLER) for _ in range(rng.randint(3, 6))]
        count = 0
        for name in present:
            for _ in range(rng.randint(1, 3)):
                words.insert(rng.randrange(len(words) + 1), rng.choice(TOPICS[name]))
                count += 1
        mood = "up" if i % 2 else "down"
        words.insert(rng.randrange(len(words) + 1), {"up": "happy", "down": "sad"}[mood])
        rows.append({"text": " ".join(words), "topics": "|".join(present), "count": count, "mood": mood})
    return rows


def topic_recipe(tmp_path, checkpoint, csvs, problem_type, strategy="linear_probe", name="run", **sections) -> str:
    data = {"train_files": [str(csvs["train"])], "test_files": [str(csvs["test"])]}
    if problem_type == MULTI:
        data |= {"label_column": "topics", "label_separator": "|"}
    elif problem_type == REGRESSION:
        data |= {"label_column": "count"}
    else:
        data |= {"label_column": "mood"}
    train = {"epochs": 4, "batch_size": 16, "learning_rate": 1e-2, "seed": 0, "log_every_steps": 5}
    return str(
        write_recipe(
            tmp_path / f"{name}.yaml",
            problem_type=problem_type,
            model={"checkpoint": str(checkpoint)},
            data=data | sections.pop("data", {}),
            strategy=strategy,
            train=train | sections.pop("train", {}),
            output={"dir": str(tmp_path / "outputs" / name)},
            **sections,
        )
    )
