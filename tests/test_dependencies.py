"""Declared versions are true versions: an old or missing dependency says so instead of posing as a recipe error."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest

import hf_transfer.backbones as backbones

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".ci"))
import lowest_constraints  # noqa: E402


def test_a_timm_too_old_for_the_image_backbone_names_the_versions(monkeypatch):
    # timm 1.0.28-1.0.30 lack resolve_model_input_args: importing the backbone fails exactly like this.
    monkeypatch.setitem(sys.modules, "hf_transfer.backbones.timm_image", None)
    monkeypatch.setattr(metadata, "version", lambda name: "1.0.28" if name == "timm" else "0")
    monkeypatch.setattr(
        metadata, "requires", lambda dist: ["torch>=2.14", "timm<2,>=1.0.31", "pytest>=8; extra == 'test'"]
    )
    with pytest.raises(ImportError) as info:
        backbones._import_timm_backbone()
    message = str(info.value)
    assert "timm<2,>=1.0.31" in message and "timm 1.0.28 is installed" in message
    assert "does not serve" not in message


def test_a_missing_timm_says_it_is_not_installed(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setitem(sys.modules, "hf_transfer.backbones.timm_image", None)
    monkeypatch.setattr(metadata, "version", missing)
    with pytest.raises(ImportError, match="timm is not installed"):
        backbones._import_timm_backbone()


def test_the_image_backbone_is_registered_with_the_installed_timm():
    assert backbones._import_timm_backbone().__name__ == "TimmImageBackbone"


def test_every_dependency_has_one_floor_and_the_lowest_job_pins_it():
    declared = lowest_constraints.floors(ROOT / "pyproject.toml")
    assert declared["timm"] == "1.0.31"  # resolve_model_input_args and save_for_hf(data_config=...) need it
    assert declared["transformers"].startswith("5.")  # 4.x is not tested by CI, so not declared
    # The card's `PeftModel.from_pretrained(base, REPO_ID)`: older peft passes `use_auth_token`, gone from hub 1.
    assert tuple(int(x) for x in declared["peft"].split(".")[:2]) >= (0, 18)
    assert {"numpy", "torch", "torchvision", "scikit-learn"} <= set(declared)


def test_ci_runs_the_lowest_versions_job_on_the_dependency_tests():
    assert "bash .ci/lowest.sh" in (ROOT / ".ci" / "run").read_text()
    assert "tests/test_dependencies.py" in (ROOT / ".ci" / "lowest.sh").read_text()
