"""The run folder: what a finished run leaves behind, written atomically, and how it is read back.

While training, everything lives in `<dir>.incomplete/` (checkpoints for --resume, the best weights so far,
the folder being assembled). Only a complete folder is renamed to `<dir>`, so a crash never leaves a run folder
that half-loads.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml

from hf_transfer.errors import HfTransferError, ModelError

METADATA_FILE = "hf_transfer.json"
RECIPE_FILE = "recipe.yaml"
METRICS_FILE = "metrics.json"
LABELS_FILE = "labels.json"
FORMAT_VERSION = 1


def incomplete_dir(run_dir: Path) -> Path:
    return run_dir.with_name(run_dir.name + ".incomplete")


def check_can_write(run_dir: Path, overwrite: bool, resume: bool) -> None:
    """Fail before any work when the run folder exists and may not be replaced."""
    if run_dir.exists() and not overwrite:
        raise HfTransferError(
            f"output.dir '{run_dir}' already exists; pass output.overwrite=true to replace it, "
            "or output.dir=<another folder>."
        )
    work = incomplete_dir(run_dir)
    if work.exists() and not resume:
        raise HfTransferError(
            f"'{work}' holds an interrupted run; add --resume to continue it, or delete that folder to start over."
        )


def write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_yaml(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    os.replace(tmp, path)


def publish(staging: Path, run_dir: Path) -> None:
    """Move a complete staging folder to `run_dir` in one rename, replacing an old run folder if there is one."""
    old = None
    if run_dir.exists():
        old = run_dir.with_name(f".{run_dir.name}.replaced-{os.getpid()}")
        os.replace(run_dir, old)
    os.replace(staging, run_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_metadata(run_dir: Path) -> dict:
    path = Path(run_dir) / METADATA_FILE
    if not Path(run_dir).is_dir():
        raise HfTransferError(f"run folder '{run_dir}' does not exist; give the output folder of `hf-transfer run`.")
    if not path.is_file():
        raise ModelError(f"'{run_dir}' is not an hf-transfer run folder ({METADATA_FILE} is missing).")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelError(f"'{path}' is damaged ({err.msg}); train the run again.") from None
    if meta.get("format") != FORMAT_VERSION:
        raise ModelError(f"'{run_dir}' was written by another version of hf-transfer (format {meta.get('format')}).")
    return meta


def read_recipe_dict(run_dir: Path) -> dict:
    return yaml.safe_load((Path(run_dir) / RECIPE_FILE).read_text(encoding="utf-8"))
