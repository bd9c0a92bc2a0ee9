"""The run folder: what a finished run leaves behind, written atomically (its record: `runs.record`).

While training, everything lives in `<dir>.incomplete/` (checkpoints for --resume, the best weights so far,
the folder being assembled). Only a complete folder is renamed to `<dir>`, so a crash never leaves a run folder
that half-loads. What is replaced or deleted is only ever hf-transfer's own: a run folder (it holds
`hf_transfer.json`), a cross-validation report folder, an empty folder, or a work folder that holds the recipe its
run started with.
"""

from __future__ import annotations

import copy
import ctypes
import errno
import logging
import os
import re
import shutil
import sys
from pathlib import Path

import yaml

from hf_transfer.core.errors import HfTransferError, RecipeError
from hf_transfer.core.files import atomic_write, write_json, write_yaml  # noqa: F401  (re-read by callers of the run folder)

logger = logging.getLogger(__name__)

METADATA_FILE = "hf_transfer.json"
RECIPE_FILE = "recipe.yaml"
METRICS_FILE = "metrics.json"
LABELS_FILE = "labels.json"
THRESHOLDS_FILE = "thresholds.json"  # multi-label: each label's decision threshold, tuned on validation
CV_METRICS_FILE = "cv_metrics.json"  # the report of `hf-transfer cv`, whose folder output.overwrite may replace
# Files that mark a folder as hf-transfer's own output, which output.overwrite may replace.
OWNED_MARKERS = (METADATA_FILE, CV_METRICS_FILE)
# What a run puts in its work folder: one folder per stage (source, target, baseline-*, cv's fold-*), the folder being
# published, the source model, and the recipe.
_WORK_ENTRY = re.compile(
    r"source|target|baseline-[a-z_]+|fold-\d+|final|source_model|recipe\.yaml(\.[0-9a-f]{32}\.tmp)?"
)
# Recipe keys that cannot change what training computes, so --resume accepts them edited: names, where the run
# folder goes and whether it may replace one, the Hub settings (used after training), how often the progress bar
# updates and how many processes load data (the batches are the same).
RESUME_EXEMPT = ("name", "description", "output", "hub", "train.log_every_steps", "train.num_workers")


def check_output_dir(run_dir: Path) -> None:
    """Refuse a run folder that is the current folder, one above it, the home folder or the root: replacing it
    (or renaming a sibling to it) would take everything in it."""
    run_dir = Path(run_dir)
    resolved = Path(os.path.realpath(run_dir))
    cwd = Path(os.path.realpath(Path.cwd()))
    if (
        run_dir.name in ("", ".", "..")
        or resolved == resolved.parent
        or resolved in (cwd, *cwd.parents)
        or resolved == Path(os.path.realpath(Path.home()))
    ):
        raise HfTransferError(
            f"output.dir '{run_dir}' is the current folder, a folder above it or the root, which a run folder would "
            "replace; give a folder of its own, e.g. output.dir=outputs/my-run."
        )


def incomplete_dir(run_dir: Path) -> Path:
    check_output_dir(run_dir)
    return run_dir.with_name(run_dir.name + ".incomplete")


def _is_replaceable(path: Path) -> bool:
    if path.is_symlink() or not path.is_dir():
        return False
    return any((path / marker).is_file() for marker in OWNED_MARKERS) or not any(path.iterdir())


def _check_replaceable(run_dir: Path) -> None:
    if not _is_replaceable(run_dir):
        raise HfTransferError(
            f"output.dir '{run_dir}' is not an hf-transfer run folder (it has no {METADATA_FILE}), so "
            "output.overwrite will not replace it; choose another output.dir, or move that folder away yourself."
        )


def check_can_write(run_dir: Path, overwrite: bool, resume: bool) -> None:
    """Fail before any work when the run folder exists and may not be replaced."""
    check_output_dir(run_dir)
    restore_stranded(run_dir)
    if run_dir.exists() or run_dir.is_symlink():
        if not overwrite:
            raise HfTransferError(
                f"output.dir '{run_dir}' already exists; pass output.overwrite=true to replace it, "
                "or output.dir=<another folder>."
            )
        _check_replaceable(run_dir)
    work = incomplete_dir(run_dir)
    if work.exists() and not resume:
        raise HfTransferError(
            f"'{work}' holds an interrupted run; add --resume to continue it, or delete that folder to start over."
        )


# ---------------------------------------------------------------------------------------------------------------
# The work folder's recipe: what --resume continues


def save_work_recipe(work: Path, recipe_dict: dict) -> None:
    """Record the recipe a run starts with in its work folder (once: a resumed run keeps the original)."""
    work.mkdir(parents=True, exist_ok=True)
    if not (work / RECIPE_FILE).is_file():
        write_yaml(work / RECIPE_FILE, recipe_dict)


