"""Share a run folder on the Hub: `hf-transfer push`, `hub.push` in recipes.

The run folder is the unit. A push copies what may be shared into a temporary staging folder (`stage`; the run folder
itself is never touched), rewrites what only made sense on this machine (absolute paths, a base model loaded from a
local folder) so that the repo names its base model by Hub id, renders the card for the repo, and sends everything in
one commit. A repo pushed this way loads back with nothing but its id: `download.download_run` fetches it and
`hf_transfer.load` rebuilds the base model from the recorded id, then applies the adapter or head and restores the
labels.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_transfer.core.errors import HfTransferError, HubError
from hf_transfer.hub.access import check_repo_id, require_token
from hf_transfer.hub.retry import hub_error, is_remote_failure, retrying
from hf_transfer.hub.stage import (
    STALE_PATTERNS,
    check_nothing_private,
    local_roots,
    looks_local,
    stage_run,
)
from hf_transfer.runs.folder import (
    LABELS_FILE,
    METADATA_FILE,
    METRICS_FILE,
    RECIPE_FILE,
    read_recipe_dict,
)
from hf_transfer.runs.record import RunRecord, read_record

logger = logging.getLogger(__name__)

REQUIRED_FILES = (METADATA_FILE, LABELS_FILE, RECIPE_FILE, METRICS_FILE)


@dataclass
class PushResult:
    """What a push sent (or, with `dry_run`, would send)."""

    repo_id: str
    revision: str | None
    private: bool
    dry_run: bool
    files: dict[str, int]  # path in repo -> size in bytes
    skipped: list[str]  # run-folder entries that were not pushed
    card_metadata: dict[str, Any]
    base_model: str | None
    url: str | None = None
    commit_url: str | None = None
    commit_oid: str | None = None
    deleted: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# The base model's Hub id


def _timm_hub_id(name: str) -> str | None:
    """The Hub repo timm loads a model name's pretrained weights from (`resnet18` -> `timm/resnet18.a1_in1k`)."""
    try:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(name)
    except Exception:  # an unknown name or tag: no Hub id to record
        return None
    return getattr(cfg, "hf_hub_id", None) if cfg else None


def base_model_of(
    record: RunRecord | None, override: str | None = None, run_dir: Path | str = "the run"
) -> str | None:
    """The Hub id of a run's base model, for `base_model` on the card and loading the repo back.

    Order: `override` (`--base-model`), the recorded `model.hub_id`, then the checkpoint when it is a Hub id. None
    only for a timm model name without a Hub repo (it still loads by name anywhere). A base model that was only a
    local folder cannot be named, so the push stops and says how to name it (transformers issue #33922).
    """
    if override:
        return check_repo_id(override.removeprefix("hf-hub:"), "--base-model")
    backbone = record.backbone
    if backbone.towers:
        for tower, described in backbone.towers.items():
            if not described.hub_id and (described.checkpoint_path or looks_local(str(described.checkpoint))):
                raise HubError(
                    f"the {tower} tower of {run_dir} is the local folder '{described.checkpoint}', which has no "
                    f"Hub id, so the pushed model could not load it; set model.{tower}.hub_id and train again."
                )
        return None  # two base models: the card names both towers
    if backbone.hub_id:
        return backbone.hub_id.removeprefix("hf-hub:")
    checkpoint = str(backbone.checkpoint)
    if backbone.checkpoint_path or looks_local(checkpoint):
        raise HubError(
            f"the base model of {run_dir} is the local folder '{checkpoint}', which has no Hub id, so the pushed "
            "model could not name or load it; pass --base-model <hub id> (or set model.hub_id in the recipe)."
        )
    if checkpoint.startswith("hf-hub:"):
        return checkpoint.removeprefix("hf-hub:").split("@")[0]
    if backbone.library == "timm":
        return _timm_hub_id(checkpoint)
    return checkpoint


def check_push_ready(recipe) -> None:
    """Fail before training when `hub.push` could not succeed afterwards (no token, offline, unnamed base)."""
    from huggingface_hub import constants

    check_repo_id(recipe.hub.repo_id, "hub.repo_id")
    if constants.HF_HUB_OFFLINE:
        raise HubError(
            "hub.push is true but HF_HUB_OFFLINE is set; unset it, or set hub.push=false and push the run folder "
            "later with `hf-transfer push`."
        )
    require_token(None)
    model = recipe.model
    if not model.hub_id and looks_local(model.checkpoint):
        raise HubError(
            f"hub.push is true but model.checkpoint '{model.checkpoint}' is a local folder with no Hub id; set "
            "model.hub_id to the Hub id it came from, so the pushed model names its base and loads anywhere."
        )


