"""`hf-transfer`: run | ls | cp | validate | eval | predict | push | cv | sweep | rank.

The command layer: each `cmd_*` reads its arguments, calls the library and prints; each `_add_*_parser` declares its
command's flags and help texts (`SUB_PARSERS`, in --help order). It is longer than most modules because it has one
owner, the command line: every flag and message a user types or reads is here, and nothing else is.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

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


def cmd_run(args) -> int:
    from hf_transfer.config.loading import load_recipe
    from hf_transfer.hub.publish import HubPublisher
    from hf_transfer.metrics.tables import format_metrics_table
    from hf_transfer.runs.folder import METRICS_FILE
    from hf_transfer.runs.runner import run_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    run_dir = run_recipe(recipe, resume=args.resume, publisher=HubPublisher())
    metrics_path = run_dir / METRICS_FILE
    if metrics_path.is_file():  # only the main process has it when launched on several
        metrics = json.loads(metrics_path.read_text())
        split = metrics["report_split"]
        print(format_metrics_table(metrics[split], title=f"{recipe.name} — {split} split"))
        for line in transfer_lines(metrics):
            print(line)
        print(f"\nRun folder: {run_dir}")
    return 0


BASELINE_WORDS = {
    "scratch": "from scratch",
    "head_only": "with the head only",
    "zero_shot": "zero-shot from the label names",
    "image_only": "with the image alone",
    "text_only": "with the text alone",
}


def transfer_lines(metrics: dict) -> list[str]:
    """The no-transfer comparison and the source task's retention, one line each, for the end of a run."""
    from hf_transfer.metrics.scalars import greater_is_better

    lines = []
    transfer = metrics.get("transfer")
    if transfer:
        for name, gain in transfer["gains"].items():
            lower = "" if greater_is_better(gain["metric"]) else ", lower is better"
            lines.append(
                f"transfer: {gain['metric']} {_number(gain['a'])} vs {_number(gain['b'])} "
                f"{BASELINE_WORDS.get(name, name)}, "
                f"gain {_number(gain['difference'], '+.4f')} ({int(gain['confidence'] * 100)}% CI "
                f"{_number(gain['ci_low'], '+.4f')} to {_number(gain['ci_high'], '+.4f')}{lower})"
            )
    source = metrics.get("source")
    if source:
        after = source["after"]
        key = source.get("metrics", ["accuracy"])[0]  # the source problem type's headline metric
        kept = f", {_number(after[key])} after the target stage" if after else " (frozen backbone: nothing forgotten)"
        lines.append(f"source task: {key} {_number(source['before'][key])} before{kept}")
    return lines


def _number(value, spec: str = ".4f") -> str:
    """A metric for a line of text; n/a where it is undefined (a correlation of a constant target)."""
    return "n/a" if value is None else format(value, spec)


def cmd_ls(args) -> int:
    from hf_transfer.config.loading import read_recipe_yaml, shipped_recipes

    recipes = shipped_recipes()
    width = max(len(name) for name in recipes)
    for name, path in recipes.items():
        description = read_recipe_yaml(path).get("description", "")
        print(f"{name:<{width}}  {description}")
    return 0


