"""`hf-transfer`: run | ls | cp | validate | eval | predict | push | cv | sweep | rank.

The command line's declaration: each `_add_*_parser` declares its command's flags and help texts (`SUB_PARSERS`, in
--help order) and names the `cmd_*` of `apps.commands` that runs it; `main` parses, runs it and turns a user's
mistake into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from hf_transfer.apps.commands import (
    cmd_cp,
    cmd_cv,
    cmd_eval,
    cmd_ls,
    cmd_predict,
    cmd_push,
    cmd_rank,
    cmd_run,
    cmd_sweep,
    cmd_validate,
)
from hf_transfer.core.errors import HfTransferError
from hf_transfer.data.modalities import MODALITIES

logger = logging.getLogger("hf_transfer")


# Commands that only read recipes: they must answer without importing torch or transformers.
LIGHT_COMMANDS = frozenset({"ls", "cp", "validate"})


def _setup_logging(verbose: bool, command: str) -> None:
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    logging.getLogger("hf_transfer").setLevel(logging.DEBUG if verbose else logging.INFO)
    if command not in LIGHT_COMMANDS:
        import transformers

        transformers.logging.set_verbosity_error()


def _add_trained_run_arguments(p: argparse.ArgumentParser) -> None:
    """What `eval` and `predict` share: the run to load (a folder or a Hub repo id) and how to feed it."""
    p.add_argument("run", help="Run folder, or the Hub repo id it was pushed to (e.g. me/minilm-rt-lora).")
    p.add_argument("--revision", help="Branch, tag or commit of a Hub repo.")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true", help="Print machine-readable JSON.")
    p.add_argument(
        "--threshold",
        type=float,
        help="Multi-label runs: predict a label when its probability is at least this, for every label, instead "
        "of the per-label thresholds tuned on the validation split.",
    )


def build_parser() -> argparse.ArgumentParser:
    """`hf-transfer`'s parser: the global flags, then one sub-parser per command (`SUB_PARSERS`, in --help order)."""
    parser = argparse.ArgumentParser(
        prog="hf-transfer",
        description="Transfer learning on the Hugging Face stack: run a recipe, then evaluate, predict, share.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log debug details.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_sub_parser in SUB_PARSERS:
        add_sub_parser(sub)
    return parser


def _add_run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="Train with a recipe (a shipped name or a YAML path).",
        description="Train with a recipe. Overrides look like section.key=value.",
    )
    p.add_argument("recipe", help="Shipped recipe name (see `hf-transfer ls`) or path to a YAML file.")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.epochs=1 model.checkpoint=PATH")
    p.add_argument("--resume", action="store_true", help="Continue an interrupted run from its latest checkpoint.")
    p.set_defaults(func=cmd_run)


def _add_ls_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="List the shipped recipes.", description="List the shipped recipes.")
    p.set_defaults(func=cmd_ls)


def _add_cp_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cp", help="Copy a shipped recipe to edit it.", description="Copy a shipped recipe.")
    p.add_argument("name", help="Shipped recipe name.")
    p.add_argument("dest", help="Destination file or folder.")
    p.add_argument("--force", action="store_true", help="Replace an existing file.")
    p.set_defaults(func=cmd_cp)


def _add_validate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="Check a recipe without running it.", description="Check a recipe.")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=cmd_validate)


def _add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="Metrics of a trained run on new labelled data (a test set).",
        description="Evaluate a trained run on labelled files with the same columns as its training data, as the "
        "run's test split was: every metric, reported only (the recipe's eval.metric picked the checkpoint).",
    )
    _add_trained_run_arguments(p)
    p.add_argument("--data", nargs="+", required=True, help="csv/json/jsonl/parquet files.")
    p.set_defaults(func=cmd_eval)


