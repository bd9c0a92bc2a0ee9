"""The multi-label and regression recipes (issue 10), run as their headers show: the Hub ones on tiny stand-ins for
their checkpoints and datasets, the offline digit-grid ones on the shared EfficientNet-Lite0; one multi-label and one
regression run pushed to the local Hub server and loaded back by repo id."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value
from fixtures_models import EFFICIENTNET_HUB_ID
from helpers import header_command
from hub_server import running_local_hub, use_local_hub
from huggingface_hub import ModelCard

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.config.loading import load_recipe
from hf_transfer.core.errors import DataError
from hf_transfer.data.builtins import load_sklearn_digits_multilabel, load_sklearn_digits_sum
from hf_transfer.data.splits import limit
from hf_transfer.hub.push import push_run
from hf_transfer.metrics.multilabel import multilabel_metrics

REPO = Path(__file__).resolve().parents[1]
BERT_HUB_ID = "google-bert/bert-base-uncased"
GO_EMOTIONS = "google-research-datasets/go_emotions"
GO_EMOTIONS_NAMES = (
    "admiration amusement anger annoyance approval caring confusion curiosity desire disappointment disapproval "
    "disgust embarrassment excitement fear gratitude grief joy love nervousness optimism pride realization relief "
    "remorse sadness surprise neutral"
).split()
AID = "jonathan-roberts1/AID_MultiLabel"
AID_NAMES = (
    "airplane bare-soil buildings cars chaparral court dock field grass mobile-home pavement sand sea ship tanks "
    "trees water"
).split()
RECIPES = {
    "text/bert-base-lora-go-emotions": "multi_label_classification",
    "text/bert-base-finetune-stsb": "regression",
    "images/resnet50-finetune-aid-multilabel": "multi_label_classification",
    "images/efficientnet-lite0-multilabel-digits": "multi_label_classification",
    "images/efficientnet-lite0-regression-digits-sum": "regression",
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_the_issue_recipes_are_shipped_with_their_problem_type(name):
    recipe = load_recipe(name)
    assert recipe.problem_type == RECIPES[name]
    assert header_command(name) == ["run", name]
    if name.startswith("text/"):
        assert recipe.model.checkpoint == BERT_HUB_ID  # the BERT-family classic, by its Hub id
    if "digits" in name:
        assert recipe.data.dataset.startswith("sklearn:digits-")  # built offline
        assert (
            header_command(name, "Override")[-1] == "model.checkpoint=local-dir:../shared/models/tf_efficientnet_lite0"
        )


# --------------------------------------------------------------------------------------------------------------------
# Stand-ins for the Hub datasets, with the features the real ones have
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def hub_datasets(monkeypatch):
    """`add(dataset_id, config, DatasetDict)`: `datasets.load_dataset(dataset_id, config)` returns the stand-in; any
    other call goes to `datasets` as usual (local files keep loading)."""
    real = datasets.load_dataset
    stand_ins = {}

    def load_dataset(path, name=None, *args, **kwargs):
        if path in stand_ins:
            config, data = stand_ins[path]
            assert name == config, f"{path} asked with config {name}, the recipe's is {config}"
            return data
        return real(path, name, *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return lambda path, config, data: stand_ins.__setitem__(path, (config, data))


EMOTION_WORDS = {"gratitude": "thanks", "joy": "happy", "anger": "angry", "sadness": "sad", "love": "love"}


def go_emotions_stand_in(seed: int = 0) -> DatasetDict:
    """GoEmotions `simplified`'s columns and features (text, labels: Sequence(ClassLabel) of its 28 names, id): each
    comment carries 0-2 of five emotions, said by a keyword among filler words, or none (neutral)."""
    rng = random.Random(seed)
    filler = "the movie was a it is and of this that with story really just so".split()
    features = Features(
        {"text": Value("string"), "labels": Sequence(ClassLabel(names=GO_EMOTIONS_NAMES)), "id": Value("string")}
    )
    splits = {}
    for split, n in (("train", 120), ("validation", 40), ("test", 40)):
        rows = {"text": [], "labels": [], "id": []}
        for i in range(n):
            emotions = rng.sample(sorted(EMOTION_WORDS), rng.choice([1, 1, 2])) if i % 4 else []
            words = [rng.choice(filler) for _ in range(rng.randint(4, 10))]
            for emotion in emotions:
                words.insert(rng.randrange(len(words) + 1), EMOTION_WORDS[emotion])
            rows["text"].append(" ".join(words))
            rows["labels"].append(sorted(GO_EMOTIONS_NAMES.index(e) for e in emotions or ["neutral"]))
            rows["id"].append(f"{split}{i}")
        splits[split] = Dataset.from_dict(rows, features=features, split=split)
    return DatasetDict(splits)


def stsb_stand_in(seed: int = 0) -> DatasetDict:
    """GLUE `stsb`'s columns and features (sentence1, sentence2, label float32 0-5, idx); the test split's labels are
    hidden (-1) as GLUE's are. The score is the share of words the two sentences have in common, times five."""
    rng = random.Random(seed)
    vocab = "man woman dog cat plays guitar piano runs park eats food rides horse reads book sings song".split()
    features = Features(
        {"sentence1": Value("string"), "sentence2": Value("string"), "label": Value("float32"), "idx": Value("int32")}
    )
    splits = {}
    for split, n in (("train", 120), ("validation", 40), ("test", 20)):
        rows = {"sentence1": [], "sentence2": [], "label": [], "idx": []}
        for i in range(n):
            first = rng.sample(vocab, 5)
            kept = rng.randint(0, 5)
            second = first[:kept] + rng.sample([w for w in vocab if w not in first], 5 - kept)
            rows["sentence1"].append(" ".join(first))
            rows["sentence2"].append(" ".join(rng.sample(second, 5)))
            rows["label"].append(float(kept) if split != "test" else -1.0)
            rows["idx"].append(i)
        splits[split] = Dataset.from_dict(rows, features=features, split=split)
    return DatasetDict(splits)