def cmd_cp(args) -> int:
    from hf_transfer.config.loading import resolve_recipe_path

    source = resolve_recipe_path(args.name)
    dest = Path(args.dest)
    if dest.is_dir():
        dest = dest / source.name
    if dest.exists() and not args.force:
        raise HfTransferError(f"'{dest}' already exists; pass --force to replace it or choose another name.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    print(f"Copied {args.name} to {dest}; edit it, then: hf-transfer run {dest}")
    return 0


def _check_local_paths(recipe) -> None:
    """The local files and folders a recipe names exist (what `run` would find missing only once it loads them)."""
    from hf_transfer.core.errors import DataError
    from hf_transfer.core.paths import check_local_checkpoint

    check_local_checkpoint(recipe.model.checkpoint)
    sections = [("data", recipe.data)] + ([("source.data", recipe.source.data)] if recipe.source else [])
    for where, data in sections:
        for key in ("train_files", "validation_files", "test_files"):
            for name in getattr(data, key):
                if not Path(name).is_file():
                    raise DataError(
                        f"{where}.{key}: file '{name}' does not exist; check the path (relative to where you run)."
                    )
        if data.data_dir and not Path(data.data_dir).is_dir():
            raise DataError(f"{where}.data_dir: folder '{data.data_dir}' does not exist.")


def _check_at_least_one(value: int, flag: str) -> None:
    if value < 1:
        raise HfTransferError(f"{flag} must be at least 1, not {value}.")


def cmd_validate(args) -> int:
    from hf_transfer.config.loading import load_recipe
    from hf_transfer.config.strategies import strategy_name

    recipe = load_recipe(args.recipe, args.overrides)
    _check_local_paths(recipe)
    strategy = strategy_name(recipe.strategy)
    print(f"{args.recipe}: valid ({recipe.task}, {recipe.model.checkpoint}, strategy {strategy}).")
    return 0


def _read_inputs(args, classifier) -> list:
    """What `predict` predicts on, read as the run's input kind reads its arguments, --image/--text and --file."""
    return classifier.modality.read_inputs(
        list(args.inputs), args.file, args.image or [], args.text or [], classifier.recipe.data, _read_rows
    )


def _read_rows(path: Path):
    from hf_transfer.config.sections import DataConfig
    from hf_transfer.data.splits import load_raw_splits

    return load_raw_splits(DataConfig(train_files=[str(path)]))["train"]


def _shown(x) -> str:
    return " | ".join(str(part) for part in x) if isinstance(x, tuple) else str(x)


def cmd_predict(args) -> int:
    from hf_transfer.apps.predict import load

    _check_at_least_one(args.batch_size, "--batch-size")
    classifier = load(args.run, revision=args.revision)
    inputs = _read_inputs(args, classifier)
    predictions = classifier.predict(inputs, batch_size=args.batch_size, threshold=args.threshold)
    if args.json:
        print(json.dumps([{"input": _shown(x), **p} for x, p in zip(inputs, predictions)], indent=2))
        return 0
    for x, p in zip(inputs, predictions):
        text = _shown(x) if len(_shown(x)) <= 60 else _shown(x)[:57] + "..."
        print(f"{prediction_text(p)}\t{text}")
    return 0


def prediction_text(prediction: dict) -> str:
    """One prediction for the table: the label and its probability; the labels above their thresholds (or "-")
    and every label's score; or each target's value."""
    if "values" in prediction:
        return "  ".join(f"{name}={value:.4f}" for name, value in prediction["values"].items())
    if "labels" in prediction:
        scores = " ".join(f"{name}:{p:.3f}" for name, p in prediction["scores"].items())
        return f"{','.join(prediction['labels']) or '-'}\t{scores}"
    return f"{prediction['label']}\t{prediction['score']:.4f}"


def cmd_eval(args) -> int:
    from hf_transfer.apps.predict import load
    from hf_transfer.metrics.tables import format_metrics_table

    _check_at_least_one(args.batch_size, "--batch-size")
    classifier = load(args.run, revision=args.revision)
    metrics = classifier.evaluate(args.data, batch_size=args.batch_size, threshold=args.threshold)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(format_metrics_table(metrics, title=f"{args.run} on {', '.join(args.data)}"))
    return 0


def cmd_push(args) -> int:
    import yaml

    from hf_transfer.hub.push import push_run
    from hf_transfer.runs.folder import RECIPE_FILE, read_recipe_dict

    run_dir = Path(args.run)
    # The recipe's hub section gives the defaults: `hf-transfer push RUN` repeats what `hub.push` would have done.
    hub = (read_recipe_dict(run_dir).get("hub") or {}) if (run_dir / RECIPE_FILE).is_file() else {}
    repo_id = args.repo_id or hub.get("repo_id")
    if not repo_id:
        raise HfTransferError(
            "push needs --repo-id (e.g. --repo-id me/my-model); the run's recipe sets no hub.repo_id."
        )
    result = push_run(
        run_dir,
        repo_id,
        private=args.private or bool(hub.get("private")),
        revision=args.revision or hub.get("revision"),
        commit_message=args.commit_message,
        dry_run=args.dry_run,
        base_model=args.base_model,
    )
    where = result.repo_id + (f" (branch {result.revision})" if result.revision else "")
    visibility = "private" if result.private else "public"
    if result.dry_run:
        print(f"Dry run, nothing was sent. `hf-transfer push` would commit to {where}, {visibility}:")
    else:
        print(f"Pushed to {where}, {visibility}, in one commit: {result.commit_url or result.url}")
    for name, size in result.files.items():
        print(f"  {name:<32} {size:>12,} bytes")
    if result.skipped:
        print(f"Not pushed: {', '.join(result.skipped)}")
    if result.dry_run:
        print("Card metadata:")
        print(yaml.safe_dump(result.card_metadata, sort_keys=False).rstrip())
    else:
        print(f'Load it anywhere: hf-transfer predict {result.repo_id} "some input"')
    return 0


def cmd_cv(args) -> int:
    from hf_transfer.apps.cross_validation import cross_validate, format_cv_table
    from hf_transfer.config.loading import load_recipe
    from hf_transfer.runs.folder import CV_METRICS_FILE

    recipe = load_recipe(args.recipe, args.overrides)
    report = cross_validate(recipe, folds=args.folds, output_dir=args.output, resume=args.resume)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_cv_table(report))
        print(f"\nReport: {Path(report['output_dir']) / CV_METRICS_FILE}")
    return 0


