"""Load a finished run back and predict: the Python API behind `hf-transfer predict` and `hf-transfer eval`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from torch import nn

from hf_transfer.backbones import build_backbone
from hf_transfer.config.recipe import recipe_from_dict
from hf_transfer.core.accelerator import wants_channels_last
from hf_transfer.core.errors import DataError, HfTransferError, ModelError
from hf_transfer.data.modalities import Modality
from hf_transfer.data.splits import check_files_exist, load_files
from hf_transfer.problems import PROBLEM_TYPES, ProblemType
from hf_transfer.problems.base import DEFAULT_THRESHOLD, LABEL
from hf_transfer.runs.folder import THRESHOLDS_FILE, read_recipe_dict
from hf_transfer.runs.record import BackboneRecord, read_record
from hf_transfer.strategies.factory import build_strategy
from hf_transfer.train.evaluation import ROW_INDEX, build_eval_loader, logits_of

logger = logging.getLogger(__name__)


def resolve_base_checkpoint(backbone: BackboneRecord, run_dir: Path) -> str:
    """Where to load the base model from: weights bundled in the run (a source stage's), the recorded local folder
    if it is still there, else the Hub id."""
    if backbone.bundled:
        return str(Path(run_dir) / backbone.bundled)
    local = backbone.checkpoint_path
    if local and Path(local.removeprefix("local-dir:")).exists():
        return local
    if backbone.hub_id:
        return backbone.hub_id
    checkpoint = backbone.checkpoint or ""
    if Path(checkpoint.removeprefix("local-dir:")).exists() or "/" not in checkpoint or backbone.library == "timm":
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
        from hf_transfer.hub.download import run_dir_for

        self.source = str(run_dir)  # what the user gave: a folder, or a Hub repo id (downloaded to the cache)
        self.run_dir = run_dir_for(run_dir, revision=revision)
        self.record = read_record(self.run_dir)
        raw = read_recipe_dict(self.run_dir)
        backbone = self.record.backbone
        if backbone.towers:  # a multimodal run: each tower loads from its own base model
            for name, tower in backbone.towers.items():
                raw["model"][name]["checkpoint"] = resolve_base_checkpoint(tower, self.run_dir)
        else:
            raw["model"]["checkpoint"] = resolve_base_checkpoint(backbone, self.run_dir)
        self.recipe = recipe_from_dict(raw, name=raw.get("name", self.run_dir.name))
        self.label_names: list[str] = list(self.record.label_names)
        self.problem_type: str = self.record.problem_type
        self.problem = PROBLEM_TYPES.get(self.problem_type)
        # Applied to the outputs unless the run folded it into the head's weights already.
        scaling = None if self.record.target_scaling_in_weights else self.record.target_scaling
        self.target_scaling: dict | None = scaling.to_json() if scaling else None
        self.thresholds: list[float] | None = read_thresholds(self.run_dir, self.label_names, self.problem)
        self.backbone = build_backbone(  # the tokenizer / image config come from the run folder
            self.recipe.model, self.recipe.data, self.recipe.modality, preprocessing_source=str(self.run_dir)
        )
        strategy = build_strategy(self.recipe.strategy, self.backbone)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        loaded = strategy.load(self.run_dir, self.label_names, self.problem)
        self.model = merged_for_inference(loaded).to(self.device).eval()
        if wants_channels_last(self.model, self.device):
            self.model.to(memory_format=torch.channels_last)

    @property
    def metadata(self) -> dict:
        """The run record as `hf_transfer.json` holds it, for code written before the typed `record`."""
        return self.record.to_json()

    @property
    def modality(self) -> Modality:
        """The run's input kind: what its inputs are and how they become rows."""
        return self.recipe.modality

    def predict_proba(self, inputs: list, batch_size: int = 32) -> np.ndarray:
        """Scores, one row per input (texts, or image paths / PIL images; for a multimodal
        run, (image, text) pairs or dicts holding both columns): class probabilities (single-label), each
        label's sigmoid probability (multi-label), or each target's value in its own units (regression)."""
        if not inputs:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        rows = Dataset.from_dict(self.modality.rows_of_inputs(inputs, self.recipe.data) | {LABEL: [0] * len(inputs)})
        return self._probs(self.backbone.prepare(rows, train=False), batch_size)[1]

    @torch.inference_mode()
    def _probs(self, prepared, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels, scores) in the rows' order. Texts are batched by length (least padding), tokenised beforehand in
        one batched pass; the row indices each batch carries put the results back in order."""
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
        scores = self.problem.scores(torch.cat(logits).cpu()[order]).numpy()  # one host sync, at the end
        scores = self.problem.in_target_units(scores, self.target_scaling)
        return torch.cat(labels)[order].numpy(), scores

    def predict(self, inputs: list, batch_size: int = 32, threshold: float | None = None) -> list[dict]:
        """For each input: single-label {"label", "score", "probabilities": {label: p}}; multi-label {"labels" (those
        at or above their threshold), "scores": {label: p}}; regression {"values": {target: value}}.

        `threshold` (multi-label) replaces every label's tuned threshold."""
        thresholds = self.decision_thresholds(threshold)
        return self.problem.predictions(self.predict_proba(inputs, batch_size), self.label_names, thresholds)

    def decision_thresholds(self, threshold: float | None = None) -> list[float] | None:
        """Multi-label: `threshold` for every label when given, else the run's tuned ones (or 0.5); else None."""
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise HfTransferError(f"--threshold must be between 0 and 1, not {threshold}.")
        if not self.problem.tunes_thresholds:
            if threshold is not None:
                raise HfTransferError(
                    f"--threshold applies to multi-label runs; this run is {self.problem_type}, leave it out."
                )
            return None
        if threshold is not None:
            return [float(threshold)] * len(self.label_names)
        return self.problem.decision_thresholds(self.thresholds, len(self.label_names))

    def evaluate(self, files: list[str], batch_size: int = 32, threshold: float | None = None) -> dict:
        """Metrics on new labelled files with the run's columns (labels must be among the run's labels, read as the
        run read its own: see `coding_of_run`). Rows with an empty text are dropped and counted in `skipped_rows`."""
        field = "--data"  # the files come from `hf-transfer eval --data`, not from the recipe's fields
        check_files_exist(files, field)
        raw = load_files(list(files), field, if_empty="give files with labelled rows")
        if len(raw) == 0:
            raise DataError(f"{field}: {', '.join(files)} holds no rows; give files with labelled rows.")
        where = f"{field} ({', '.join(files)})"
        columns, fields = self.backbone.required_columns()
        label_columns = self.problem.label_columns(self.recipe.data)  # several: 0/1 label columns or targets
        label_field = self.problem.label_field(self.recipe.data)
        for column in columns + label_columns:
            if column not in raw.column_names:
                name = fields.get(column, label_field)
                raise DataError(
                    f"column '{column}' ({name} of the run) is missing from {where}; "
                    f"its columns are {', '.join(raw.column_names)}."
                )
        checked, skipped = self.modality.drop_empty_inputs(DatasetDict({field: raw}), self.recipe.data, where)
        raw = checked[field]
        # class ids or multi-hot rows in the run's label order, or the targets in their own units
        encoded = self.problem.encode_targets_like(raw, self.recipe.data, self.label_names, where)
        metrics = self.evaluate_rows(encoded, batch_size, threshold)
        return metrics | ({"skipped_rows": skipped[field]} if skipped else {})

    def evaluate_rows(self, rows: Dataset, batch_size: int = 32, threshold: float | None = None) -> dict:
        """Metrics on rows with the run's input column and a `labels` column coded as the run's were (class ids,
        multi-hot rows, or regression targets in their own units), with the run's thresholds unless `threshold`."""
        thresholds = self.decision_thresholds(threshold)
        labels, scores = self._probs(self.backbone.prepare(rows, train=False), batch_size)
        return self.problem.metrics(labels, scores, self.label_names, thresholds)


def read_thresholds(run_dir: Path, label_names: list[str], problem: ProblemType) -> list[float] | None:
    """The run's tuned thresholds (thresholds.json), in label order; None for problem types that tune none."""
    if not problem.tunes_thresholds:
        return None
    path = Path(run_dir) / THRESHOLDS_FILE
    if not path.is_file():
        logger.warning("%s has no %s; every label is cut at %s", run_dir, THRESHOLDS_FILE, DEFAULT_THRESHOLD)
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))["thresholds"]
        return [float(saved[name]) for name in label_names]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ModelError(f"'{path}' is damaged or from another run ({err!r}); train the run again.") from None


def load(path: str | Path, device: str | None = None, revision: str | None = None) -> Classifier:
    """A trained run ready to `predict`: its folder, or the Hub repo it was pushed to (`me/minilm-rt-lora`, at
    `revision` if given; the base model is fetched by its recorded Hub id)."""
    return Classifier(path, device=device, revision=revision)


__all__ = ["Classifier", "load"]
