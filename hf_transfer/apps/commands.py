"""What each `hf-transfer` command does: read its arguments, call the library, print. The flags and help texts
are declared in `apps.cli`, which hands each parsed command to its `cmd_*` here.

Library modules are imported inside each command, so the light commands (`ls`, `cp`, `validate`) load no torch.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from hf_transfer.core.errors import HfTransferError

logger = logging.getLogger("hf_transfer")


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