def cmd_sweep(args) -> int:
    import shlex

    from hf_transfer.apps.sweep import SWEEP_FILE, check_trials, format_sweep_table, sweep
    from hf_transfer.config.loading import load_recipe

    check_trials(args.trials)  # before loading anything
    recipe = load_recipe(args.recipe, args.overrides)
    flags = ["--trials", str(args.trials), "--seed", str(args.seed)]
    flags += ["--timeout", str(args.timeout)] if args.timeout is not None else []
    flags += ["--output", args.output] if args.output else []
    flags += ["--out", args.out] if args.out else []
    command = "hf-transfer sweep " + shlex.join([args.recipe, *args.overrides, *flags])
    report = sweep(
        recipe,
        trials=args.trials,
        seed=args.seed,
        timeout=args.timeout,
        output_dir=args.output,
        out=args.out,
        command=command,
        force=args.force,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_sweep_table(report))
        print(f"\nReport: {Path(report['output_dir']) / SWEEP_FILE}")
        print(f"Best recipe: {report['best_recipe']}; test it once with: hf-transfer run {report['best_recipe']}")
    return 0


def cmd_rank(args) -> int:
    from hf_transfer.apps.rank import format_rank_table, rank_checkpoints, rank_inputs

    _check_at_least_one(args.batch_size, "--batch-size")
    _check_at_least_one(args.max_samples, "--max-samples")
    inputs = rank_inputs(
        recipe=args.recipe,
        data=args.data,
        task=args.task,
        text_column=args.text_column,
        label_column=args.label_column,
        image_column=args.image_column,
        pooling=args.pooling,
        templates=args.template,
        problem_type=args.problem_type,
        label_columns=args.label_columns,
        label_separator=args.label_separator,
    )
    report = rank_checkpoints(
        args.checkpoints,
        inputs,
        max_samples=args.max_samples,
        folds=args.folds,
        seed=args.seed,
        batch_size=args.batch_size,
        by=args.by,
        zero_shot=args.zero_shot,
    )
    print(json.dumps(report, indent=2) if args.json else format_rank_table(report))
    return 0


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
