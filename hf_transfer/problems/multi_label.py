"""Multi-label classification: independent yes/no per label, BCE-with-logits, sigmoid scores, a threshold per label."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hf_transfer.core.errors import DataError, RecipeError
from hf_transfer.problems.base import DEFAULT_THRESHOLD, ProblemType, varying_columns

logger = logging.getLogger(__name__)

# pos_weight = negatives / positives of a label, kept within these bounds: a label seen once in 10,000 rows would
# otherwise weigh its one positive 10,000 times and its gradient would swamp every other label's.
POS_WEIGHT_RANGE = (0.01, 100.0)


class MultiLabel(ProblemType):
    """K 0/1 floats per row in `labels`; iteratively stratified carving and folds; macro F1 by default (it weighs
    rare labels like common ones)."""

    name = "multi_label_classification"
    names_word = "labels"
    metric_names = (
        "f1_micro",
        "f1_macro",
        "f1_samples",
        "map_macro",
        "subset_accuracy",
        "hamming_loss",
        "roc_auc_macro",
    )
    default_metric = "f1_macro"
    card_metrics = ("f1_micro", "f1_macro", "f1_samples", "subset_accuracy", "map_macro")
    card_plots = (("Per-label F1 and support", "per_label.png"),)
    prediction_key = "labels"
    source_report_metrics = ("f1_macro", "map_macro")
    tunes_thresholds = True
    label_columns_hint = "0/1 columns"
    reads_label_separator = True
    reads_allow_empty_labels = True
    knn_score_name = "knn_map_macro"
    linear_score_name = "linear_map_macro"
    transfer_scores_description = "kNN / ridge macro mAP"
    name_word = "label"
    threshold_free_metrics = ("map_macro", "roc_auc_macro")
    """The metrics that rank the scores themselves, cut at no threshold."""

    # --- the recipe's rules ----------------------------------------------------------------------------------
    def check_data(self, data, where="data"):
        super().check_data(data, where)
        if data.label_columns is not None and data.label_names is not None:
            raise RecipeError(
                f"{where}.label_names is not read with {where}.label_columns: the labels are named after the "
                "columns; remove one of them."
            )

    def check_train(self, train, where="train"):
        if train.sampler != "random":
            raise RecipeError(
                f"{where}.sampler {train.sampler} draws rows by class, and a row holds several labels ({self.name}); "
                f"use {where}.sampler=random with {where}.class_weights=auto instead."
            )

    # --- data ------------------------------------------------------------------------------------------------
    def encode_targets(self, raw, data, where):
        from hf_transfer.problems.multi_label_coding import encode_multilabel

        return encode_multilabel(raw, data, where)

    def encode_targets_like(self, split, data, names, where):
        from hf_transfer.problems.multi_label_coding import encode_multilabel_like

        return encode_multilabel_like(split, data, names, where)

    def carve_validation(self, train, fraction, seed, names):
        from hf_transfer.problems.multi_label_coding import carve_multilabel

        return carve_multilabel(train, fraction, seed)

    def limit_rows(self, split, n, seed):
        from hf_transfer.problems.multi_label_coding import per_label

        return per_label(split, n, seed)

    def label_array(self, split):
        from hf_transfer.problems.label_coding import label_matrix

        return label_matrix(split)

    def fold_indices(self, labels, n_splits, seed):
        import numpy as np

        from hf_transfer.metrics.folds import check_fold_count, multilabel_fold_indices

        labels = np.asarray(labels)
        check_fold_count(len(labels), n_splits)
        return multilabel_fold_indices(labels, n_splits, seed)

    def check_fold_rows(self, labels, names, folds, rows, fix):
        """A label with fewer positive rows than folds is a warning: some folds hold none of it out, and its
        figures there are undefined."""
        import numpy as np

        for name, positives in zip(names, (np.asarray(labels) > 0.5).sum(axis=0)):
            if 0 < positives < folds:
                logger.warning(
                    "label '%s' has %d positive %s, fewer than --folds %d: some folds test none of it",
                    name,
                    positives,
                    rows,
                    folds,
                )

    # --- the loop ----------------------------------------------------------------------------------------------
    def loss(self, logits, labels, class_weights=None, train=None):
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=class_weights)

    def scores(self, logits):
        import torch

        return torch.sigmoid(logits)

    def class_weights(self, labels, num_names, train):
        """BCE's pos_weight: with auto, negatives / positives of each label in train (clipped to
        `POS_WEIGHT_RANGE`), so that a rare label's few positives count as much as its many negatives."""
        import torch

        weights = train.class_weights
        if weights is None:
            return None
        if weights == "auto":
            return pos_weight_of(labels)
        if len(weights) != num_names:
            raise RecipeError(
                f"train.class_weights has {len(weights)} weights for {num_names} labels; give one pos_weight per "
                "label, or auto."
            )
        return torch.tensor(weights, dtype=torch.float32)

    def metrics(self, y_true, scores, names, thresholds=None):
        from hf_transfer.metrics.multilabel import multilabel_metrics

        return multilabel_metrics(y_true, scores, names, DEFAULT_THRESHOLD if thresholds is None else thresholds)

    def scalar_metric_fn(self, metric):
        from hf_transfer.metrics.multilabel import multilabel_metric_fn

        return multilabel_metric_fn(metric)

    def decision_thresholds(self, thresholds, num_names):
        return thresholds_per_label(thresholds, num_names)

    def predictions(self, scores, names, thresholds=None):
        cuts = thresholds_per_label(thresholds, len(names))
        return [
            {
                "labels": [name for name, p, t in zip(names, row, cuts) if p >= t],
                "scores": {name: float(p) for name, p in zip(names, row)},
            }
            for row in scores
        ]

    def save_plots(self, metrics, labels, scores, names, folder):
        from hf_transfer.metrics.plots import save_multilabel_plot

        save_multilabel_plot(metrics, Path(folder) / self.card_plots[0][1])

    # --- transferability ---------------------------------------------------------------------------------------
    def logme_targets(self, labels, num_classes=None):
        """Each label's 0/1 column (a label that is all 0 or all 1 on these rows tells nothing and is skipped)."""
        varying = varying_columns(labels)
        if not varying:
            raise DataError("LogME needs a label that some rows have and others lack; every label is all 0 or all 1.")
        return varying

    def knn_score(self, features, labels, folds=5, seed=0):
        """Macro mean average precision of the neighbours' label frequencies, over the labels with a positive row in
        the held-out fold (iteratively stratified folds)."""
        from hf_transfer.metrics.transferability import knn_predictions, mean_average_precision

        fold_rows = self.fold_indices(labels, folds, seed)
        return mean_average_precision(
            knn_predictions(features, labels, fold_rows),
            "kNN mAP needs a validation fold with a positive label; every label is all 0 on these rows.",
        )

    def linear_score(self, features, labels, folds=5, seed=0):
        """Macro mean average precision of a ridge regression on the 0/1 label columns (least squares rather than one
        logistic search per label, which would cost labels x strengths x inner folds fits)."""
        from hf_transfer.metrics.transferability import mean_average_precision, ridge_predictions

        fold_rows = self.fold_indices(labels, folds, seed)
        return mean_average_precision(
            ridge_predictions(features, labels, fold_rows),
            "linear mAP needs a validation fold with a positive label; every label is all 0 here.",
        )

    # --- thresholds, a run against its baselines, the model card ----------------------------------------------
    def tuned_thresholds(self, labels, scores):
        """The F1-maximising cut of each label (`tune_thresholds`: a label without positive or without negative rows
        keeps the default)."""
        from hf_transfer.metrics.multilabel import tune_thresholds

        return [float(t) for t in tune_thresholds(labels, scores)]

    def thresholds_record(self, label_names, thresholds):
        return {
            "default": DEFAULT_THRESHOLD,
            "tuned_on": "validation",
            "thresholds": {name: float(t) for name, t in zip(label_names, thresholds)},
        }

    def paired_bootstrap(self, metric, labels, ours, theirs, seed):
        """Each stage decides at its own cuts (the metric then cuts those 0/1 at 0.5), unless the metric ranks the
        scores themselves."""
        import numpy as np

        if metric not in self.threshold_free_metrics:
            ours = ((ours[0] >= np.asarray(ours[1])).astype(np.float64), ours[1])
            theirs = ((theirs[0] >= np.asarray(theirs[1])).astype(np.float64), theirs[1])
        return super().paired_bootstrap(metric, labels, ours, theirs, seed)

    def card_summary(self, label_names):
        names = ", ".join(f"`{name}`" for name in label_names)
        return (
            f"It predicts any of {len(label_names)} labels at once (each label's own threshold on its sigmoid "
            f"score): {names}."
        )

    def card_decision_code(self, logits, thresholds, indent=""):
        return (
            f"{indent}thresholds = {json.dumps([round(t, 6) for t in thresholds or []])}  # tuned on validation\n"
            f"{indent}scores = {logits}.sigmoid()[0].tolist()\n"
            f"{indent}print([n for n, s, t in zip(labels, scores, thresholds) if s >= t])"
        )

    def pipeline_code(self, model_args, example, label_names, thresholds):
        """The labels whose sigmoid scores reach their tuned thresholds."""
        cuts = {name: round(t, 6) for name, t in zip(label_names, thresholds or [])}
        return super().pipeline_code(model_args, example, label_names, thresholds) + (
            f"thresholds = {json.dumps(cuts)}  # tuned on validation\n"
            "print([n for n in thresholds if scores[n] >= thresholds[n]])"
        )


def pos_weight_of(labels):
    """negatives / positives per label of a (rows, labels) 0/1 matrix, clipped to `POS_WEIGHT_RANGE`."""
    import numpy as np
    import torch

    matrix = np.asarray(labels, dtype=np.float64)
    positives = matrix.sum(axis=0)
    negatives = len(matrix) - positives
    low, high = POS_WEIGHT_RANGE
    ratio = np.divide(negatives, positives, out=np.full_like(positives, high), where=positives > 0)
    return torch.tensor(np.clip(ratio, low, high), dtype=torch.float32)


def thresholds_per_label(thresholds, num_labels: int) -> list[float]:
    """One threshold per label from None (the default), one number, or a list of `num_labels`."""
    if thresholds is None:
        return [DEFAULT_THRESHOLD] * num_labels
    if isinstance(thresholds, (int, float)):
        return [float(thresholds)] * num_labels
    if len(thresholds) != num_labels:
        raise ValueError(f"{len(thresholds)} thresholds for {num_labels} labels")
    return [float(t) for t in thresholds]
