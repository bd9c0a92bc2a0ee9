"""Multi-label and regression where issue 10 left single-label paths untested: the sweep, the card's PEFT-only and
timm-only snippets, and a multimodal run."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
import yaml
from helpers import colour_pair_csvs
from test_problem_types import (  # noqa: F401 (module fixtures used by name)
    MULTI,
    REGRESSION,
    TOPICS,
    image_data,
    problem_recipe,
    problem_splits,
    run_on,
    text_data,
    topic_rows,
)

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.apps.sweep import BEST_RECIPE_FILE, SWEEP_FILE
from hf_transfer.config.loading import load_recipe

DEFAULT_METRIC = {MULTI: ("f1_macro", "maximize"), REGRESSION: ("rmse", "minimize")}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def topic_files(tmp_path, problem_type) -> dict:
    """jsonl files of topic texts: the list of topics present (multi-label) or how many topic words (regression)."""
    names = list(TOPICS)
    files = {}
    for split, (n, seed) in {"train": (96, 0), "validation": (48, 1), "test": (48, 2)}.items():
        rows = [
            {"text": t, "label": [k for k, on in zip(names, y) if on] if problem_type == MULTI else c}
            for t, y, c in topic_rows(n, seed)
        ]
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(row) + "\n" for row in rows))
    return files


# --------------------------------------------------------------------------------------------------------------------
# 1. hf-transfer sweep
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("problem_type", [MULTI, REGRESSION])
def test_sweep_scores_the_problem_types_metric_in_its_direction_and_keeps_the_problem_type(
    tmp_path, tiny_bert_dir, problem_type, capsys
):
    files = topic_files(tmp_path, problem_type)
    recipe = problem_recipe(
        tmp_path,
        "text",
        tiny_bert_dir,
        problem_type,
        "linear_probe",
        data={"train_files": [str(files["train"])], "validation_files": [str(files["validation"])]}
        | {"test_files": [str(files["test"])]},
        train={"epochs": 2},
    )
    out = tmp_path / "sweep"
    assert main(["sweep", str(recipe), "--trials", "3", "--seed", "0", "--output", str(out)]) == 0
    report = json.loads((out / SWEEP_FILE).read_text())
    metric, direction = DEFAULT_METRIC[problem_type]
    assert report["metric"] == metric and report["direction"] == direction
    values = [trial["value"] for trial in report["trials"]]
    assert len(set(values)) > 1, values  # other learning rates, other scores: the pick below means something
    assert report["best"]["value"] == (max if direction == "maximize" else min)(values)

    tuned = load_recipe(str(out / BEST_RECIPE_FILE))
    assert tuned.problem_type == problem_type
    # `hf-transfer run` on the best recipe trains the same problem to the best trial's validation figure
    assert main(["run", str(out / BEST_RECIPE_FILE)]) == 0
    metrics = json.loads((tuned.output_dir / "metrics.json").read_text())
    assert metrics["validation"][metric] == pytest.approx(report["best"]["value"], rel=1e-4)
    assert json.loads((tuned.output_dir / "hf_transfer.json").read_text())["problem_type"] == problem_type


# --------------------------------------------------------------------------------------------------------------------
# 2. The card's snippets for PEFT alone (LoRA, text) and timm alone (image)
# --------------------------------------------------------------------------------------------------------------------


def module_data(request) -> tuple:
    """test_problem_types' module fixtures (topic texts, digit pictures), imported above under their names."""
    return request.getfixturevalue("text_data"), request.getfixturevalue("image_data")


def library_snippet(run_dir) -> tuple[str, str]:
    """(library, code) of the card's "Without hf-transfer" snippet."""
    text = (run_dir / "README.md").read_text()
    found = re.search(r"Without hf-transfer, with (.+?) alone:\n\n```python\n(.*?)```", text, flags=re.DOTALL)
    assert found, text
    return found.group(1), found.group(2)


