"""What a run folder records in `hf_transfer.json`: a typed, versioned `RunRecord`, written and read here only.

A run folder may come from anywhere (a colleague, the Hub), so reading it checks each field's type as it builds the
record and says, in one sentence, which file and which field is wrong. Format 1 is the layout every release has
written; fields added to it since its first release (`problem_type`, `target_scaling`, `target_scaling_in_weights`,
`zero_shot`, a backbone's `bundled`, `text_tower` and `fusion`) are optional and read as what those runs did. A
folder of a newer format is refused by name, never half-read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_transfer.core.errors import HfTransferError, ModelError
from hf_transfer.core.files import write_json
from hf_transfer.problems import default_problem_type
from hf_transfer.runs.folder import METADATA_FILE

FORMAT_VERSION = 1  # the layout of hf_transfer.json; a reader refuses a newer one
_MISSING = object()


@dataclass(frozen=True)
class BackboneRecord:
    """The base model a run trained on, and where it was loaded from. A multimodal run's backbone holds one record
    per tower (`towers`, by name), each with its own checkpoint; its own `checkpoint` joins theirs."""

    library: str
    modality: str
    checkpoint: str | None
    hub_id: str | None = None
    revision: str | None = None
    checkpoint_path: str | None = None  # the absolute local folder it was loaded from, if any
    bundled: str | None = None  # the run's sub-folder holding the base weights (a source stage's), if any
    text_tower: str | None = None  # the model type of a CLIP / SigLIP text tower, whose head is hf-transfer's own
    fusion: str | None = None  # multimodal: how the towers' features are fused
    towers: dict[str, BackboneRecord] = field(default_factory=dict)

    @property
    def base(self) -> str | None:
        """The name the base model is known by: its Hub id, else its checkpoint."""
        return self.hub_id or self.checkpoint

    def to_json(self) -> dict:
        out: dict[str, Any] = {
            "library": self.library,
            "modality": self.modality,
            "checkpoint": self.checkpoint,
            "hub_id": self.hub_id,
            "revision": self.revision,
            "checkpoint_path": self.checkpoint_path,
        }
        for key in ("bundled", "text_tower", "fusion"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out | {name: tower.to_json() for name, tower in self.towers.items()}


@dataclass(frozen=True)
class TargetScaling:
    """A regression run's standardisation of its targets: each target's train mean and std."""

    mean: list[float]
    std: list[float]

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


@dataclass(frozen=True)
class ZeroShotRecord:
    """The zero-shot baseline of a run: the checkpoint that classified from the label names, and its prompts."""

    checkpoint: str
    kind: str  # what the checkpoint encodes besides text: "image" (CLIP, SigLIP) or "text"
    templates: list[str]
    descriptions: dict[str, Any]  # label -> a text, or a list of texts
    prompts: dict[str, list[str]]
    temperature: float | None = None  # text encoders only
    checkpoint_path: str | None = None

    def to_json(self) -> dict:
        out = {
            "checkpoint": self.checkpoint,
            "kind": self.kind,
            "templates": list(self.templates),
            "descriptions": dict(self.descriptions),
            "prompts": dict(self.prompts),
        }
        if self.temperature is not None:
            out["temperature"] = self.temperature
        return out | {"checkpoint_path": self.checkpoint_path}


@dataclass(frozen=True)
class RunRecord:
    """Everything hf-transfer needs to load a run back, push it and describe it (`hf_transfer.json`)."""

    task: str
    strategy: str
    backbone: BackboneRecord
    label_names: list[str]
    weights: list[str]  # the weight files of the run folder
    # runs from before problem types hold the default problem type's classifiers (single-label)
    problem_type: str = field(default_factory=lambda: default_problem_type().name)
    strategy_config: dict[str, Any] = field(default_factory=dict)  # the recipe's strategy section
    strategy_metadata: dict[str, Any] = field(default_factory=dict)  # what the strategy needs to load (pooling)
    # regression trained on standardised targets: predict puts its values back in the targets' units ...
    target_scaling: TargetScaling | None = None
    target_scaling_in_weights: bool = False  # ... unless the run folded the scaling into the head's weights
    versions: dict[str, str] = field(default_factory=dict)  # library -> version the run trained with
    zero_shot: ZeroShotRecord | None = None
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        out = {
            "format": self.format_version,
            "task": self.task,
            "problem_type": self.problem_type,
            "strategy": self.strategy,
            "strategy_config": self.strategy_config,
            "strategy_metadata": self.strategy_metadata,
            "backbone": self.backbone.to_json(),
            "label_names": list(self.label_names),
            "target_scaling": self.target_scaling.to_json() if self.target_scaling else None,
            "target_scaling_in_weights": self.target_scaling_in_weights,
            "weights": list(self.weights),
            "versions": dict(self.versions),
        }
        if self.zero_shot is not None:
            out["zero_shot"] = self.zero_shot.to_json()
        return out


# ---------------------------------------------------------------------------------------------------------------
# Writing and reading


def write_record(folder: Path, record: RunRecord) -> None:
    write_json(Path(folder) / METADATA_FILE, record.to_json())


def read_record(run_dir: str | Path) -> RunRecord:
    """The record of a run folder, every field checked as it is read."""
    run_dir = Path(run_dir)
    path = run_dir / METADATA_FILE
    if not run_dir.is_dir():
        raise HfTransferError(f"run folder '{run_dir}' does not exist; give the output folder of `hf-transfer run`.")
    if not path.is_file():
        raise ModelError(f"'{run_dir}' is not an hf-transfer run folder ({METADATA_FILE} is missing).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"'{path}' is damaged ({getattr(err, 'msg', err)}); train the run again.") from None
    return record_from_json(data, str(path))


def record_from_json(data: Any, where: str) -> RunRecord:
    """A `RunRecord` from the JSON of a `hf_transfer.json` (`where` names that file in errors)."""
    read = _Fields(data, where)
    version = read.get("format", int)
    if version > FORMAT_VERSION:
        raise ModelError(
            f"'{where}' was written by a newer hf-transfer (format {version}; this one reads up to format "
            f"{FORMAT_VERSION}); upgrade hf-transfer to load it."
        )
    if version < 1:
        raise ModelError(f"'{where}' has format {version}, which no hf-transfer wrote; train the run again.")
    scaling = read.get("target_scaling", dict, None)
    zero_shot = read.get("zero_shot", dict, None)
    return RunRecord(
        format_version=version,
        task=read.get("task", str),
        problem_type=read.get("problem_type", str, None) or default_problem_type().name,
        strategy=read.get("strategy", str),
        strategy_config=read.get("strategy_config", dict, {}),
        strategy_metadata=read.get("strategy_metadata", dict, {}),
        backbone=backbone_from_json(read.get("backbone", dict), where, "backbone"),
        label_names=read.strings("label_names"),
        target_scaling=_target_scaling(_Fields(scaling, where, "target_scaling")) if scaling is not None else None,
        target_scaling_in_weights=read.get("target_scaling_in_weights", bool, None) or False,
        weights=read.strings("weights", default=[]),
        versions={key: str(value) for key, value in read.get("versions", dict, {}).items()},
        zero_shot=_zero_shot(_Fields(zero_shot, where, "zero_shot")) if zero_shot is not None else None,
    )


def backbone_from_json(data: Any, where: str = "the run", prefix: str = "backbone") -> BackboneRecord:
    """A `BackboneRecord` from a backbone's description (`Backbone.describe()`, or its JSON in a run folder). A
    multimodal backbone's towers are the entries that are objects themselves, each described alike."""
    read = _Fields(data, where, prefix)
    scalars = ("library", "modality", "checkpoint", "hub_id", "revision", "checkpoint_path", "bundled")
    return BackboneRecord(
        library=read.get("library", str),
        modality=read.get("modality", str),
        checkpoint=read.get("checkpoint", str, None),
        hub_id=read.get("hub_id", str, None),
        revision=read.get("revision", str, None),
        checkpoint_path=read.get("checkpoint_path", str, None),
        bundled=read.get("bundled", str, None),
        text_tower=read.get("text_tower", str, None),
        fusion=read.get("fusion", str, None),
        towers={
            name: backbone_from_json(value, where, f"{prefix}.{name}")
            for name, value in read.data.items()
            if isinstance(value, dict) and name not in scalars
        },
    )


