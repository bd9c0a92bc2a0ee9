"""The run record (`hf_transfer.json`): read into a typed RunRecord, written back the same, refused by field name."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.core.errors import HfTransferError, ModelError
from hf_transfer.runs.record import (
    FORMAT_VERSION,
    BackboneRecord,
    TargetScaling,
    ZeroShotRecord,
    read_record,
    record_from_json,
)

# A linear probe on the tiny BERT (model.hub_id tester/tiny-bert) for the keyword task, recorded by hf-transfer
# before the record was typed: its metadata files, head and tokenizer.
FORMAT_1_RUN = Path(__file__).parent / "data" / "run-format-1"


@pytest.fixture
def recorded() -> dict:
    return json.loads((FORMAT_1_RUN / "hf_transfer.json").read_text())


def test_a_format_1_record_reads_into_fields_and_writes_back_unchanged(recorded):
    record = read_record(FORMAT_1_RUN)
    assert record.format_version == 1 == FORMAT_VERSION
    assert (record.task, record.problem_type, record.strategy) == (
        "text-classification",
        "single_label_classification",
        "linear_probe",
    )
    assert record.strategy_metadata == {"pooling": "mean"} and record.strategy_config["pooling"] == "mean"
    assert record.backbone.library == "transformers" and record.backbone.modality == "text"
    assert record.backbone.hub_id == "tester/tiny-bert" and record.backbone.base == "tester/tiny-bert"
    assert record.backbone.towers == {} and record.zero_shot is None
    assert record.label_names == ["neg", "pos"] and record.weights == ["head.safetensors"]
    assert record.target_scaling is None and record.target_scaling_in_weights is False
    assert record.versions["transformers"] == "5.25.0"
    assert record.to_json() == recorded


def test_a_run_folder_recorded_before_the_typed_record_predicts_evaluates_and_pushes(
    tmp_path, tiny_bert_dir, keyword_csvs, local_hub_cache, capsys
):
    run_dir = tmp_path / "old-run"
    shutil.copytree(FORMAT_1_RUN, run_dir)
    local_hub_cache("tester/tiny-bert", tiny_bert_dir)  # its base model, by the Hub id it recorded

    classifier = hf_transfer.load(run_dir)
    assert classifier.record == read_record(run_dir)
    assert classifier.metadata == json.loads((run_dir / "hf_transfer.json").read_text())  # the untyped view it had
    assert classifier.predict(["a wonderful fun film", "a dull boring plot"])[0]["label"] in ("neg", "pos")
    recorded_test = json.loads((run_dir / "metrics.json").read_text())["test"]
    measured = classifier.evaluate([str(keyword_csvs["test"])])
    assert measured["num_samples"] == recorded_test["num_samples"] == 80
    assert measured["accuracy"] == pytest.approx(recorded_test["accuracy"], abs=0.03)

    assert main(["push", str(run_dir), "--repo-id", "me/old-run", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Dry run, nothing was sent" in out and "hf_transfer.json" in out and "head.safetensors" in out


def test_fields_added_after_the_first_format_1_release_read_as_those_runs_trained(recorded):
    for key in ("problem_type", "target_scaling", "target_scaling_in_weights"):
        del recorded[key]
    record = record_from_json(recorded, "old.json")
    assert record.problem_type == "single_label_classification"
    assert record.target_scaling is None and record.target_scaling_in_weights is False


def test_a_multimodal_record_with_a_zero_shot_baseline_and_target_scaling_round_trips(recorded):
    tower = {"library": "timm", "modality": "image", "checkpoint": "resnet18", "hub_id": None, "revision": None}
    recorded["backbone"] = {
        "library": "multimodal",
        "modality": "multimodal",
        "checkpoint": "resnet18 + tester/tiny-bert",
        "hub_id": None,
        "revision": None,
        "checkpoint_path": None,
        "fusion": "concat",
        "image": tower | {"checkpoint_path": None},
        "text": tower | {"library": "transformers", "modality": "text", "checkpoint": "b", "checkpoint_path": "/m/b"},
    }
    recorded["target_scaling"] = {"mean": [100.0], "std": [10.0]}
    recorded["zero_shot"] = {
        "checkpoint": "tester/clip",
        "kind": "image",
        "templates": ["a photo of a {label}"],
        "descriptions": {"pos": ["good", "great"]},
        "prompts": {"neg": ["a photo of a neg"], "pos": ["a photo of a good", "a photo of a great"]},
        "checkpoint_path": None,
    }
    record = record_from_json(recorded, "mm.json")
    assert record.backbone.towers["text"] == BackboneRecord("transformers", "text", "b", checkpoint_path="/m/b")
    assert record.backbone.fusion == "concat" and list(record.backbone.towers) == ["image", "text"]
    assert record.target_scaling == TargetScaling(mean=[100.0], std=[10.0])
    assert isinstance(record.zero_shot, ZeroShotRecord) and record.zero_shot.temperature is None
    assert record.to_json() == recorded


def _without(data: dict, dotted: str) -> dict:
    data = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    inner = data
    for key in parents:
        inner = inner[key]
    del inner[last]
    return data


def _with(data: dict, dotted: str, value) -> dict:
    data = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    inner = data
    for key in parents:
        inner = inner[key]
    inner[last] = value
    return data


@pytest.mark.parametrize("field", ["format", "task", "strategy", "label_names", "backbone", "backbone.library"])
def test_a_missing_field_is_named_with_the_file(recorded, field):
    with pytest.raises(ModelError) as info:
        record_from_json(_without(recorded, field), "/runs/x/hf_transfer.json")
    message = str(info.value)
    assert "'/runs/x/hf_transfer.json' has no field " + field + ";" in message and "\n" not in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("format", "1", "a whole number"),
        ("label_names", ["neg", 3], "a list of texts"),
        ("label_names", "neg", "a list"),
        ("backbone", "bert", "an object"),
        ("backbone.checkpoint", 7, "a text"),
        ("target_scaling_in_weights", 1, "true or false"),
        ("target_scaling", {"mean": [1.0], "std": ["x"]}, "a list of numbers"),
        ("strategy_config", [], "an object"),
    ],
)
def test_a_field_of_the_wrong_type_is_named_with_what_it_should_be(recorded, field, value, expected):
    with pytest.raises(ModelError) as info:
        record_from_json(_with(recorded, field, value), "/runs/x/hf_transfer.json")
    message = str(info.value)
    where = "target_scaling.std" if field == "target_scaling" else field
    assert f"its field {where} should be {expected}," in message and "/runs/x/hf_transfer.json" in message
    assert "\n" not in message


def test_a_record_from_a_newer_hf_transfer_is_refused_by_its_format(recorded):
    newer = r"written by a newer hf-transfer \(format 2; this one reads up to format 1\); upgrade hf-transfer"
    with pytest.raises(ModelError, match=newer):
        record_from_json(recorded | {"format": FORMAT_VERSION + 1}, "x.json")


def test_a_folder_without_a_readable_record_says_what_it_is(tmp_path):
    with pytest.raises(HfTransferError, match="does not exist"):
        read_record(tmp_path / "nowhere")
    with pytest.raises(ModelError, match=r"not an hf-transfer run folder \(hf_transfer.json is missing\)"):
        read_record(tmp_path)
    (tmp_path / "hf_transfer.json").write_text("{not json")
    with pytest.raises(ModelError, match="is damaged"):
        read_record(tmp_path)
    (tmp_path / "hf_transfer.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="holds no JSON object"):
        read_record(tmp_path)
