"""Single-label classification: one class per row, cross-entropy, softmax scores; what hf-transfer always did."""

from __future__ import annotations

from pathlib import Path

from hf_transfer.core.errors import DataError, RecipeError
from hf_transfer.metrics.names import SINGLE_LABEL_METRICS
from hf_transfer.problems.base import ProblemType, types_where


class SingleLabel(ProblemType):
    """Class ids (int64) in `labels`; stratified carving and folds; accuracy-style metrics, f1_macro by default."""

    name = "single_label_classification"
    names_word = "classes"
    metric_names = SINGLE_LABEL_METRICS
    default_metric = "f1_macro"  # the metric hf-transfer always picked checkpoints by
    card_metrics = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc")
    card_plots = (("Confusion matrix", "confusion_matrix.png"),)
    prediction_key = "label"
    source_report_metrics = ("accuracy", "f1_macro")
    picks_one_label = True
    evaluation_loss = False  # its metrics hold the log_loss
    knn_score_name = "knn_accuracy"
    linear_score_name = "linear_accuracy"
    transfer_scores_description = "kNN / linear accuracy"
    name_word = "class"

    # --- the recipe's rules ----------------------------------------------------------------------------------
    def check_data(self, data, where="data"):
        if data.label_columns is not None:
            readers = " or ".join(f"{p.name} ({p.label_columns_hint})" for p in types_where("label_columns_hint"))
            raise RecipeError(
                f"{where}.label_columns needs problem_type {readers}; a single-label task reads one "
                f"{where}.label_column."
            )
        super().check_data(data, where)

    # --- data ------------------------------------------------------------------------------------------------
    def label_columns(self, data):
        return [data.label_column]

    def label_field(self, data):
        return "data.label_column"

    def encode_targets(self, raw, data, where):
        from hf_transfer.problems.single_label_coding import encode_labels

        return encode_labels(raw, data, where)

    def encode_targets_like(self, split, data, names, where):
        from hf_transfer.problems.single_label_coding import coding_of_run, encode_labels_like

        coding = coding_of_run(names, label_names_given=bool(data.label_names))
        return encode_labels_like(split, data.label_column, coding, where)

    def carve_validation(self, train, fraction, seed, names):
        from hf_transfer.problems.single_label_coding import carve_stratified

        return carve_stratified(train, fraction, seed, names)

    def limit_rows(self, split, n, seed):
        from hf_transfer.problems.single_label_coding import per_class

        return per_class(split, n, seed)

    def label_array(self, split):
        from hf_transfer.problems.label_coding import label_ids

        return label_ids(split)

    def fold_indices(self, labels, n_splits, seed):
        import numpy as np

        from hf_transfer.metrics.folds import check_fold_count, stratified_fold_indices

        labels = np.asarray(labels)
        check_fold_count(len(labels), n_splits)
        return stratified_fold_indices(labels, n_splits, seed)

    def check_fold_rows(self, labels, names, folds, rows, fix):
        """Every present class needs at least `folds` rows for stratified folds."""
        import numpy as np

        counts = np.bincount(np.asarray(labels), minlength=len(names))
        for c in np.flatnonzero(counts):
            if counts[c] < folds:
                raise DataError(
                    f"class '{names[c]}' has {counts[c]} {rows}, fewer than --folds {folds}; "
                    f"{fix.format(n=max(counts[c], 2))}."
                )

    # --- the loop ----------------------------------------------------------------------------------------------
    def labels_tensor(self, values):
        import torch

        return torch.tensor([int(v) for v in values], dtype=torch.long)

    def loss(self, logits, labels, class_weights=None, train=None):
        import torch.nn.functional as F

        return F.cross_entropy(logits, labels, weight=class_weights)

    def scores(self, logits):
        import torch

        return torch.softmax(logits, dim=-1)

    def class_weights(self, labels, num_names, train):
        """Inverse class frequency with auto (n / (K * count)), or the recipe's one weight per class."""
        import numpy as np
        import torch

        weights = train.class_weights
        if weights is None:
            return None
        if weights == "auto":
            counts = np.bincount(np.asarray(labels), minlength=num_names).astype(np.float64)
            return torch.tensor(len(labels) / (num_names * np.maximum(counts, 1.0)), dtype=torch.float32)
        if len(weights) != num_names:
            raise RecipeError(f"train.class_weights has {len(weights)} weights for {num_names} classes.")
        return torch.tensor(weights, dtype=torch.float32)

    def metrics(self, y_true, scores, names, thresholds=None):
        from hf_transfer.metrics.classification import classification_metrics

        return classification_metrics(y_true, scores, names)

    def scalar_metric_fn(self, metric):
        import numpy as np

        from hf_transfer.metrics.classification import classification_metrics

        if metric not in self.metric_names:
            raise RecipeError(f"'{metric}' is not a {self.name} metric; choose one of {', '.join(self.metric_names)}.")

        def value(y_true, scores):
            scores = np.asarray(scores)
            return classification_metrics(y_true, scores, [str(i) for i in range(scores.shape[1])])[metric]

        return value

    def predictions(self, scores, names, thresholds=None):
        out = []
        for row in scores:
            best = int(row.argmax())
            out.append(
                {
                    "label": names[best],
                    "score": float(row[best]),
                    "probabilities": {name: float(p) for name, p in zip(names, row)},
                }
            )
        return out

    def save_plots(self, metrics, labels, scores, names, folder):
        from hf_transfer.metrics.plots import save_confusion_matrix_plot

        save_confusion_matrix_plot(metrics["confusion_matrix"], names, Path(folder) / self.card_plots[0][1])

    # --- transferability ---------------------------------------------------------------------------------------
    def logme_targets(self, labels, num_classes=None):
        """Each class's one-vs-rest 0/1 target (classes absent from `labels` are skipped)."""
        import numpy as np

        labels = np.asarray(labels)
        classes = np.unique(labels) if num_classes is None else [c for c in range(num_classes) if (labels == c).any()]
        return [(labels == c).astype(np.float64) for c in classes]

    def knn_score(self, features, labels, folds=5, seed=0):
        from hf_transfer.metrics.transferability import knn_accuracy

        return knn_accuracy(features, labels, folds=folds, seed=seed)

    def linear_score(self, features, labels, folds=5, seed=0):
        from hf_transfer.metrics.transferability import linear_probe_accuracy

        return linear_probe_accuracy(features, labels, folds=folds, seed=seed)

    # --- a run against its baselines, the model card ------------------------------------------------------------
    def transfer_metric(self, metric):
        """eval.metric where the count-based bootstrap has it, else accuracy."""
        from hf_transfer.metrics.bootstrap import BOOTSTRAP_METRICS

        return metric if metric in BOOTSTRAP_METRICS else "accuracy"

    def paired_bootstrap(self, metric, labels, ours, theirs, seed):
        """On the argmax predictions, through the count-based bootstrap (`bootstrap_metric_difference`)."""
        from hf_transfer.metrics.bootstrap import bootstrap_metric_difference

        return bootstrap_metric_difference(labels, ours[0].argmax(1), theirs[0].argmax(1), metric=metric, seed=seed)

    def card_summary(self, label_names):
        names = ", ".join(f"`{name}` ({i})" for i, name in enumerate(label_names))
        return f"It predicts one of {len(label_names)} labels (class id in brackets): {names}."

    def card_decision_code(self, logits, thresholds, indent=""):
        return f"{indent}print(labels[{logits}.argmax(-1).item()])"

    def pipeline_code(self, model_args, example, label_names, thresholds):
        """The best label, as the pipeline gives it first."""
        return f'classifier = pipeline("text-classification", {model_args})\nprint(classifier({example})[0]["label"])'
