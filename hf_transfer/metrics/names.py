"""The scalar keys a metrics function returns, in the order tables show them: a leaf with no imports, so a problem
type names its metrics from here without loading numpy or scikit-learn."""

SINGLE_LABEL_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "precision_macro",
    "recall_macro",
    "roc_auc",
    "log_loss",
)
"""What `classification.classification_metrics` returns as scalars (besides num_samples)."""
