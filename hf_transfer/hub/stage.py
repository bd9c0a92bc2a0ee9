"""What a pushed repo holds, staged in a temporary folder: the run folder's shareable files with what only made sense
on this machine rewritten, a card rendered for the repo, and a last scan that refuses any token or local path.

What a repo holds: the weights (safetensors), adapter_config.json / config.json, labels.json (id2label, label2id),
the tokenizer or image preprocessing config, hf_transfer.json (how to load it), recipe.yaml, metrics.json, the
plots and README.md. Never: checkpoints, optimizer states, caches, pickles, tokens or absolute local paths.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from hf_transfer.core.errors import HubError
from hf_transfer.runs.folder import METADATA_FILE, METRICS_FILE, RECIPE_FILE, read_recipe_dict, write_json, write_yaml
from hf_transfer.runs.record import RunRecord, read_record, record_from_json, write_record

CARD_FILE = "README.md"
ADAPTER_CONFIG_FILE = "adapter_config.json"

# Only top-level files of these kinds leave the machine; sub-folders (checkpoints, caches) never do.
PUSHED_SUFFIXES = frozenset(
    {".safetensors", ".json", ".yaml", ".yml", ".txt", ".model", ".png", ".jpg", ".md", ".jinja", ".tiktoken"}
)
# Training state that may sit beside the weights under a pushable suffix.
NEVER_PUSHED = (
    "optimizer*",
    "scheduler*",
    "rng_state*",
    "random_states*",
    "trainer_state*",
    "training_args*",
    "*.tmp",
)
# Files a hf-transfer push owns in a repo: the ones this run does not have are deleted in the same commit, so that
# pushing a fine-tuned run where a LoRA run was leaves no stale adapter_config.json behind. Other files stay.
STALE_PATTERNS = ["*.safetensors", "*.json", "*.yaml", "*.yml", "*.png", "*.bin", "*.model", "vocab.txt", "merges.txt"]
# Copied as links: large and never rewritten.
LINKED_SUFFIXES = (".safetensors", ".png", ".jpg", ".model")
# What a Hugging Face access token looks like (hf_ and 34 letters), whoever's it is.
HF_TOKEN_PATTERN = re.compile(rb"\bhf_[A-Za-z]{34}\b")


def looks_local(checkpoint: str) -> bool:
    """Whether a recorded checkpoint is a folder on this machine rather than a name a Hub or library resolves."""
    return checkpoint.startswith("local-dir:") or Path(checkpoint).exists()


def _is_absolute_local_path(value: str) -> bool:
    text = value.removeprefix("local-dir:")
    if text.startswith("~"):
        return True
    for pure in (PurePosixPath(text), PureWindowsPath(text)):
        if pure.is_absolute() and len(pure.parts) >= 3:
            return True
    return bool(PureWindowsPath(text).drive) and len(PureWindowsPath(text).parts) >= 2


def _without_local_paths(value: Any) -> Any:
    """`value` with every absolute local path replaced by its file name (`/home/me/data/train.csv` -> `train.csv`)."""
    if isinstance(value, dict):
        return {k: _without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_local_paths(v) for v in value]
    if isinstance(value, str) and _is_absolute_local_path(value):
        text = value.removeprefix("local-dir:")
        return PureWindowsPath(text).name if "\\" in text else PurePosixPath(text).name
    return value


def _pushable(name: str) -> bool:
    return (
        not name.startswith(".")
        and Path(name).suffix.lower() in PUSHED_SUFFIXES
        and not any(fnmatch.fnmatch(name, pattern) for pattern in NEVER_PUSHED)
    )


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _load_form(library: str, hub_id: str) -> str:
    """How the backbone's library names a Hub checkpoint."""
    return f"hf-hub:{hub_id}" if library == "timm" else hub_id


