"""Load a finished run back and predict: the Python API behind `hf-transfer predict` and `hf-transfer eval`."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from torch import nn

from hf_transfer.accelerator import wants_channels_last
from hf_transfer.backbones import build_backbone
from hf_transfer.data.splits import LABEL, check_files_exist, coding_of_run, encode_labels_like, load_files
from hf_transfer.data.text import drop_empty_texts
from hf_transfer.errors import DataError, ModelError
from hf_transfer.metrics import classification_metrics
from hf_transfer.recipe import recipe_from_dict
from hf_transfer.run_folder import read_metadata, read_recipe_dict
from hf_transfer.strategies import build_strategy
from hf_transfer.train import ROW_INDEX, build_eval_loader, logits_of

logger = logging.getLogger(__name__)


def resolve_base_checkpoint(backbone: dict, run_dir: Path) -> str:
    """Where to load the base model from: weights bundled in the run (a source stage's), the recorded local folder
    if it is still there, else the Hub id."""
    if backbone.get("bundled"):
        return str(Path(run_dir) / backbone["bundled"])
    local = backbone.get("checkpoint_path")
    if local and Path(local.removeprefix("local-dir:")).exists():
        return local
    if backbone.get("hub_id"):
        return backbone["hub_id"]
    checkpoint = backbone["checkpoint"]
    if Path(checkpoint.removeprefix("local-dir:")).exists() or "/" not in checkpoint or backbone["library"] == "timm":
        return checkpoint
    raise ModelError(
        f"the base model '{checkpoint}' of this run is no longer on disk and has no Hub id; "
        "put it back or re-train with model.hub_id set."
    )


def merged_for_inference(model: nn.Module) -> nn.Module:
    """`model` with its PEFT adapters folded into the base weights (W + scale * B @ A for LoRA, the scaling vectors
    for IA3), the trained head in place: the same function, one matrix product per layer instead of three. Adapters
    that cannot fold exactly (on quantised weights, or of a method without a merge) stay as they are."""
    from peft import PeftModel

    if not isinstance(model, PeftModel) or getattr(model, "is_loaded_in_8bit", False):
        return model
    if getattr(model, "is_loaded_in_4bit", False):
        return model
    try:
        return model.merge_and_unload()
    except (AttributeError, NotImplementedError, ValueError) as err:
        logger.info("predicting through the adapters, unmerged (%s)", err)
        return model


class Classifier:
    """A trained run, ready to predict. Build it with `hf_transfer.load(folder or Hub repo id)`."""

    def __init__(self, run_dir: str | Path, device: str | None = None, revision: str | None = None):
        from hf_transfer.hub import run_dir_for

        self.source = str(run_dir)  # what the user gave: a folder, or a Hub repo id (downloaded to the cache)
        self.run_dir = run_dir_for(run_dir, revision=revision)
        self.metadata = read_metadata(self.run_dir)
        raw = read_recipe_dict(self.run_dir)
        raw["model"]["checkpoint"] = resolve_base_checkpoint(self.metadata["backbone"], self.run_dir)
        self.recipe = recipe_from_dict(raw, name=raw.get("name", self.run_dir.name))
        self.label_names: list[str] = list(self.metadata["label_names"])
        self.backbone = build_backbone(  # the tokenizer / image config come from the run folder
            self.recipe.model, self.recipe.data, self.recipe.modality, preprocessing_source=str(self.run_dir)
        )
        strategy = build_strategy(self.recipe.strategy, self.backbone)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = merged_for_inference(strategy.load(self.run_dir, self.label_names)).to(self.device).eval()
        if wants_channels_last(self.model, self.device):
            self.model.to(memory_format=torch.channels_last)

    @property
    def input_column(self) -> str:
        return self.recipe.data.image_column if self.recipe.modality == "image" else self.recipe.data.text_column

    def predict_proba(self, inputs: list, batch_size: int = 32) -> np.ndarray:
        """Class probabilities, one row per input (texts, or image paths / PIL images)."""
        if not inputs:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        rows = Dataset.from_dict({self.input_column: list(inputs), LABEL: [0] * len(inputs)})
        return self._probs(self.backbone.prepare(rows, train=False), batch_size)[1]

    @torch.inference_mode()
    def _probs(self, prepared, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities) in the rows' order. Texts are batched by length (least padding), tokenised
        beforehand in one batched pass; the row indices each batch carries put the results back in order."""
        loader = build_eval_loader(
            prepared, self.backbone.lengths(prepared), batch_size, self.backbone.collate_fn(), num_workers=0
        )
        non_blocking = self.device.type == "cuda"
        logits, labels, rows = [], [], []
        for batch in loader:
            labels.append(batch.pop(LABEL))
            rows.append(batch.pop(ROW_INDEX))
            batch = {k: v.to(self.device, non_blocking=non_blocking) for k, v in batch.items()}
            logits.append(logits_of(self.model(**batch)).float())
        order = torch.cat(rows).argsort()
        probs = torch.softmax(torch.cat(logits).cpu()[order], dim=-1)  # one host sync, at the end
        return torch.cat(labels)[order].numpy(), probs.numpy()

    def predict(self, inputs: list, batch_size: int = 32) -> list[dict]:
        """[{"label", "score", "probabilities": {label: p}}] for each input."""
        probs = self.predict_proba(inputs, batch_size)
        out = []
        for row in probs:
            best = int(row.argmax())
            out.append(
                {
                    "label": self.label_names[best],
                    "score": float(row[best]),
                    "probabilities": {name: float(p) for name, p in zip(self.label_names, row)},
                }
            )
        return out

    def evaluate(self, files: list[str], batch_size: int = 32) -> dict:
        """Metrics on new labelled files with the run's columns (labels must be among the run's labels, read as the
        run read its own: see `coding_of_run`). Rows with an empty text are dropped and counted in `skipped_rows`."""
        field = "--data"  # the files come from `hf-transfer eval --data`, not from the recipe's fields
        check_files_exist(files, field)
        raw = load_files(list(files), field, if_empty="give files with labelled rows")
        if len(raw) == 0:
            raise DataError(f"{field}: {', '.join(files)} holds no rows; give files with labelled rows.")
        where = f"{field} ({', '.join(files)})"
        columns, fields = self.backbone.required_columns()
        label_column = self.recipe.data.label_column
        for column in columns + [label_column]:
            if column not in raw.column_names:
                name = fields.get(column, "data.label_column")
                raise DataError(
                    f"column '{column}' ({name} of the run) is missing from {where}; "
                    f"its columns are {', '.join(raw.column_names)}."
                )
        skipped = {}
        if self.recipe.modality == "text":
            checked, skipped = drop_empty_texts(DatasetDict({field: raw}), columns, lambda _: where)
            raw = checked[field]
        coding = coding_of_run(self.label_names, label_names_given=bool(self.recipe.data.label_names))
        encoded = encode_labels_like(raw, label_column, coding, where)
        labels, probs = self._probs(self.backbone.prepare(encoded, train=False), batch_size)
        metrics = classification_metrics(labels, probs, self.label_names)
        return metrics | ({"skipped_rows": skipped[field]} if skipped else {})


def load(path: str | Path, device: str | None = None, revision: str | None = None) -> Classifier:
    """A trained run ready to `predict`: its folder, or the Hub repo it was pushed to (`me/minilm-rt-lora`, at
    `revision` if given; the base model is fetched by its recorded Hub id)."""
    return Classifier(path, device=device, revision=revision)


__all__ = ["Classifier", "load"]
