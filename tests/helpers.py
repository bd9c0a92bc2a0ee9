"""Small helpers for tests that write, run and read back recipes and run folders."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures_models import write_csv_rows
from matplotlib.image import imread
from PIL import Image

from hf_transfer.config.loading import shipped_recipes

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def colour_pair_csvs(
    folder: Path, pictures: dict[str, int], phrases: tuple[str, ...], agree, disagree, target: str = "label"
) -> dict[str, Path]:
    """{split: csv} with columns image (a PNG name), text, `target`: each noisy red or blue picture once with a
    phrase naming its colour (`agree`) and once naming the other (`disagree`), so neither input alone decides it."""
    rng = random.Random(0)
    out = {}
    for split, count in pictures.items():
        rows = []
        for i in range(count):
            colour = list(COLOURS)[i % 2]
            other = next(c for c in COLOURS if c != colour)
            noise = np.random.default_rng(i + 1000 * (split == "test")).normal(0, 20, (32, 32, 3))
            pixels = np.clip(np.array(COLOURS[colour])[None, None] + noise, 0, 255).astype(np.uint8)
            path = folder / f"{split}_{i}.png"
            Image.fromarray(pixels).save(path)
            phrase = rng.choice(phrases) if len(phrases) > 1 else phrases[0]
            rows += [
                {"image": path.name, "text": phrase.format(c=colour), target: agree},
                {"image": path.name, "text": phrase.format(c=other), target: disagree},
            ]
        rng.shuffle(rows)
        out[split] = write_csv_rows(folder / f"{split}.csv", rows, ["image", "text", target])
    return out


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


def recipe_header(path: Path) -> list[str]:
    """The leading comment lines of a recipe file, without '# '."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return lines


def header_command(name: str, kind: str = "Run") -> list[str]:
    """The arguments after `hf-transfer` of a shipped recipe's `# Run:` or `# Override:` line."""
    line = next(line for line in recipe_header(shipped_recipes()[name]) if line.startswith(f"{kind}:"))
    return line.removeprefix(f"{kind}:").split()[1:]


def metrics_of(run_dir) -> dict:
    """What a run folder's metrics.json recorded."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def assert_reloads_like_the_run(run_dir, test_csv, images: list[str] = (), labels: list[str] = ()):
    """The run folder loads back on its own and scores `test_csv` as the run recorded; given image files and their
    labels, it predicts on the files with the accuracy recorded. Returns the loaded classifier."""
    import hf_transfer

    recorded = metrics_of(run_dir)["test"]
    classifier = hf_transfer.load(run_dir)
    again = classifier.evaluate([str(test_csv)])
    assert again["num_samples"] == recorded["num_samples"]
    assert again["accuracy"] == pytest.approx(recorded["accuracy"])
    assert again["log_loss"] == pytest.approx(recorded["log_loss"], abs=1e-4)
    if images:
        predicted = [p["label"] for p in classifier.predict(list(images))]
        assert np.mean([p == t for p, t in zip(predicted, labels, strict=True)]) == pytest.approx(recorded["accuracy"])
    return classifier


def assert_single_valid_png(path: Path) -> np.ndarray:
    """Check `path` is a real PNG, that nothing else (no temporary file) is in its folder; return the image."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    return image