# ---------------------------------------------------------------------------------------------------------------
# Push


def push_run(
    run_dir: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    dry_run: bool = False,
    token: str | None = None,
    *,
    base_model: str | None = None,
) -> PushResult:
    """Push a run folder to `repo_id` in one commit, creating the repo (public, or private) if it is missing.

    The token comes from `token`, else HF_TOKEN or the stored login; it is never logged or written. With `dry_run`
    nothing is sent and no token is needed (the files are scanned for one as for a push): the result lists the files
    and the card metadata. `base_model` names the
    base model's Hub id when the run trained from a local folder without `model.hub_id`.
    """
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    for name in (*REQUIRED_FILES, *record.weights):
        if not (run_dir / name).is_file():
            raise HubError(f"run folder '{run_dir}' has no {name}; it is incomplete, so train it again.")
    check_repo_id(repo_id)
    base = base_model_of(record, base_model, run_dir=f"'{run_dir}'")
    if base is None and not record.backbone.towers:  # (a multimodal card names both towers)
        logger.warning("the base model %s has no Hub id; the card names no base_model", record.backbone.checkpoint)
    if dry_run:
        # No token is needed to look, but the one a real push would use is scanned for all the same, so that a dry
        # run refuses exactly what the push would.
        from huggingface_hub import get_token

        token = token or get_token()
    else:
        token = require_token(token)
    recipe_dict = read_recipe_dict(run_dir)
    revision = revision or None
    with tempfile.TemporaryDirectory(prefix="hf_transfer-push-") as tmp:
        staging = Path(tmp) / "repo"
        card_revision = revision if revision != "main" else None
        skipped, card_metadata = stage_run(run_dir, staging, repo_id, base, card_revision)
        check_nothing_private(staging, token, local_roots(run_dir, record, recipe_dict))
        files = {
            p.relative_to(staging).as_posix(): p.stat().st_size for p in sorted(staging.rglob("*")) if p.is_file()
        }
        result = PushResult(
            repo_id=repo_id,
            revision=revision,
            private=private,
            dry_run=dry_run,
            files=files,
            skipped=skipped,
            card_metadata=card_metadata,
            base_model=base,
        )
        if skipped:
            logger.info("not pushed (not part of a shared model): %s", ", ".join(skipped))
        if dry_run:
            return result
        message = commit_message or f"Upload {record.strategy} run '{run_dir.name}' with hf-transfer"
        _send(staging, result, message, token, run_dir)
    return result


def _send(staging: Path, result: PushResult, message: str, token: str, run_dir: Path) -> None:
    from huggingface_hub import HfApi

    from hf_transfer.core.version import __version__

    repo_id, revision = result.repo_id, result.revision
    retry_hint = (
        f"The run folder '{run_dir}' is unchanged; check your connection (or https://status.huggingface.co), then "
        f"run `hf-transfer push {run_dir} --repo-id {repo_id}` again."
    )
    api = HfApi(token=token, library_name="hf-transfer", library_version=__version__)
    action = f"creating the repo {repo_id}"
    try:
        url = retrying(lambda: api.create_repo(repo_id, private=result.private, exist_ok=True), action)
        if result.private:
            action = f"checking the visibility of {repo_id}"
            if not retrying(lambda: api.repo_info(repo_id), action).private:
                raise HubError(
                    f"{repo_id} already exists and is public, so --private would publish this run; make the repo "
                    "private in its settings first, or push without --private."
                )
        if revision and revision != "main":
            action = f"creating the branch {revision} of {repo_id}"
            retrying(lambda: api.create_branch(repo_id, branch=revision, exist_ok=True), action)
        action = f"uploading the commit to {repo_id}"
        logger.info(
            "pushing %d files to %s%s in one commit", len(result.files), repo_id, f"@{revision}" if revision else ""
        )
        info = retrying(
            lambda: api.upload_folder(
                repo_id=repo_id,
                folder_path=staging,
                commit_message=message,
                revision=revision,
                delete_patterns=STALE_PATTERNS,
            ),
            action,
        )
    except HfTransferError:
        raise
    except Exception as err:
        if not is_remote_failure(err):
            raise
        raise hub_error(err, action, repo_id, token, retry_hint) from None
    result.url = str(getattr(info, "repo_url", None) or url)
    result.commit_url = getattr(info, "commit_url", None)
    result.commit_oid = getattr(info, "oid", None)
    logger.info("pushed %s (%s)", repo_id, result.commit_url)


__all__ = ["PushResult", "base_model_of", "check_push_ready", "push_run"]
