"""The problem-type interface: everything that differs between single-label, multi-label and regression.

A recipe's `problem_type` names one registered `ProblemType` (transformers' names, as a model config's
`problem_type` holds them); `hf_transfer.problems.problem_type(name)` returns it. The recipe schema asks it for its
rules, the data loader for its target coding and carving, the loop for its loss, scores and metrics, `predict` for
its predictions, `rank` for its transferability scores, the card for its metrics and plots. Nothing outside this
package compares a value with a problem type's name: a fourth problem type is one module here (and its entry in
the registry, `hf_transfer/problems/__init__.py`).

The objects hold no state: what a run chooses (its loss, its class weights) is passed in. This module, like every
module of the package that the recipe schema imports, loads nothing heavy at import time (no torch, datasets or
scikit-learn: `hf-transfer validate` must stay light); the heavy pieces are imported inside the methods that use
them, from the `*_coding` modules and `metrics`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hf_transfer.core.errors import RecipeError

if TYPE_CHECKING:  # the settings sit above problems: the recipe schema asks a problem type for its rules
    import numpy as np
    import torch
    from datasets import Dataset, DatasetDict

    from hf_transfer.config.sections import DataConfig, TrainConfig

LABEL = "labels"  # the column every prepared split carries: class ids, multi-hot vectors or targets
DEFAULT_THRESHOLD = 0.5  # a multi-label row carries a label whose sigmoid score reaches this, unless tuned


class ProblemType:
    """What a problem type decides. Subclasses set the class attributes and implement the methods; one instance of
    each is registered under its `name` by `hf_transfer.problems`."""

    name: ClassVar[str]
    """transformers' name (`single_label_classification`, ...): what a recipe's `problem_type` says."""
    names_word: ClassVar[str]
    """What the label names name, for messages and logs: "classes", "labels" or "targets"."""
    metric_names: ClassVar[tuple[str, ...]]
    """The metrics `eval.metric` may name for this problem type (scalar keys of `metrics`)."""
    default_metric: ClassVar[str]
    """The metric that picks the best checkpoint when the recipe names none."""
    card_metrics: ClassVar[tuple[str, ...]]
    """The metrics a model card reports, in its order."""
    card_plots: ClassVar[tuple[tuple[str, str], ...]]
    """(title, file name) of each plot `save_plots` writes, as the model card shows them."""
    prediction_key: ClassVar[str]
    """The key of a prediction that holds the answer: "label", "labels" or "values"."""
    source_report_metrics: ClassVar[tuple[str, ...]]
    """The metrics a transfer report quotes for a source stage of this problem type."""
    picks_one_label: ClassVar[bool] = False
    """Every row has exactly one of the label names (zero-shot, class samplers and SMOTE need this)."""
    tunes_thresholds: ClassVar[bool] = False
    """Decisions cut scores at per-label thresholds tuned on validation (saved as thresholds.json)."""
    label_columns_hint: ClassVar[str | None] = None
    """What data.label_columns holds for this problem type ("0/1 columns"); None: it reads one label column."""
    reads_label_separator: ClassVar[bool] = False
    """data.label_separator applies (several labels written in one cell)."""
    reads_allow_empty_labels: ClassVar[bool] = False
    """data.allow_empty_labels applies (rows may carry no label)."""
    reads_standardize_targets: ClassVar[bool] = False
    """data.standardize_targets applies (numeric targets)."""
    takes_class_weights: ClassVar[bool] = True
    """train.class_weights applies (loss weights per class, or BCE pos_weight per label)."""
    evaluation_loss: ClassVar[bool] = True
    """Evaluation reports the training loss beside the metrics (single-label reports its log_loss instead)."""
    knn_score_name: ClassVar[str]
    """What `knn_score` measures, as `rank` names it."""
    linear_score_name: ClassVar[str]
    """What `linear_score` measures, as `rank` names it."""
    transfer_scores_description: ClassVar[str]
    """The kNN and linear scores in words, for the heading of `rank`'s table."""
    name_word: ClassVar[str]
    """One of the label names, for the card's per-name table ("Per class:"): "class", "label" or "target"."""

    def __repr__(self) -> str:
        return f"<problem type {self.name}>"

    # --- the recipe's rules (no heavy imports: `validate` runs these) ----------------------------------------
    def check_data(self, data: DataConfig, where: str = "data") -> None:
        """Refuse the data keys this problem type does not read (one sentence naming the key and what to do).

        Here: the keys that other problem types read (`reads_*`); subclasses add their own rules."""
        if data.label_separator is not None and not self.reads_label_separator:
            raise RecipeError(
                f"{where}.label_separator splits several labels per row, so it needs problem_type "
                f"{_names_of(types_where('reads_label_separator'))}; remove it or set problem_type."
            )
        if data.label_separator is not None and data.label_columns is not None:
            raise RecipeError(
                f"{where}.label_separator reads {where}.label_column, which {where}.label_columns replaces; keep one."
            )
        if data.standardize_targets and not self.reads_standardize_targets:
            raise RecipeError(
                f"{where}.standardize_targets scales regression targets; it needs problem_type "
                f"{_names_of(types_where('reads_standardize_targets'))}, not {self.name}."
            )
        if not data.allow_empty_labels and not self.reads_allow_empty_labels:
            raise RecipeError(
                f"{where}.allow_empty_labels is about multi-label rows with no label; it needs problem_type "
                f"{_names_of(types_where('reads_allow_empty_labels'))}."
            )

    def check_train(self, train: TrainConfig, where: str = "train") -> None:
        """Refuse the loop settings that do not apply to this problem type."""

    def check_strategy(self, strategy: Any, where: str = "strategy") -> None:
        """Refuse the strategy settings that do not apply to this problem type (SMOTE needs one class per row)."""
        if getattr(strategy, "smote", False) and not self.picks_one_label:
            raise RecipeError(
                f"{where}.smote interpolates rows of one class, which {self.name} does not have; set {where}.smote="
                "false" + (" and use train.class_weights=auto instead." if self.takes_class_weights else ".")
            )

    def check_baselines(self, baselines: list[str]) -> None:
        """Refuse the baselines this problem type cannot run (zero-shot picks one label per row)."""
        if "zero_shot" in baselines and not self.picks_one_label:
            raise RecipeError(
                f"baseline zero_shot picks one label per row from the label names, so it needs problem_type "
                f"{_names_of(types_where('picks_one_label'))}, not {self.name}; remove zero_shot from baseline."
            )

    def greater_is_better(self, metric: str) -> bool:
        """Whether a larger `metric` is better (False for errors and losses)."""
        from hf_transfer.metrics.scalars import greater_is_better

        return greater_is_better(metric)

    # --- data: the `labels` column of every split ------------------------------------------------------------
    def label_columns(self, data: DataConfig) -> list[str]:
        """The columns that hold the labels or targets: data.label_columns, else data.label_column."""
        return label_columns_of(data)

    def label_field(self, data: DataConfig) -> str:
        """The recipe field that names the label columns, for messages."""
        return "data.label_columns" if data.label_columns else "data.label_column"

    def encode_targets(self, raw: DatasetDict, data: DataConfig, where: dict[str, str]) -> tuple[DatasetDict, list]:
        """Every split of `raw` with a `labels` column coded by train (class ids, multi-hot rows or targets) and the
        label columns dropped, and the label names in the order of the coding. `where` describes each split (by
        role) for messages; a label the train split never had is an error naming its row."""
        raise NotImplementedError

    def encode_targets_like(self, split: Dataset, data: DataConfig, names: list[str], where: str) -> Dataset:
        """New data (`hf-transfer eval`) with a `labels` column as a trained run with label names `names` codes it;
        `data` is the run's data section (its columns). Regression targets stay in their own units."""
        raise NotImplementedError

    def carve_validation(
        self, train: Dataset, fraction: float, seed: int, names: list[str]
    ) -> tuple[Dataset, Dataset]:
        """(train, validation): a `fraction` of the coded train rows held out, stratified as this problem type
        allows, seeded with `seed`."""
        raise NotImplementedError

    def limit_rows(self, split: Dataset, n: int | None, seed: int) -> Dataset:
        """Few-shot: at most `n` rows of each class (`data.train_samples_per_class`); `split` itself when n is None."""
        raise NotImplementedError

    def label_array(self, split: Dataset) -> np.ndarray:
        """The coded `labels` column as an array: class ids (n,), or an (n, K) float matrix."""
        raise NotImplementedError

    def target_scaling(self, train: Dataset, data: DataConfig) -> dict | None:
        """The scaling the model trains its targets in ({"mean": [T], "std": [T]}), None for none."""
        return None

    def scale_targets(self, split: Dataset, scaling: dict | None) -> Dataset:
        """`split` with its targets in the training scale (`target_scaling`)."""
        return split

    def in_target_units(self, values: np.ndarray, scaling: dict | None) -> np.ndarray:
        """Scores or labels in the training scale back in the targets' own units (unchanged but for regression)."""
        return values

    def fold_indices(self, labels: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(train rows, held-out rows) of each of `n_splits` folds stratified on `labels` (`label_array`),
        shuffled with `seed`; every row is held out exactly once."""
        raise NotImplementedError

    def check_fold_rows(self, labels: np.ndarray, names: list[str], folds: int, rows: str, fix: str) -> None:
        """Refuse (or warn about) labels too few for `folds` stratified folds; `rows` says what the rows are and
        `fix` what to do (it may name `{n}`, the most folds the data allows)."""

    # --- the loop: loss, scores, metrics ---------------------------------------------------------------------
    def labels_tensor(self, values: list) -> torch.Tensor:
        """A batch of `labels` as the loss takes them."""
        import numpy as np
        import torch

        return torch.tensor(np.asarray(values, dtype=np.float32))

    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        class_weights: torch.Tensor | None = None,
        train: TrainConfig | None = None,
    ) -> torch.Tensor:
        """The training loss of a batch; `train` carries the run's loss settings (None: the defaults)."""
        raise NotImplementedError

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """What the metrics and predictions read: probabilities, per-label probabilities or values."""
        raise NotImplementedError

    def class_weights(self, labels, num_names: int, train: TrainConfig) -> torch.Tensor | None:
        """The loss weights `train.class_weights` asks for, from the train labels (None: unweighted)."""
        return None

    def metrics(self, y_true: np.ndarray, scores: np.ndarray, names: list[str], thresholds=None) -> dict:
        """Every metric of this problem type (those of `metric_names` among them) as plain JSON values."""
        raise NotImplementedError

    def scalar_metric_fn(self, metric: str):
        """`f(y_true, scores) -> value` of one of `metric_names`, for paired bootstraps."""
        raise NotImplementedError

    def decision_thresholds(self, thresholds, num_names: int) -> list[float] | None:
        """The cut of each label's score (`tunes_thresholds`) from saved or given thresholds; None where the problem
        type decides without thresholds."""
        return None

    def predictions(self, scores: np.ndarray, names: list[str], thresholds=None) -> list[dict]:
        """One dict per row of `scores`, as `predict` returns them (the answer under `prediction_key`)."""
        raise NotImplementedError

    def save_plots(self, metrics: dict, labels: np.ndarray, scores: np.ndarray, names: list[str], folder: Path):
        """Write the `card_plots` of one evaluated split into `folder`."""
        raise NotImplementedError

    def fold_target_scaling(self, model, scaling: dict | None, num_names: int) -> bool:
        """Put the target scaling into the model's head so the saved model predicts in the targets' units; False
        where nothing was changed."""
        return False

    def label_config_kwargs(self, label_names: list[str]) -> dict:
        """A transformers classifier config's label keys: with problem_type recorded, pipeline() scores as the run
        trained (softmax, sigmoid per label, or the raw value per target; id2label then names the targets)."""
        id2label = dict(enumerate(label_names))
        return {
            "num_labels": len(label_names),
            "id2label": id2label,
            "label2id": {name: i for i, name in id2label.items()},
            "problem_type": self.name,
        }

    def tuned_thresholds(self, labels: np.ndarray, scores: np.ndarray) -> list[float] | None:
        """Each name's decision cut tuned on these (validation) rows (`tunes_thresholds`); None where decisions take
        no threshold."""
        return None

    def thresholds_record(self, label_names: list[str], thresholds: list[float]) -> dict:
        """What thresholds.json holds for `tuned_thresholds` (only problem types that `tunes_thresholds` write it)."""
        raise NotImplementedError(f"{self.name} decides without thresholds")

    # --- a run against its baselines (the paired bootstrap of metrics.json's transfer section) ---------------
    def transfer_metric(self, metric: str) -> str:
        """The metric the paired bootstrap compares a run with its baselines on, from eval.metric."""
        return metric

    def paired_bootstrap(self, metric: str, labels: np.ndarray, ours: tuple, theirs: tuple, seed: int) -> dict:
        """The paired-bootstrap CI of metric(ours) - metric(theirs) on `labels` (`bootstrap_difference` over
        `scalar_metric_fn`); `ours` and `theirs` are each stage's (scores, thresholds), so that each decides as its
        run folder would predict."""
        from hf_transfer.metrics.bootstrap import bootstrap_difference

        return bootstrap_difference(self.scalar_metric_fn(metric), labels, ours[0], theirs[0], seed=seed)

    # --- the model card ------------------------------------------------------------------------------------------
    def card_summary(self, label_names: list[str]) -> str:
        """The card's sentence on what the model predicts (markdown naming every label)."""
        raise NotImplementedError

    def card_decision_code(self, logits: str, thresholds: list[float] | None, indent: str = "") -> str:
        """The last line(s) of the card's code snippet: from the Python expression `logits` (one row's) to what
        `predict` returns under `prediction_key`, printed."""
        raise NotImplementedError

    def pipeline_code(self, model_args: str, example: str, label_names: list[str], thresholds) -> str:
        """The card's snippet through transformers' text-classification pipeline (built with the arguments
        `model_args`), printing for the Python literal `example` what `predict` gives. Here: every label's score
        (the config's problem_type makes the pipeline apply a sigmoid per label, or nothing to a value)."""
        return (
            f'classifier = pipeline("text-classification", {model_args}, top_k=None)\n'
            f'scores = {{r["label"]: r["score"] for r in classifier([{example}])[0]}}\n'
        )

    # --- transferability: scores of frozen features, before training (`hf-transfer rank`) --------------------
    def logme_targets(self, labels: np.ndarray, num_classes: int | None = None) -> list[np.ndarray]:
        """The real-valued targets LogME's evidence is averaged over (one per class, label or target)."""
        raise NotImplementedError

    def logme(self, features, labels) -> float:
        """LogME of `features` (N, D) for `labels`: the mean over `logme_targets` of the maximised log evidence per
        example (higher: the labels are more linearly predictable from the features)."""
        import numpy as np

        from hf_transfer.metrics.transferability import logme_of_targets

        return logme_of_targets(features, self.logme_targets(np.asarray(labels)))

    def knn_score(self, features, labels, folds: int = 5, seed: int = 0) -> float:
        """Cross-validated score of k nearest neighbours by cosine similarity (`knn_score_name`; higher is better)."""
        raise NotImplementedError

    def linear_score(self, features, labels, folds: int = 5, seed: int = 0) -> float:
        """Cross-validated score of a linear probe on standardised features (`linear_score_name`; higher is
        better)."""
        raise NotImplementedError


def types_where(attribute: str) -> list[ProblemType]:
    """The registered problem types whose `attribute` is set (those that read a key, say), for messages that name
    them."""
    from hf_transfer.problems.registry import PROBLEM_TYPES

    return [p for p in PROBLEM_TYPES.values() if getattr(p, attribute)]


def _names_of(problems: list[ProblemType]) -> str:
    return " or ".join(p.name for p in problems)


def label_columns_of(data: DataConfig) -> list[str]:
    """The columns that hold the labels or targets: data.label_columns, else data.label_column."""
    return list(data.label_columns) if data.label_columns else [data.label_column]


def varying_columns(labels) -> list[np.ndarray]:
    """The columns of `labels` ((N,) or (N, T)) as float64 vectors, less those that are constant."""
    import numpy as np

    columns = np.asarray(labels, dtype=np.float64)
    columns = columns[:, None] if columns.ndim == 1 else columns
    return [columns[:, t] for t in range(columns.shape[1]) if np.ptp(columns[:, t]) > 0]


def labels_tensor(values: list) -> torch.Tensor:
    """A batch of `labels` by what the values are: class ids as int64; multi-hot rows and targets as float32."""
    import numpy as np
    import torch

    if values and isinstance(values[0], (list, tuple, np.ndarray)):
        return torch.tensor(np.asarray(values, dtype=np.float32))
    return torch.tensor([int(v) for v in values], dtype=torch.long)