def _add_predict_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="Labels and probabilities for new inputs.",
        description="Predict labels for texts (or image paths) given as arguments or in a file; for a multimodal "
        "run, an image and a text per example (--image a.png --text 'seven', repeated, or --file).",
    )
    _add_trained_run_arguments(p)
    p.add_argument("inputs", nargs="*", help="Texts or image paths.")
    p.add_argument(
        "--file",
        help="A .txt file (one input per line) or a csv/jsonl file with the input column (both columns for a "
        "multimodal run).",
    )
    p.add_argument("--image", action="append", help="Multimodal runs: an example's image path (pair with --text).")
    p.add_argument("--text", action="append", help="Multimodal runs: an example's text (after its --image).")
    p.set_defaults(func=cmd_predict)


def _add_push_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "push",
        help="Share a run folder on the Hub in one commit.",
        description="Push a run folder to a Hub model repo in one commit: weights, labels, tokenizer or image "
        "config, recipe, metrics and a model card. The token comes from HF_TOKEN or a stored login.",
    )
    p.add_argument("run", help="Run folder.")
    p.add_argument("--repo-id", help="Target repo, e.g. me/minilm-rt-lora (default: the recipe's hub.repo_id).")
    p.add_argument("--private", action="store_true", help="Create the repo as private.")
    p.add_argument("--revision", help="Branch to push to (created if missing; default main).")
    p.add_argument("--commit-message", help="Message of the commit.")
    p.add_argument(
        "--base-model",
        help="Hub id of the base model, when the run trained from a local folder without model.hub_id.",
    )
    p.add_argument("--dry-run", action="store_true", help="List the files and the card metadata; send nothing.")
    p.set_defaults(func=cmd_push)


def _add_cv_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cv",
        help="Cross-validate a recipe: mean ± std of every metric over K stratified folds.",
        description="Cut the recipe's train data into K folds that respect its labels (stratified; iteratively "
        "stratified for multi-label; on target quantiles for regression) and run its strategy once per fold, that "
        "fold held out; report the mean and std of every metric on the held-out rows. Multi-label folds pick their "
        "epoch and tune their thresholds on validation rows of their own, never on the held-out ones. A linear "
        "probe extracts features once for all folds.",
    )
    p.add_argument("recipe", help="Shipped recipe name (see `hf-transfer ls`) or path to a YAML file.")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.epochs=1 model.checkpoint=PATH")
    p.add_argument("--folds", type=int, default=5, help="Number of stratified folds (default 5).")
    p.add_argument("--output", help="Folder for cv_metrics.json (default: outputs/<recipe>-cv).")
    p.add_argument("--resume", action="store_true", help="Continue an interrupted cross-validation.")
    p.add_argument("--json", action="store_true", help="Print machine-readable JSON.")
    p.set_defaults(func=cmd_cv)


def _add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="Search a recipe's learning rate and strategy knobs with Optuna on the validation split.",
        description="Run N trials of the recipe through the same loop, each with a learning rate (the recipe's / 10 "
        "to x 10), epochs and the strategy's main knob (LoRA rank, unfrozen blocks, or the probe's weight decay and "
        "head) proposed by a seeded TPE sampler, scored on the validation split only (the test split is dropped). "
        "Prints every trial, writes sweep.json, sweep.png and the best recipe. A linear probe extracts its features "
        "once for all trials.",
    )
    p.add_argument("recipe", help="Shipped recipe name (see `hf-transfer ls`) or path to a YAML file.")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.epochs=1 model.checkpoint=PATH")
    p.add_argument("--trials", type=int, default=20, help="Number of trials (default 20).")
    p.add_argument("--seed", type=int, default=0, help="Seed of the TPE sampler (default 0).")
    p.add_argument("--timeout", type=float, help="Start no trial after this many seconds.")
    p.add_argument("--output", help="Folder for sweep.json and sweep.png (default: outputs/<recipe>-sweep).")
    p.add_argument("--out", help="Where to write the best recipe (default: best.yaml in the --output folder).")
    p.add_argument("--force", action="store_true", help="Replace an existing --out file.")
    p.add_argument("--json", action="store_true", help="Print machine-readable JSON.")
    p.set_defaults(func=cmd_sweep)