def stage_run(
    run_dir: Path,
    staging: Path,
    repo_id: str,
    base_model: str | None,
    revision: str | None = None,
) -> tuple[list[str], dict]:
    """Fill `staging` with what the repo will hold; returns (skipped run-folder entries, card metadata)."""
    from hf_transfer.config.recipe import recipe_from_dict
    from hf_transfer.runs.card import build_model_card

    staging.mkdir(parents=True)
    skipped = []
    for entry in sorted(run_dir.iterdir()):
        if entry.name == CARD_FILE:
            continue  # rendered again below, for the repo
        if not entry.is_file() or not _pushable(entry.name):
            skipped.append(entry.name + ("/" if entry.is_dir() else ""))
            continue
        target = staging / entry.name
        if entry.suffix.lower() in LINKED_SUFFIXES:
            target.symlink_to(entry.resolve())
        else:
            shutil.copyfile(entry, target)

    record = read_record(staging)
    backbone = record.backbone
    bundled = backbone.bundled
    if bundled:  # a source stage's weights under the adapter or head: the repo needs them to load
        skipped.remove(bundled + "/")
        (staging / bundled).mkdir()
        for entry in sorted((run_dir / bundled).iterdir()):
            if entry.is_file() and _pushable(entry.name):
                shutil.copyfile(entry, staging / bundled / entry.name)
    towers = {}
    for tower, described in backbone.towers.items():
        # a multimodal run's per-tower preprocessing (image config, tokenizer) sits in a sub-folder each
        skipped.remove(tower + "/")
        (staging / tower).mkdir()
        for entry in sorted((run_dir / tower).iterdir()):
            if entry.is_file() and _pushable(entry.name):
                shutil.copyfile(entry, staging / tower / entry.name)
        if described.hub_id:
            described = replace(described, checkpoint=_load_form(described.library, described.hub_id))
        towers[tower] = replace(described, checkpoint_path=None)
    was_local = bool(backbone.checkpoint_path) or looks_local(str(backbone.checkpoint))
    backbone = replace(backbone, checkpoint_path=None, towers=towers)
    if base_model:
        backbone = replace(backbone, hub_id=base_model)
        if was_local:
            backbone = replace(backbone, checkpoint=_load_form(backbone.library, base_model))
    where = f"{METADATA_FILE} of '{run_dir}'"
    record = record_from_json(_without_local_paths(replace(record, backbone=backbone).to_json()), where)
    write_record(staging, record)

    recipe_dict = read_recipe_dict(staging)
    if towers:
        for tower, described in towers.items():
            recipe_dict["model"][tower]["checkpoint"] = described.checkpoint
        if recipe_dict["model"].get("checkpoint"):  # one dual encoder (CLIP, SigLIP) is both towers
            recipe_dict["model"]["checkpoint"] = towers["image"].checkpoint
    else:
        recipe_dict["model"]["checkpoint"] = backbone.checkpoint
    if base_model:
        recipe_dict["model"]["hub_id"] = base_model
    recipe_dict.setdefault("output", {})["dir"] = None  # a folder on the trainer's machine
    recipe_dict = _without_local_paths(recipe_dict)
    write_yaml(staging / RECIPE_FILE, recipe_dict)

    for path in sorted(staging.glob("*.json")):
        if path.name == METADATA_FILE or path.is_symlink():
            continue
        data = _read_json(path)
        if path.name == ADAPTER_CONFIG_FILE and isinstance(data, dict):
            data["base_model_name_or_path"] = base_model or backbone.checkpoint
        cleaned = _without_local_paths(data)
        if cleaned != data or path.name == ADAPTER_CONFIG_FILE:
            write_json(path, cleaned)

    recipe = recipe_from_dict(recipe_dict, name=recipe_dict.get("name", run_dir.name))
    metrics = _read_json(staging / METRICS_FILE)
    card = build_model_card(
        recipe,
        record,
        metrics,
        location=repo_id,
        base_model=base_model,
        repo_id=repo_id,
        revision=revision,
        run_dir=staging,
    )
    card.save(str(staging / CARD_FILE))
    return skipped, card.data.to_dict()


def local_roots(run_dir: Path, record: RunRecord, recipe_dict: dict) -> set[str]:
    """Absolute paths of this machine that must not appear in any pushed file."""
    roots = {str(run_dir.resolve())}
    checkpoint = record.backbone.checkpoint_path
    if checkpoint:
        roots.add(str(Path(checkpoint.removeprefix("local-dir:")).resolve()))
    data = recipe_dict.get("data") or {}
    for key in ("train_files", "validation_files", "test_files"):
        for name in data.get(key) or []:
            if _is_absolute_local_path(str(name)):
                roots.add(str(Path(str(name)).expanduser().parent))
    if data.get("data_dir") and _is_absolute_local_path(str(data["data_dir"])):
        roots.add(str(Path(str(data["data_dir"])).expanduser()))
    return {root for root in roots if len(PurePosixPath(root).parts) >= 3 or PureWindowsPath(root).drive}


def _scanned_bytes(path: Path) -> bytes:
    """A file's bytes as far as text could hide in them: a safetensors file's JSON header, any other file whole."""
    if path.suffix != ".safetensors":
        return path.read_bytes()
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        return f.read(min(size, 100 * 1024 * 1024))


def check_nothing_private(staging: Path, token: str | None, roots: set[str]) -> None:
    """Refuse to push a file that still holds the token or a local path (a guard behind the rewrites above)."""
    needles = [(root.encode(), f"the local path '{root}'") for root in sorted(roots)]
    if token and len(token) >= 8:  # shorter strings are no real token, and would match anywhere
        needles.append((token.encode(), "your Hugging Face token"))
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        data = _scanned_bytes(path)
        found = next((what for needle, what in needles if needle in data), None)
        if found is None and HF_TOKEN_PATTERN.search(data):
            found = "a Hugging Face token"
        if found:
            raise HubError(
                f"refusing to push: {path.name} holds {found}; remove it from the run folder and push again."
            )