def aid_stand_in() -> DatasetDict:
    """AID_MultiLabel's one `train` split (image, label: a list of ids into its 17 names), its images replaced by
    digit grids: the digits present tag labels 0-9, and every grid one of labels 10-16 as well."""
    grids = load_sklearn_digits_multilabel()["train"].select(range(90))
    labels = [sorted({*digits, 10 + sum(digits) % 7}) for digits in grids["label"]]
    features = Features({"image": datasets.Image(), "label": Sequence(ClassLabel(names=AID_NAMES))})
    return DatasetDict({"train": Dataset.from_dict({"image": grids["image"], "label": labels}, features=features)})


# --------------------------------------------------------------------------------------------------------------------
# The Hub recipes, as their headers show, on stand-ins
# --------------------------------------------------------------------------------------------------------------------


def test_go_emotions_recipe_runs_as_shown_and_predicts_any_number_of_emotions(
    tmp_path, tiny_bert_dir, local_hub_cache, hub_datasets, monkeypatch, capsys
):
    local_hub_cache(BERT_HUB_ID, tiny_bert_dir)
    hub_datasets(GO_EMOTIONS, "simplified", go_emotions_stand_in())
    monkeypatch.chdir(tmp_path)
    assert main([*header_command("text/bert-base-lora-go-emotions"), "train.epochs=1"]) == 0
    run_dir = tmp_path / "outputs" / "bert-base-lora-go-emotions"
    metadata = json.loads((run_dir / "hf_transfer.json").read_text())
    assert metadata["problem_type"] == "multi_label_classification"
    assert metadata["label_names"] == GO_EMOTIONS_NAMES  # from the Sequence(ClassLabel), in the dataset's order
    assert len(json.loads((run_dir / "thresholds.json").read_text())["thresholds"]) == 28
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert test["num_samples"] == 40 and len(test["per_label"]) == 28
    assert test["f1_macro"] == pytest.approx(np.mean([row["f1"] for row in test["per_label"].values()]))

    capsys.readouterr()
    assert main(["predict", str(run_dir), "thanks so happy", "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)
    assert list(prediction["scores"]) == GO_EMOTIONS_NAMES
    assert set(prediction["labels"]) <= set(GO_EMOTIONS_NAMES)


def test_stsb_recipe_runs_as_shown_and_predicts_a_score_for_a_sentence_pair(
    tmp_path, tiny_bert_dir, local_hub_cache, hub_datasets, monkeypatch
):
    local_hub_cache(BERT_HUB_ID, tiny_bert_dir)
    hub_datasets("nyu-mll/glue", "stsb", stsb_stand_in())
    monkeypatch.chdir(tmp_path)
    assert main([*header_command("text/bert-base-finetune-stsb"), "train.epochs=1"]) == 0
    run_dir = tmp_path / "outputs" / "bert-base-finetune-stsb"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["report_split"] == "validation"  # GLUE's test labels are hidden: never reported on
    assert {"pearson", "spearman", "rmse"} <= set(metrics["validation"])
    # transformers' own config says regression, so its pipeline gives the raw score
    assert json.loads((run_dir / "config.json").read_text())["problem_type"] == "regression"
    model = hf_transfer.load(run_dir)
    (prediction,) = model.predict([("a man plays guitar", "a man plays piano")])
    assert list(prediction["values"]) == ["label"] and np.isfinite(prediction["values"]["label"])
    with pytest.raises(DataError, match=r"reads sentence pairs \(sentence1, sentence2\); give each input as a"):
        model.predict(["a man plays guitar"])  # one sentence alone would be scored against an empty pair


def test_aid_multilabel_recipe_runs_as_shown_on_a_stand_in(
    tmp_path, tiny_timm_dir, local_hub_cache, hub_datasets, monkeypatch
):
    local_hub_cache("timm/resnet50.a1_in1k", tiny_timm_dir)
    hub_datasets(AID, None, aid_stand_in())
    monkeypatch.chdir(tmp_path)
    assert main([*header_command("images/resnet50-finetune-aid-multilabel"), "train.epochs=1"]) == 0
    run_dir = tmp_path / "outputs" / "resnet50-finetune-aid-multilabel"
    metadata = json.loads((run_dir / "hf_transfer.json").read_text())
    assert metadata["label_names"] == AID_NAMES
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["report_split"] == "validation" and metrics["data"]["validation"] == 18  # 20% carved
    precisions = [row["average_precision"] for row in metrics["validation"]["per_label"].values()]
    assert metrics["validation"]["map_macro"] == pytest.approx(np.mean([p for p in precisions if p is not None]))


# --------------------------------------------------------------------------------------------------------------------
# The offline multi-label recipe on the real EfficientNet-Lite0 weights
# --------------------------------------------------------------------------------------------------------------------


def constant_answer(train_sets: list[list[int]], test_sets: list[list[int]], k: int) -> dict:
    """What always answering the most frequent label set of train scores on test; its scores for mAP are each label's
    train frequency (the same for every row, so each label's AP is its test prevalence)."""

    def multi_hot(sets):
        out = np.zeros((len(sets), k))
        for row, labels in enumerate(sets):
            out[row, list(labels)] = 1.0
        return out

    most_common, _ = Counter(tuple(s) for s in train_sets).most_common(1)[0]
    y_true = multi_hot(test_sets)
    answer = np.tile(multi_hot([most_common]), (len(test_sets), 1))
    decided = multilabel_metrics(y_true, answer, [str(i) for i in range(k)])
    frequency = np.tile(multi_hot(train_sets).mean(axis=0), (len(test_sets), 1))
    ranked = multilabel_metrics(y_true, frequency, [str(i) for i in range(k)])
    return {
        "label_set": list(most_common),
        "subset_accuracy": decided["subset_accuracy"],
        "f1_micro": decided["f1_micro"],
        "map_macro": ranked["map_macro"],
    }


@pytest.mark.slow
def test_multilabel_digits_probe_is_far_above_always_answering_the_most_frequent_label_set(
    tmp_path, shared_dir, monkeypatch
):
    monkeypatch.chdir(REPO)  # the header's checkpoint path is relative to the repository
    name = "images/efficientnet-lite0-multilabel-digits"
    small = ["data.max_train_samples=600", "data.max_test_samples=200"]
    run_dir = tmp_path / "run"
    assert main([*header_command(name, "Override"), *small, f"output.dir={run_dir}"]) == 0
    test = json.loads((run_dir / "metrics.json").read_text())["test"]

    recipe = load_recipe(name)
    grids = load_sklearn_digits_multilabel()
    train_sets = limit(grids["train"], 600, recipe.train.seed)["label"]
    test_sets = limit(grids["test"], 200, recipe.train.seed)["label"]
    constant = constant_answer(train_sets, test_sets, 10)
    # 2-4 distinct digits of ten give hundreds of label sets: the most frequent is right on a few rows at most
    assert constant["subset_accuracy"] < 0.05
    assert test["subset_accuracy"] > constant["subset_accuracy"] + 0.05
    assert test["f1_micro"] > constant["f1_micro"] + 0.2
    assert test["map_macro"] > constant["map_macro"] + 0.25


def test_digit_grids_are_shared_by_the_multilabel_and_sum_builtins():
    labels, sums = load_sklearn_digits_multilabel()["test"], load_sklearn_digits_sum()["test"]
    assert labels[7]["image"].tobytes() == sums[7]["image"].tobytes()
    assert sums.features["sum"].dtype == "float32"
    # the sum counts a digit drawn twice twice, so it is at least the sum of the distinct digits
    assert all(s >= sum(d) for s, d in zip(sums["sum"], labels["label"]))
    assert 0 <= min(sums["sum"]) and max(sums["sum"]) <= 36


# --------------------------------------------------------------------------------------------------------------------
# Push to the local Hub server and load back by repo id
# --------------------------------------------------------------------------------------------------------------------


def model_index_metrics(card_text: str) -> dict[str, str]:
    card = ModelCard(card_text)
    card.validate()
    results = card.data.to_dict()["model-index"][0]["results"][0]
    return {m["name"]: m["type"] for m in results["metrics"]}


def test_a_multilabel_text_run_pushed_loads_back_by_repo_id_and_predicts_the_same(
    tmp_path, tiny_bert_dir, local_hub_cache, hub_datasets, monkeypatch
):
    local_hub_cache(BERT_HUB_ID, tiny_bert_dir)
    hub_datasets(GO_EMOTIONS, "simplified", go_emotions_stand_in())
    monkeypatch.chdir(tmp_path)
    assert main([*header_command("text/bert-base-lora-go-emotions"), "train.epochs=2"]) == 0
    run_dir = tmp_path / "outputs" / "bert-base-lora-go-emotions"
    texts = ["thanks so happy", "the movie was sad and angry", "it is a story"]
    local = hf_transfer.load(run_dir)
    scores, predictions = local.predict_proba(texts), local.predict(texts)

    with running_local_hub(monkeypatch, tmp_path) as hub:
        hub.add_files(BERT_HUB_ID, tiny_bert_dir)
        push_run(run_dir, "tester/go-emotions")
        files = hub.files("tester/go-emotions")
        assert {"thresholds.json", "adapter_model.safetensors", "per_label.png"} <= set(files)
        types = model_index_metrics(files["README.md"].decode())
        assert types == {
            "f1_micro": "f1",
            "f1_macro": "f1",
            "f1_samples": "f1",
            "subset_accuracy": "accuracy",
            "map_macro": "map",
        }
        meta = ModelCard(files["README.md"].decode()).data
        assert meta.datasets == [GO_EMOTIONS]

        use_local_hub(monkeypatch, hub, cache_dir=tmp_path / "fresh_cache")
        remote = hf_transfer.load("tester/go-emotions")
        assert remote.label_names == GO_EMOTIONS_NAMES
        assert remote.predict_proba(texts) == pytest.approx(scores, abs=1e-6)
        assert [p["labels"] for p in remote.predict(texts)] == [p["labels"] for p in predictions]


def test_a_regression_image_run_pushed_loads_back_by_repo_id_and_predicts_the_same(
    tmp_path, tiny_timm_dir, local_hub_cache, monkeypatch
):
    """The offline regression recipe on a stand-in for EfficientNet-Lite0: standardised targets, so the same values
    back from the Hub mean the scaling travelled with the head."""
    local_hub_cache(EFFICIENTNET_HUB_ID, tiny_timm_dir)
    monkeypatch.chdir(tmp_path)
    name = "images/efficientnet-lite0-regression-digits-sum"
    small = ["data.max_train_samples=120", "data.max_test_samples=40", "train.epochs=3"]
    assert main([*header_command(name), *small]) == 0
    run_dir = tmp_path / "outputs" / "efficientnet-lite0-regression-digits-sum"
    paths = []
    for i, row in enumerate(load_sklearn_digits_sum()["test"].select(range(4))):
        paths.append(str(tmp_path / f"grid_{i}.png"))
        row["image"].save(paths[-1])
    local = hf_transfer.load(run_dir).predict(paths)
    values = [p["values"]["sum"] for p in local]
    # in the sum's units, not standardised ones: a head that learnt anything lands near the mean of 13.5
    assert 3 < float(np.mean(values)) < 25

    with running_local_hub(monkeypatch, tmp_path) as hub:
        hub.add_files(EFFICIENTNET_HUB_ID, tiny_timm_dir)
        push_run(run_dir, "tester/digits-sum")
        files = hub.files("tester/digits-sum")
        assert {"head.safetensors", "predictions.png", "residuals.png"} <= set(files)
        types = model_index_metrics(files["README.md"].decode())
        assert types == {
            "rmse": "rmse",
            "mae": "mae",
            "r2": "r_squared",
            "pearson": "pearsonr",
            "spearman": "spearmanr",
        }

        use_local_hub(monkeypatch, hub, cache_dir=tmp_path / "fresh_cache")
        remote = hf_transfer.load("tester/digits-sum")
        assert remote.label_names == ["sum"]
        assert [p["values"]["sum"] for p in remote.predict(paths)] == pytest.approx(values, abs=1e-5)