def _add_rank_candidate_arguments(p: argparse.ArgumentParser) -> None:
    """The checkpoints `rank` scores: by their features, zero-shot, or both."""
    p.add_argument("--checkpoints", nargs="+", help="Local folders or Hub ids (timm names for images).")
    p.add_argument(
        "--zero-shot",
        nargs="+",
        metavar="CHECKPOINT",
        help="Also score these CLIP / SigLIP checkpoints (or text encoders for text) zero-shot: their accuracy on the "
        "same rows from the label names alone (templates and descriptions from --recipe's zero_shot section).",
    )
    p.add_argument(
        "--template",
        action="append",
        help="A zero-shot prompt with {label} in it; repeat to average several (default 'a photo of a {label}.' for "
        "images, '{label}' for texts).",
    )


def _add_rank_data_arguments(p: argparse.ArgumentParser) -> None:
    """The labelled rows `rank` scores on: files or a recipe's, their task, columns and problem type."""
    from hf_transfer.problems import problem_type_names

    p.add_argument("--data", nargs="+", help="Labelled csv/json/jsonl/parquet files (or take them from --recipe).")
    p.add_argument("--recipe", help="Take the data, task and columns from this recipe (its train split).")
    p.add_argument("--task", choices=MODALITIES.tasks(with_towers=False), help="Default: text.")
    p.add_argument("--text-column", help="Column holding the text (default text).")
    p.add_argument("--label-column", help="Column holding the labels (default label).")
    p.add_argument("--image-column", help="Column holding images or image paths (default image).")
    p.add_argument(
        "--problem-type",
        choices=problem_type_names(),
        help="What the labels are (default single_label_classification, or the recipe's): multi-label scores by "
        "macro mAP, regression by R² and -RMSE.",
    )
    p.add_argument(
        "--label-columns",
        nargs="+",
        help="Multi-label: one 0/1 column per label; regression: the target columns.",
    )
    p.add_argument("--label-separator", help='Multi-label: the separator of labels in one string ("comedy|drama").')


def _add_rank_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rank",
        help="Score candidate checkpoints on a sample of your data before training.",
        description="Extract each checkpoint's features of the same sample of labelled data and score them: "
        "cross-validated kNN and logistic-regression accuracy, and LogME; print them ranked, with their cost. "
        "--zero-shot candidates (CLIP, SigLIP or text encoders) are scored by their accuracy from the label names "
        "alone.",
    )
    _add_rank_candidate_arguments(p)
    _add_rank_data_arguments(p)
    p.add_argument("--max-samples", type=int, default=1000, help="Score on at most this many rows (default 1000).")
    p.add_argument("--pooling", choices=["mean", "cls"], help="Feature pooling (default mean, or the recipe's).")
    p.add_argument("--folds", type=int, default=5, help="Folds of the kNN and linear-probe accuracy (default 5).")
    p.add_argument(
        "--by",
        choices=[
            "logme",
            "linear_accuracy",
            "knn_accuracy",
            "zero_shot_accuracy",
            "linear_map_macro",
            "knn_map_macro",
            "linear_r2",
            "knn_neg_rmse",
        ],
        help="Rank by (default logme, or zero_shot_accuracy when only --zero-shot candidates are given); "
        "multi-label data has linear_map_macro and knn_map_macro, regression linear_r2 and knn_neg_rmse.",
    )
    p.add_argument("--seed", type=int, default=0, help="Seed of the sample and the folds.")
    p.add_argument("--batch-size", type=int, default=64, help="Batch size of the feature pass.")
    p.add_argument("--json", action="store_true", help="Print machine-readable JSON.")
    p.set_defaults(func=cmd_rank)


SUB_PARSERS = (
    _add_run_parser,
    _add_ls_parser,
    _add_cp_parser,
    _add_validate_parser,
    _add_eval_parser,
    _add_predict_parser,
    _add_push_parser,
    _add_cv_parser,
    _add_sweep_parser,
    _add_rank_parser,
)
"""The commands' sub-parsers, in the order `hf-transfer --help` lists them; each names the cmd_* that runs it."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.command)
    try:
        return args.func(args)
    except HfTransferError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
