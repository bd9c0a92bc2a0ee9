"""A checkpoint's transformers `config.json`, read without loading the model: what `library: auto` and a lone
dual-encoder checkpoint are decided by."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from hf_transfer.core.paths import is_repo_id

if TYPE_CHECKING:
    from hf_transfer.config.sections import ModelConfig


def checkpoint_config(model_cfg: ModelConfig) -> dict | None:
    """The checkpoint's config.json (a folder's, or a Hub id's, downloaded or cached), or None where it has none."""
    checkpoint = model_cfg.checkpoint
    if checkpoint.startswith(("local-dir:", "hf-hub:", "timm/")):
        return None  # timm's own spellings
    folder = Path(checkpoint).expanduser()
    if folder.is_dir():
        path = folder / "config.json"
    elif is_repo_id(checkpoint, namespaced=True):
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(checkpoint, "config.json", revision=model_cfg.revision))
        except Exception:  # not on the Hub, not cached offline, no config.json: timm's loader says what is wrong
            return None
    else:
        return None  # a timm model name
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None