def predicted_by_cli(run_dir, inputs, capsys) -> dict:
    capsys.readouterr()
    assert main(["predict", str(run_dir), *inputs, "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)
    return prediction


def assert_snippet_prints(code, prediction, problem_type, capsys):
    capsys.readouterr()
    exec(compile(code, "README.md", "exec"), {"__name__": "__card__"})
    printed = capsys.readouterr().out.strip()
    if problem_type == MULTI:
        assert printed == str(prediction["labels"])
    else:
        values = {k: float(v) for k, v in re.findall(r"'([^']+)': ([-0-9.e]+)", printed)}
        assert values.keys() == prediction["values"].keys(), printed
        for name, value in prediction["values"].items():
            assert values[name] == pytest.approx(value, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("problem_type", [MULTI, REGRESSION])
def test_lora_text_cards_peft_snippet_prints_what_predict_gives(
    tmp_path, monkeypatch, tiny_bert_dir, request, problem_type, capsys
):
    scaling = {"mean": [3.0], "std": [2.0]} if problem_type == REGRESSION else None  # un-scaling must not be lost
    splits = problem_splits(problem_type, "text", *module_data(request), scaling)
    recipe = problem_recipe(tmp_path, "text", tiny_bert_dir, problem_type, "lora", train={"epochs": 1})
    run_dir = run_on(monkeypatch, recipe, splits)
    library, code = library_snippet(run_dir)
    assert library == "PEFT and transformers" and "PeftModel.from_pretrained" in code
    prediction = predicted_by_cli(run_dir, ["A small gem of a movie."], capsys)
    assert_snippet_prints(code, prediction, problem_type, capsys)


@pytest.mark.parametrize("problem_type", [MULTI, REGRESSION])
def test_timm_image_cards_timm_snippet_prints_what_predict_gives(
    tmp_path, monkeypatch, tiny_timm_dir, request, problem_type, capsys
):
    scaling = {"mean": [1.0], "std": [0.8]} if problem_type == REGRESSION else None
    splits = problem_splits(problem_type, "image", *module_data(request), scaling)
    recipe = problem_recipe(tmp_path, "image", tiny_timm_dir, problem_type, "finetune", train={"epochs": 1})
    run_dir = run_on(monkeypatch, recipe, splits)
    library, code = library_snippet(run_dir)
    assert library == "timm" and "timm.create_model" in code
    # the snippet opens image.jpg in the working directory: a test digit stands in for it
    monkeypatch.chdir(tmp_path)
    shutil.copy(splits.test["image"][0], tmp_path / "image.jpg")
    prediction = predicted_by_cli(run_dir, [str(tmp_path / "image.jpg")], capsys)
    assert_snippet_prints(code, prediction, problem_type, capsys)


# --------------------------------------------------------------------------------------------------------------------
# 3. A multimodal regression run
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def colour_scores(tmp_path):
    """csv files (image, text, score): a coloured picture and a colour word; score 10 when they agree, 0 when not,
    so neither input alone decides it."""
    return colour_pair_csvs(tmp_path, {"train": 24, "test": 8}, ("it is {c}",), 10.0, 0.0, target="score")


@pytest.mark.parametrize(
    ("strategy", "train"),
    [
        ({"name": "linear_probe", "head": "mlp", "hidden_size": 64}, {"epochs": 12}),
        # trains on batches of rows (no cached features): the pair collate carries float targets
        ({"name": "finetune"}, {"epochs": 10}),
    ],
    ids=["linear_probe", "finetune"],
)
def test_multimodal_regression_trains_reloads_and_predicts(
    tmp_path, tiny_timm_dir, tiny_bert_dir, colour_scores, strategy, train, capsys
):
    recipe = {
        "task": "multimodal-classification",
        "problem_type": REGRESSION,
        "model": {"image": {"checkpoint": f"local-dir:{tiny_timm_dir}"}, "text": {"checkpoint": str(tiny_bert_dir)}},
        "data": {
            "train_files": [str(colour_scores["train"])],
            "test_files": [str(colour_scores["test"])],
            "label_column": "score",
            "standardize_targets": True,
        },
        "strategy": strategy,
        "train": {"batch_size": 16, "learning_rate": 3e-3, "num_workers": 0, "seed": 0} | train,
        "output": {"dir": str(tmp_path / "outputs" / "run")},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    assert main(["run", str(path)]) == 0
    run_dir = tmp_path / "outputs" / "run"
    metadata = json.loads((run_dir / "hf_transfer.json").read_text())
    assert metadata["problem_type"] == REGRESSION and metadata["label_names"] == ["score"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["rmse"] < 4  # in score units; the mean (5) is 5 off every row

    classifier = hf_transfer.load(run_dir)
    again = classifier.evaluate([str(colour_scores["test"])])
    assert again["rmse"] == pytest.approx(metrics["test"]["rmse"], rel=1e-4)
    image = str(tmp_path / "test_0.png")
    (expected,) = classifier.predict([(image, "it is red")])
    capsys.readouterr()
    assert main(["predict", str(run_dir), "--image", image, "--text", "it is red", "--json"]) == 0
    (printed,) = json.loads(capsys.readouterr().out)
    assert printed["values"]["score"] == pytest.approx(expected["values"]["score"], rel=1e-4, abs=1e-4)
    assert -5 < printed["values"]["score"] < 15  # in score units, not standard deviations
