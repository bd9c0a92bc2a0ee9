"""Backbones by library: a recipe's `model.library` (or its task) picks one; all share the `Backbone` surface."""

from __future__ import annotations

import re
from importlib import metadata

from hf_transfer.backbones.base import Backbone
from hf_transfer.backbones.checkpoint_config import checkpoint_config
from hf_transfer.backbones.multimodal import MultimodalBackbone
from hf_transfer.config.sections import DataConfig, ModelConfig
from hf_transfer.core.errors import RecipeError
from hf_transfer.core.registry import Registry

BACKBONES: Registry[type[Backbone]] = Registry("backbone library")


def dependency_problem(package: str, error: ImportError) -> str:
    """One sentence for an import that failed: the package, the version found and the version hf-transfer needs."""
    try:
        found = f"{package} {metadata.version(package)} is installed"
    except metadata.PackageNotFoundError:
        found = f"{package} is not installed"
    needed = package
    try:
        for req in metadata.requires("hf-transfer-kit") or []:
            name = re.match(r"[A-Za-z0-9._-]+", req).group(0)
            if name.lower().replace("_", "-") == package.lower().replace("_", "-") and "extra ==" not in req:
                needed = req.split(";")[0].replace(" ", "")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        pass
    return f"hf-transfer needs {needed} but {found} ({error}); run: pip install '{needed}'."


def _register_builtin() -> None:
    from hf_transfer.backbones.transformers_text import TransformersTextBackbone

    BACKBONES.register("transformers:text")(TransformersTextBackbone)
    BACKBONES.register("timm:image")(_import_timm_backbone())
    from hf_transfer.backbones.transformers_image import TransformersImageBackbone

    BACKBONES.register("transformers:image")(TransformersImageBackbone)


def _import_timm_backbone() -> type[Backbone]:
    # timm is a required dependency: an old or broken timm must say so, not pass for "no image support".
    try:
        from hf_transfer.backbones.timm_image import TimmImageBackbone
    except ImportError as e:
        raise ImportError(dependency_problem("timm", e)) from e
    return TimmImageBackbone


_register_builtin()


def backbone_key(library: str, modality: str, model_cfg: ModelConfig | None = None) -> str:
    if library == "auto":
        if modality != "image":
            library = "transformers"
        else:
            library = "transformers" if model_cfg and is_transformers_vision_checkpoint(model_cfg) else "timm"
    return f"{library}:{modality}"


def is_transformers_vision_checkpoint(model_cfg: ModelConfig) -> bool:
    """Whether `library: auto` hands an image checkpoint to transformers: its config.json names a vision
    `model_type` (timm's config.json names an `architecture` instead)."""
    config = checkpoint_config(model_cfg)
    if not config or "architecture" in config:
        return False
    from hf_transfer.backbones.transformers_image import vision_model_types

    return config.get("model_type") in vision_model_types()


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
    if modality == "multimodal":
        return MultimodalBackbone(
            model_cfg,
            data_cfg,
            preprocessing_source=preprocessing_source,
            new_head=new_head,
            build_tower=build_backbone,
        )
    key = backbone_key(model_cfg.library, modality, model_cfg)
    if key not in BACKBONES:
        library, _ = key.split(":")
        raise RecipeError(f"model.library '{library}' does not serve {modality} tasks; choose another library.")
    return BACKBONES.get(key)(model_cfg, data_cfg, preprocessing_source=preprocessing_source, new_head=new_head)


__all__ = ["BACKBONES", "Backbone", "build_backbone"]