def zero_shot_from_json(data: Any, where: str = "the run") -> ZeroShotRecord:
    """A `ZeroShotRecord` from the zero-shot baseline's description (`ZeroShotClassifier.describe`)."""
    return _zero_shot(_Fields(data, where, "zero_shot"))


def _zero_shot(read: _Fields) -> ZeroShotRecord:
    prompts = read.get("prompts", dict)
    for label, texts in prompts.items():
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            read.wrong(f"prompts.{label}", "a list of texts", texts)
    temperature = read.get("temperature", (int, float), None)
    return ZeroShotRecord(
        checkpoint=read.get("checkpoint", str),
        kind=read.get("kind", str),
        templates=read.strings("templates"),
        descriptions=read.get("descriptions", dict, {}),
        prompts=prompts,
        temperature=float(temperature) if temperature is not None else None,
        checkpoint_path=read.get("checkpoint_path", str, None),
    )


def _target_scaling(read: _Fields) -> TargetScaling:
    return TargetScaling(mean=read.numbers("mean"), std=read.numbers("std"))


_KIND_NAMES = {str: "a text", int: "a whole number", bool: "true or false", dict: "an object", list: "a list"}


class _Fields:
    """One JSON object of the record, read field by field; every error names the file and the field's path."""

    def __init__(self, data: Any, where: str, prefix: str = ""):
        self.where, self.prefix = where, prefix
        if not isinstance(data, dict):
            if prefix:
                self.wrong("", "an object", data)
            raise ModelError(f"'{where}' holds no JSON object; it is damaged, so train the run again.")
        self.data = data

    def _name(self, key: str) -> str:
        return ".".join(part for part in (self.prefix, key) if part)

    def wrong(self, key: str, expected: str, value: Any):
        shown = json.dumps(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ModelError(
            f"'{self.where}' is damaged: its field {self._name(key)} should be {expected}, not {shown}; train the "
            "run again."
        )

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        """The field `key`, of type `kind`; `default` when it is absent or null (a field without one is required)."""
        value = self.data.get(key)
        if value is None:
            if default is _MISSING:
                raise ModelError(
                    f"'{self.where}' has no field {self._name(key)}; it is damaged or was not written by hf-transfer, "
                    "so train the run again."
                )
            return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # JSON's true is no number, and a number no flag
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            self.wrong(key, "a number" if float in kinds else _KIND_NAMES[kinds[0]], value)
        return value

    def strings(self, key: str, default: Any = _MISSING) -> list[str]:
        values = self.get(key, list, default)
        if not all(isinstance(v, str) for v in values):
            self.wrong(key, "a list of texts", values)
        return list(values)

    def numbers(self, key: str) -> list[float]:
        values = self.get(key, list)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            self.wrong(key, "a list of numbers", values)
        return [float(v) for v in values]
