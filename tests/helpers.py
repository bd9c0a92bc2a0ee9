"""Small helpers for tests that write and run recipes."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_recipe(path: Path, **sections) -> Path:
    """A recipe file from keyword sections (model=..., data=..., strategy=..., train=...)."""
    data = {"description": "test recipe", "task": "text-classification"} | sections
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def text_recipe(tmp_path: Path, checkpoint: Path, csvs: dict, strategy, name: str = "run", **overrides) -> Path:
    train = {"epochs": 3, "batch_size": 16, "learning_rate": 1e-3, "seed": 0, "log_every_steps": 5}
    train |= overrides.pop("train", {})
    data = {"train_files": [str(csvs["train"])], "test_files": [str(csvs["test"])]} | overrides.pop("data", {})
    return write_recipe(
        tmp_path / f"{name}.yaml",
        model={"checkpoint": str(checkpoint)},
        data=data,
        strategy=strategy,
        train=train,
        output={"dir": str(tmp_path / "outputs" / name)},
        **overrides,
    )