def _flat(data, prefix: str = "") -> dict:
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            out |= _flat(value, f"{prefix}{key}.")
        return out
    return {prefix.rstrip("."): data}


def recipe_differences(saved: dict, current: dict) -> list[str]:
    """The dotted keys whose values differ between two recipe dicts, except those in RESUME_EXEMPT."""
    a, b = _flat(saved), _flat(current)
    return sorted(
        key
        for key in set(a) | set(b)
        if a.get(key) != b.get(key) and not any(key == e or key.startswith(e + ".") for e in RESUME_EXEMPT)
    )


def check_resume_recipe(work: Path, recipe_dict: dict) -> None:
    """Refuse to resume the interrupted run in `work` with a recipe that would train differently."""
    path = work / RECIPE_FILE
    if not path.is_file() and all(_WORK_ENTRY.fullmatch(entry.name) for entry in work.iterdir()):
        # Stage folders and nothing else: a run interrupted before it recorded its recipe (or by an older
        # hf-transfer). Nothing to compare against; it resumes as before, and records the recipe from now on.
        logger.warning("%s holds no %s; resuming without checking the recipe against it", work, RECIPE_FILE)
        return
    if not path.is_file():
        raise HfTransferError(
            f"'{work}' holds no {RECIPE_FILE}, so it is no interrupted run that hf-transfer can resume; move it away "
            "(or delete it) to start over."
        )
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        saved = None
    if not isinstance(saved, dict):
        raise HfTransferError(f"'{path}' is damaged, so the interrupted run cannot be resumed; delete '{work}'.")
    saved = with_defaults_of_new_keys(current_recipe_keys(saved))
    # Through YAML both ways, so that a tuple and a list, or 1 and 1.0 read back alike, compare equal.
    current = yaml.safe_load(yaml.safe_dump(recipe_dict, sort_keys=False, allow_unicode=True))
    differences = recipe_differences(saved, current)
    if differences:
        raise RecipeError(
            f"the recipe differs from the interrupted run in {', '.join(differences)} (saved in '{path}'); resume "
            f"with the same settings, or delete '{work}' to start over."
        )


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # glibc < 2.28, musl
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a filesystem without exchange
        return False
    raise OSError(code, os.strerror(code), str(b))


def _stranded(run_dir: Path) -> list[Path]:
    return sorted(run_dir.parent.glob(f".{run_dir.name}.replaced-*"))


def restore_stranded(run_dir: Path) -> None:
    """Put back an old run folder that a publish killed between its two renames left under its hidden name."""
    if run_dir.exists() or run_dir.is_symlink():
        return
    for old in reversed(_stranded(run_dir)):
        if (old / METADATA_FILE).is_file():
            os.replace(old, run_dir)
            return


def publish(staging: Path, run_dir: Path) -> None:
    """Move a complete staging folder to `run_dir`, replacing an old run folder if there is one.

    At every instant `run_dir` is the old run folder or the new one: one atomic exchange where the system has it,
    else two renames that are undone when the second fails (and that `restore_stranded` undoes after a kill).
    Whatever sits at `run_dir` that is not a run folder is never touched: the publish fails instead.
    """
    restore_stranded(run_dir)
    if not (run_dir.exists() or run_dir.is_symlink()):
        os.replace(staging, run_dir)
        return
    _check_replaceable(run_dir)  # checked before training too, but hours may have passed since
    if _exchange(staging, run_dir):
        shutil.rmtree(staging)  # now the old run folder
        return
    old = run_dir.with_name(f".{run_dir.name}.replaced-{os.getpid()}")
    os.replace(run_dir, old)
    try:
        os.replace(staging, run_dir)
    except BaseException:
        os.replace(old, run_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_recipe_dict(run_dir: Path) -> dict:
    """The recipe a run folder records, any key renamed since the release that wrote it under its current name."""
    return current_recipe_keys(yaml.safe_load((Path(run_dir) / RECIPE_FILE).read_text(encoding="utf-8")))


def with_defaults_of_new_keys(saved: dict) -> dict:
    """A recorded recipe dict read through today's schema, so keys a newer hf-transfer added (`problem_type`,
    `strategy.towers`) take their defaults, which is what the older run trained with; a record today's schema
    refuses is compared as it is, key by key."""
    from hf_transfer.config.recipe import recipe_from_dict

    try:
        return recipe_from_dict(copy.deepcopy(saved)).to_dict()
    except HfTransferError:
        return saved


def current_recipe_keys(raw):
    """A recorded recipe dict with its renamed keys under their current names, without a warning: the user did not
    write that file (an older hf-transfer did) and has nothing to change."""
    from hf_transfer.config.recipe import Recipe
    from hf_transfer.config.schema import current_keys

    return current_keys(Recipe, raw)
