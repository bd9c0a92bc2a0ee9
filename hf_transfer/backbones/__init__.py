"""Backbones by library: a recipe's `model.library` (or its task) picks one; all share the `Backbone` surface."""

from __future__ import annotations

from hf_transfer.backbones.base import Backbone
from hf_transfer.errors import RecipeError
from hf_transfer.recipe import DataConfig, ModelConfig
from hf_transfer.registry import Registry

BACKBONES: Registry[type[Backbone]] = Registry("backbone library")


def _register_builtin() -> None:
    from hf_transfer.backbones.transformers_text import TransformersTextBackbone

    BACKBONES.register("transformers:text")(TransformersTextBackbone)
    try:
        from hf_transfer.backbones.timm_image import TimmImageBackbone
    except ImportError:  # the image side is optional until timm is installed
        return
    BACKBONES.register("timm:image")(TimmImageBackbone)


_register_builtin()


def backbone_key(library: str, modality: str) -> str:
    if library == "auto":
        library = "timm" if modality == "image" else "transformers"
    return f"{library}:{modality}"


def build_backbone(
    model_cfg: ModelConfig,
    data_cfg: DataConfig | None,
    modality: str,
    *,
    preprocessing_source: str | None = None,
    new_head: bool = False,
) -> Backbone:
    """The backbone for `model_cfg`, whole: `preprocessing_source` (a run folder) and `new_head` (a source stage's
    classifier as the start) are fixed here, not set on it later, so nothing depends on the order of calls."""
    key = backbone_key(model_cfg.library, modality)
    if key not in BACKBONES:
        library, _ = key.split(":")
        raise RecipeError(f"model.library '{library}' does not serve {modality} tasks; choose another library.")
    return BACKBONES.get(key)(model_cfg, data_cfg, preprocessing_source=preprocessing_source, new_head=new_head)


__all__ = ["BACKBONES", "Backbone", "build_backbone"]
