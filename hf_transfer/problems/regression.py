"""Regression: one value per target, MSE or Huber on the (optionally standardised) targets, identity scores."""

from __future__ import annotations

from pathlib import Path

from hf_transfer.core.errors import DataError, RecipeError
from hf_transfer.problems.base import ProblemType, varying_columns


class Regression(ProblemType):
    """T floats per row in `labels` (standardised with `target_scaling` when data.standardize_targets); carving and
    folds stratified on quantile bins; rmse by default, in the targets' own unit."""

    name = "regression"
    names_word = "targets"
    metric_names = ("mse", "rmse", "mae", "r2", "pearson", "spearman")
    default_metric = "rmse"
    card_metrics = ("rmse", "mae", "r2", "pearson", "spearman")
    card_plots = (("Predicted against true values", "predictions.png"), ("Residuals", "residuals.png"))
    prediction_key = "values"
    source_report_metrics = ("rmse", "r2")
    takes_class_weights = False
    label_columns_hint = "target columns"
    reads_standardize_targets = True
    knn_score_name = "knn_neg_rmse"
    linear_score_name = "linear_r2"
    transfer_scores_description = "kNN -RMSE in standard deviations / ridge R²"
    name_word = "target"

    # --- the recipe's rules ----------------------------------------------------------------------------------
    def check_data(self, data, where="data"):
        super().check_data(data, where)
        if data.label_names is not None:
            raise RecipeError(
                f"{where}.label_names names classes, which regression has none of; the targets are named after "
                f"their columns ({where}.label_column or {where}.label_columns), so remove it."
            )
        if data.train_samples_per_class is not None:
            raise RecipeError(
                f"{where}.train_samples_per_class keeps rows per class, which regression has none of; use "
                f"{where}.max_train_samples instead."
            )

    def check_train(self, train, where="train"):
        if train.sampler != "random":
            raise RecipeError(
                f"{where}.sampler {train.sampler} draws rows by class, and regression targets have no classes "
                f"({self.name}); use {where}.sampler=random."
            )
        if train.class_weights is not None:
            raise RecipeError(f"{where}.class_weights weighs classes, and regression has none; leave it out.")

    # --- data ------------------------------------------------------------------------------------------------
    def encode_targets(self, raw, data, where):
        from hf_transfer.problems.regression_coding import encode_regression

        return encode_regression(raw, data, where)

    def encode_targets_like(self, split, data, names, where):
        from hf_transfer.problems.regression_coding import encode_regression_like

        return encode_regression_like(split, data, where)

    def carve_validation(self, train, fraction, seed, names):
        from hf_transfer.problems.regression_coding import carve_regression

        return carve_regression(train, fraction, seed)

    def limit_rows(self, split, n, seed):
        if n is None:
            return split
        raise DataError(
            "data.train_samples_per_class keeps rows per class, which regression has none of; use "
            "data.max_train_samples instead."
        )

    def label_array(self, split):
        from hf_transfer.problems.label_coding import label_matrix

        return label_matrix(split)

    def target_scaling(self, train, data):
        """The mean and standard deviation of each target over `train` (a constant target gets std 1), when
        data.standardize_targets."""
        if not data.standardize_targets:
            return None
        from hf_transfer.problems.regression_coding import target_scaling_of

        return target_scaling_of(train)

    def scale_targets(self, split, scaling):
        if not scaling:
            return split
        from hf_transfer.problems.regression_coding import standardize

        return standardize(split, scaling)

    def in_target_units(self, values, scaling):
        """Standardised values times the train std plus the train mean (unchanged without a scaling)."""
        import numpy as np

        values = np.asarray(values, dtype=np.float64)
        if not scaling:
            return values
        mean = np.asarray(scaling["mean"], dtype=np.float64)
        std = np.asarray(scaling["std"], dtype=np.float64)
        return values.reshape(len(values), -1) * std + mean

    def fold_indices(self, labels, n_splits, seed):
        """StratifiedKFold over quantile bins of the target (several targets: of the mean of their within-target
        ranks), so every fold sees low, middle and high values."""
        import numpy as np

        from hf_transfer.metrics.folds import check_fold_count, quantile_bins, stratified_fold_indices

        labels = np.asarray(labels)
        check_fold_count(len(labels), n_splits)
        return stratified_fold_indices(quantile_bins(labels, n_splits), n_splits, seed)

    # --- the loop ----------------------------------------------------------------------------------------------
    def loss(self, logits, labels, class_weights=None, train=None):
        """MSE, or Huber with train.regression_loss huber (squared below train.huber_delta, linear above)."""
        import torch.nn.functional as F

        labels = labels.to(logits.dtype).reshape(logits.shape)
        if train is not None and train.regression_loss == "huber":
            return F.huber_loss(logits, labels, delta=train.huber_delta)
        return F.mse_loss(logits, labels)

    def scores(self, logits):
        return logits

    def metrics(self, y_true, scores, names, thresholds=None):
        from hf_transfer.metrics.regression import regression_metrics

        return regression_metrics(y_true, scores, names)

    def scalar_metric_fn(self, metric):
        from hf_transfer.metrics.regression import regression_metric_fn

        return regression_metric_fn(metric)

    def predictions(self, scores, names, thresholds=None):
        return [{"values": {name: float(v) for name, v in zip(names, row)}} for row in scores]

    def save_plots(self, metrics, labels, scores, names, folder):
        from hf_transfer.metrics.plots import save_regression_plots

        (_, scatter), (_, residuals) = self.card_plots
        save_regression_plots(labels, scores, names, Path(folder) / scatter, Path(folder) / residuals)

    def fold_target_scaling(self, model, scaling, num_names):
        """Put the target scaling into the head: its last Linear (the one trainable Linear with one output per
        target) then gives values in the targets' units, `W std, b std + mean`, so the saved model predicts them
        with transformers, PEFT or timm alone. False (nothing changed) where no such single layer is found."""
        if not scaling:
            return False
        import torch
        from torch import nn

        heads = [
            module
            for module in model.modules()
            if isinstance(module, nn.Linear) and module.out_features == num_names and module.weight.requires_grad
        ]
        if len(heads) != 1 or heads[0].bias is None:
            return False
        head = heads[0]
        std = torch.as_tensor(scaling["std"], dtype=head.weight.dtype, device=head.weight.device)
        mean = torch.as_tensor(scaling["mean"], dtype=head.bias.dtype, device=head.bias.device)
        with torch.no_grad():
            head.weight.mul_(std[:, None])
            head.bias.mul_(std).add_(mean)
        return True

    # --- transferability ---------------------------------------------------------------------------------------
    def logme_targets(self, labels, num_classes=None):
        """Each target column, standardised (constant targets skipped), so that targets in different units weigh
        the same in the mean and the model needs no intercept."""
        varying = varying_columns(labels)
        if not varying:
            raise DataError("LogME needs a regression target that varies; every target is constant on these rows.")
        return [(column - column.mean()) / column.std() for column in varying]

    def knn_score(self, features, labels, folds=5, seed=0):
        """Minus the RMSE of the neighbours' mean, on targets standardised over all rows (0 is perfect and -1 about
        what predicting the mean gives; several targets are averaged), over quantile-binned folds."""
        import numpy as np

        from hf_transfer.metrics.transferability import knn_predictions, negative_rmse

        targets = np.asarray(labels, dtype=np.float64)
        targets = targets[:, None] if targets.ndim == 1 else targets
        spread = targets.std(axis=0)
        targets = (targets - targets.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
        return negative_rmse(knn_predictions(features, targets, self.fold_indices(labels, folds, seed)))

    def linear_score(self, features, labels, folds=5, seed=0):
        """R² of a ridge regression, averaged over targets."""
        from hf_transfer.metrics.transferability import r_squared, ridge_predictions

        return r_squared(ridge_predictions(features, labels, self.fold_indices(labels, folds, seed)))

    # --- the model card ------------------------------------------------------------------------------------------
    def card_summary(self, label_names):
        names = ", ".join(f"`{name}`" for name in label_names)
        return f"It predicts {len(label_names)} value(s): {names}."

    def card_decision_code(self, logits, thresholds, indent=""):
        return f"{indent}print(dict(zip(labels, {logits}[0].tolist())))"

    def pipeline_code(self, model_args, example, label_names, thresholds):
        """Each target's value, as the pipeline scores it (no activation: the config's problem_type)."""
        return super().pipeline_code(model_args, example, label_names, thresholds) + "print(scores)"
