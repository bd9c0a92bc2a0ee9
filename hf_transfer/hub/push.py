"""Share a run folder on the Hub and fetch one back: `hf-transfer push`, `hub.push` in recipes, `load("me/model")`.

The run folder is the unit. A push copies what may be shared into a temporary staging folder (the run folder itself
is never touched), rewrites what only made sense on this machine (absolute paths, a base model loaded from a local
folder) so that the repo names its base model by Hub id, renders the card for the repo, and sends everything in one
commit. A repo pushed this way loads back with nothing but its id: `download_run` fetches it and `hf_transfer.load`
rebuilds the base model from the recorded id, then applies the adapter or head and restores the labels.

What a repo holds: the weights (safetensors), adapter_config.json / config.json, labels.json (id2label, label2id),
the tokenizer or image preprocessing config, hf_transfer.json (how to load it), recipe.yaml, metrics.json, the two
plots and README.md. Never: checkpoints, optimizer states, caches, pickles, tokens or absolute local paths.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, TypeVar

import yaml

from hf_transfer.core.errors import HfTransferError, HubError, ModelError
from hf_transfer.core.paths import is_repo_id
from hf_transfer.runs.folder import (
    LABELS_FILE,
    METADATA_FILE,
    METRICS_FILE,
    RECIPE_FILE,
    read_recipe_dict,
    write_json,
    write_yaml,
)
from hf_transfer.runs.record import RunRecord, read_record, record_from_json, write_record

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
ADAPTER_CONFIG_FILE = "adapter_config.json"
REQUIRED_FILES = (METADATA_FILE, LABELS_FILE, RECIPE_FILE, METRICS_FILE)

# Only top-level files of these kinds leave the machine; sub-folders (checkpoints, caches) never do.
PUSHED_SUFFIXES = frozenset(
    {".safetensors", ".json", ".yaml", ".yml", ".txt", ".model", ".png", ".jpg", ".md", ".jinja", ".tiktoken"}
)
# Training state that may sit beside the weights under a pushable suffix.
NEVER_PUSHED = (
    "optimizer*",
    "scheduler*",
    "rng_state*",
    "random_states*",
    "trainer_state*",
    "training_args*",
    "*.tmp",
)
# Files a hf-transfer push owns in a repo: the ones this run does not have are deleted in the same commit, so that
# pushing a fine-tuned run where a LoRA run was leaves no stale adapter_config.json behind. Other files stay.
STALE_PATTERNS = ["*.safetensors", "*.json", "*.yaml", "*.yml", "*.png", "*.bin", "*.model", "vocab.txt", "merges.txt"]
# Copied as links: large and never rewritten.
LINKED_SUFFIXES = (".safetensors", ".png", ".jpg", ".model")

# Transient failures: retried with exponential backoff. huggingface_hub retries some calls itself (preupload,
# downloads) but not the commit POST when Xet is disabled, so every remote call goes through `_retrying`.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_ATTEMPTS = 4
BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 30.0

# The shell commands that messages name: the `hf` CLI, which every huggingface_hub this package accepts has (it
# arrived in 0.34; the declared floor is newer, and a test keeps it so).
HF_CLI_SINCE = "0.34"
HF_LOGIN = "hf auth login"
HF_DOWNLOAD = "hf download"
# What a Hugging Face access token looks like (hf_ and 34 letters), whoever's it is.
HF_TOKEN_PATTERN = re.compile(rb"\bhf_[A-Za-z]{34}\b")


def no_token_message() -> str:
    return f"no Hugging Face token: run `{HF_LOGIN}` or set HF_TOKEN"


NO_TOKEN = no_token_message()


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
# Ids, tokens and errors


def is_hub_repo_id(text: str) -> bool:
    """Whether `text` reads as a `namespace/name` Hub repo id rather than a path on disk."""
    return is_repo_id(text, namespaced=True) and not Path(text).exists()


def _check_repo_id(repo_id: str | None, field_name: str = "--repo-id") -> str:
    if not is_repo_id(repo_id, namespaced=True):
        raise HubError(
            f"{field_name} '{repo_id}' is not a Hub repo id; give it as namespace/name, e.g. me/minilm-rt-lora."
        )
    return repo_id


def _require_token(token: str | None) -> str:
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubError(no_token_message() + ".")
    return token


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection resets and timeouts of whichever HTTP client this huggingface_hub uses."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def is_transient(err: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return False
    if isinstance(err, HfHubHTTPError):
        return _status(err) in TRANSIENT_STATUS
    return isinstance(err, _transport_errors())


T = TypeVar("T")


class _GaveUp(Exception):
    """A transient failure that lasted through every attempt."""

    def __init__(self, action: str, attempts: int, last: BaseException):
        super().__init__(action)
        self.action, self.attempts, self.last = action, attempts, last


def _retrying(call: Callable[[], T], action: str) -> T:
    """`call()`, retried with exponential backoff on transient failures (5xx, 429, connection reset, timeout)."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return call()
        except Exception as err:
            if not is_transient(err):
                raise
            if attempt == MAX_ATTEMPTS:
                raise _GaveUp(action, attempt, err) from None
            delay = min(BACKOFF_SECONDS * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
            logger.warning(
                "%s failed (%s); retrying in %.1f s (attempt %d of %d)",
                action,
                _reason(err),
                delay,
                attempt + 1,
                MAX_ATTEMPTS,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _reason(err: BaseException) -> str:
    status = _status(err)
    if status is not None:
        return f"HTTP {status}"
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _server_says(err: BaseException) -> str:
    message = getattr(err, "server_message", None) or (str(err).strip().splitlines() or [""])[0]
    return message.strip().rstrip(".")


def _hub_error(err: BaseException, action: str, repo_id: str, token: str | None, retry_hint: str) -> HubError:
    """One sentence saying what failed and what to do, never holding the token."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RevisionNotFoundError

    if isinstance(err, _GaveUp):
        text = (
            f"{err.action} failed {err.attempts} times ({_reason(err.last)}): the Hub is unavailable or the network "
            f"is down. {retry_hint}"
        )
    elif isinstance(err, OfflineModeIsEnabled):
        text = f"HF_HUB_OFFLINE is set, so {action} cannot reach the Hub; unset it (HF_HUB_OFFLINE=0). {retry_hint}"
    elif isinstance(err, RevisionNotFoundError):
        text = f"{repo_id} has no revision by that name ({_server_says(err)}); check --revision."
    elif isinstance(err, HfHubHTTPError):
        status = _status(err)
        if status == 401:
            text = (
                f"the Hub did not accept your token while {action} (401 Unauthorized): run `{HF_LOGIN}` "
                "again or set HF_TOKEN to a valid token with write access."
            )
        elif status == 403:
            namespace = repo_id.split("/")[0]
            text = (
                f"your token may not write to {repo_id} (403 Forbidden): use a token with write access to "
                f"'{namespace}' (a write or fine-grained token), or push to a repo in your own namespace."
            )
        elif status == 404:
            text = (
                f"{repo_id} was not found while {action} (404): check the namespace and name, and that your token "
                "can see it."
            )
        elif status == 413:
            text = f"the Hub refused the upload to {repo_id} as too large (413); push fewer or smaller files."
        elif status is not None and status < 500:
            text = f"the Hub refused {action} ({status}: {_server_says(err)}); fix that and push again."
        else:
            text = f"{action} failed ({_reason(err)}). {retry_hint}"
    else:
        text = f"{action} failed ({_reason(err)}). {retry_hint}"
    return HubError(_scrub(text, token))


# ---------------------------------------------------------------------------------------------------------------
# The base model's Hub id


def _looks_local(checkpoint: str) -> bool:
    return checkpoint.startswith("local-dir:") or Path(checkpoint).exists()


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
        return _check_repo_id(override.removeprefix("hf-hub:"), "--base-model")
    backbone = record.backbone
    if backbone.towers:
        for tower, described in backbone.towers.items():
            if not described.hub_id and (described.checkpoint_path or _looks_local(str(described.checkpoint))):
                raise HubError(
                    f"the {tower} tower of {run_dir} is the local folder '{described.checkpoint}', which has no "
                    f"Hub id, so the pushed model could not load it; set model.{tower}.hub_id and train again."
                )
        return None  # two base models: the card names both towers
    if backbone.hub_id:
        return backbone.hub_id.removeprefix("hf-hub:")
    checkpoint = str(backbone.checkpoint)
    if backbone.checkpoint_path or _looks_local(checkpoint):
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

    _check_repo_id(recipe.hub.repo_id, "hub.repo_id")
    if constants.HF_HUB_OFFLINE:
        raise HubError(
            "hub.push is true but HF_HUB_OFFLINE is set; unset it, or set hub.push=false and push the run folder "
            "later with `hf-transfer push`."
        )
    _require_token(None)
    model = recipe.model
    if not model.hub_id and _looks_local(model.checkpoint):
        raise HubError(
            f"hub.push is true but model.checkpoint '{model.checkpoint}' is a local folder with no Hub id; set "
            "model.hub_id to the Hub id it came from, so the pushed model names its base and loads anywhere."
        )


# ---------------------------------------------------------------------------------------------------------------
# Staging: what the repo will hold


def _is_absolute_local_path(value: str) -> bool:
    text = value.removeprefix("local-dir:")
    if text.startswith("~"):
        return True
    for pure in (PurePosixPath(text), PureWindowsPath(text)):
        if pure.is_absolute() and len(pure.parts) >= 3:
            return True
    return bool(PureWindowsPath(text).drive) and len(PureWindowsPath(text).parts) >= 2


def _without_local_paths(value: Any) -> Any:
    """`value` with every absolute local path replaced by its file name (`/home/me/data/train.csv` -> `train.csv`)."""
    if isinstance(value, dict):
        return {k: _without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_local_paths(v) for v in value]
    if isinstance(value, str) and _is_absolute_local_path(value):
        text = value.removeprefix("local-dir:")
        return PureWindowsPath(text).name if "\\" in text else PurePosixPath(text).name
    return value


def _pushable(name: str) -> bool:
    return (
        not name.startswith(".")
        and Path(name).suffix.lower() in PUSHED_SUFFIXES
        and not any(fnmatch.fnmatch(name, pattern) for pattern in NEVER_PUSHED)
    )


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _load_form(library: str, hub_id: str) -> str:
    """How the backbone's library names a Hub checkpoint."""
    return f"hf-hub:{hub_id}" if library == "timm" else hub_id


def stage_run(
    run_dir: Path,
    staging: Path,
    repo_id: str,
    base_model: str | None,
    revision: str | None = None,
) -> tuple[list[str], dict]:
    """Fill `staging` with what the repo will hold; returns (skipped run-folder entries, card metadata)."""
    from hf_transfer.config.recipe import recipe_from_dict
    from hf_transfer.runs.card import build_model_card

    staging.mkdir(parents=True)
    skipped = []
    for entry in sorted(run_dir.iterdir()):
        if entry.name == CARD_FILE:
            continue  # rendered again below, for the repo
        if not entry.is_file() or not _pushable(entry.name):
            skipped.append(entry.name + ("/" if entry.is_dir() else ""))
            continue
        target = staging / entry.name
        if entry.suffix.lower() in LINKED_SUFFIXES:
            target.symlink_to(entry.resolve())
        else:
            shutil.copyfile(entry, target)

    record = read_record(staging)
    backbone = record.backbone
    bundled = backbone.bundled
    if bundled:  # a source stage's weights under the adapter or head: the repo needs them to load
        skipped.remove(bundled + "/")
        (staging / bundled).mkdir()
        for entry in sorted((run_dir / bundled).iterdir()):
            if entry.is_file() and _pushable(entry.name):
                shutil.copyfile(entry, staging / bundled / entry.name)
    towers = {}
    for tower, described in backbone.towers.items():
        # a multimodal run's per-tower preprocessing (image config, tokenizer) sits in a sub-folder each
        skipped.remove(tower + "/")
        (staging / tower).mkdir()
        for entry in sorted((run_dir / tower).iterdir()):
            if entry.is_file() and _pushable(entry.name):
                shutil.copyfile(entry, staging / tower / entry.name)
        if described.hub_id:
            described = replace(described, checkpoint=_load_form(described.library, described.hub_id))
        towers[tower] = replace(described, checkpoint_path=None)
    was_local = bool(backbone.checkpoint_path) or _looks_local(str(backbone.checkpoint))
    backbone = replace(backbone, checkpoint_path=None, towers=towers)
    if base_model:
        backbone = replace(backbone, hub_id=base_model)
        if was_local:
            backbone = replace(backbone, checkpoint=_load_form(backbone.library, base_model))
    where = f"{METADATA_FILE} of '{run_dir}'"
    record = record_from_json(_without_local_paths(replace(record, backbone=backbone).to_json()), where)
    write_record(staging, record)

    recipe_dict = read_recipe_dict(staging)
    if towers:
        for tower, described in towers.items():
            recipe_dict["model"][tower]["checkpoint"] = described.checkpoint
        if recipe_dict["model"].get("checkpoint"):  # one dual encoder (CLIP, SigLIP) is both towers
            recipe_dict["model"]["checkpoint"] = towers["image"].checkpoint
    else:
        recipe_dict["model"]["checkpoint"] = backbone.checkpoint
    if base_model:
        recipe_dict["model"]["hub_id"] = base_model
    recipe_dict.setdefault("output", {})["dir"] = None  # a folder on the trainer's machine
    recipe_dict = _without_local_paths(recipe_dict)
    write_yaml(staging / RECIPE_FILE, recipe_dict)

    for path in sorted(staging.glob("*.json")):
        if path.name == METADATA_FILE or path.is_symlink():
            continue
        data = _read_json(path)
        if path.name == ADAPTER_CONFIG_FILE and isinstance(data, dict):
            data["base_model_name_or_path"] = base_model or backbone.checkpoint
        cleaned = _without_local_paths(data)
        if cleaned != data or path.name == ADAPTER_CONFIG_FILE:
            write_json(path, cleaned)

    recipe = recipe_from_dict(recipe_dict, name=recipe_dict.get("name", run_dir.name))
    metrics = _read_json(staging / METRICS_FILE)
    card = build_model_card(
        recipe,
        record,
        metrics,
        location=repo_id,
        base_model=base_model,
        repo_id=repo_id,
        revision=revision,
        run_dir=staging,
    )
    card.save(str(staging / CARD_FILE))
    return skipped, card.data.to_dict()


def _local_roots(run_dir: Path, record: RunRecord, recipe_dict: dict) -> set[str]:
    """Absolute paths of this machine that must not appear in any pushed file."""
    roots = {str(run_dir.resolve())}
    checkpoint = record.backbone.checkpoint_path
    if checkpoint:
        roots.add(str(Path(checkpoint.removeprefix("local-dir:")).resolve()))
    data = recipe_dict.get("data") or {}
    for key in ("train_files", "validation_files", "test_files"):
        for name in data.get(key) or []:
            if _is_absolute_local_path(str(name)):
                roots.add(str(Path(str(name)).expanduser().parent))
    if data.get("data_dir") and _is_absolute_local_path(str(data["data_dir"])):
        roots.add(str(Path(str(data["data_dir"])).expanduser()))
    return {root for root in roots if len(PurePosixPath(root).parts) >= 3 or PureWindowsPath(root).drive}


def _scanned_bytes(path: Path) -> bytes:
    """A file's bytes as far as text could hide in them: a safetensors file's JSON header, any other file whole."""
    if path.suffix != ".safetensors":
        return path.read_bytes()
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        return f.read(min(size, 100 * 1024 * 1024))


def _check_nothing_private(staging: Path, token: str | None, roots: set[str]) -> None:
    """Refuse to push a file that still holds the token or a local path (a guard behind the rewrites above)."""
    needles = [(root.encode(), f"the local path '{root}'") for root in sorted(roots)]
    if token and len(token) >= 8:  # shorter strings are no real token, and would match anywhere
        needles.append((token.encode(), "your Hugging Face token"))
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        data = _scanned_bytes(path)
        found = next((what for needle, what in needles if needle in data), None)
        if found is None and HF_TOKEN_PATTERN.search(data):
            found = "a Hugging Face token"
        if found:
            raise HubError(
                f"refusing to push: {path.name} holds {found}; remove it from the run folder and push again."
            )


# ---------------------------------------------------------------------------------------------------------------
# Push and download


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
    _check_repo_id(repo_id)
    base = base_model_of(record, base_model, run_dir=f"'{run_dir}'")
    if base is None and not record.backbone.towers:  # (a multimodal card names both towers)
        logger.warning("the base model %s has no Hub id; the card names no base_model", record.backbone.checkpoint)
    if dry_run:
        # No token is needed to look, but the one a real push would use is scanned for all the same, so that a dry
        # run refuses exactly what the push would.
        from huggingface_hub import get_token

        token = token or get_token()
    else:
        token = _require_token(token)
    recipe_dict = read_recipe_dict(run_dir)
    revision = revision or None
    with tempfile.TemporaryDirectory(prefix="hf_transfer-push-") as tmp:
        staging = Path(tmp) / "repo"
        card_revision = revision if revision != "main" else None
        skipped, card_metadata = stage_run(run_dir, staging, repo_id, base, card_revision)
        _check_nothing_private(staging, token, _local_roots(run_dir, record, recipe_dict))
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
        url = _retrying(lambda: api.create_repo(repo_id, private=result.private, exist_ok=True), action)
        if result.private:
            action = f"checking the visibility of {repo_id}"
            if not _retrying(lambda: api.repo_info(repo_id), action).private:
                raise HubError(
                    f"{repo_id} already exists and is public, so --private would publish this run; make the repo "
                    "private in its settings first, or push without --private."
                )
        if revision and revision != "main":
            action = f"creating the branch {revision} of {repo_id}"
            _retrying(lambda: api.create_branch(repo_id, branch=revision, exist_ok=True), action)
        action = f"uploading the commit to {repo_id}"
        logger.info(
            "pushing %d files to %s%s in one commit", len(result.files), repo_id, f"@{revision}" if revision else ""
        )
        info = _retrying(
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
        if not (isinstance(err, _GaveUp) or _status(err) is not None or is_transient(err) or _is_hub_error(err)):
            raise
        raise _hub_error(err, action, repo_id, token, retry_hint) from None
    result.url = str(getattr(info, "repo_url", None) or url)
    result.commit_url = getattr(info, "commit_url", None)
    result.commit_oid = getattr(info, "oid", None)
    logger.info("pushed %s (%s)", repo_id, result.commit_url)


def _is_hub_error(err: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    return isinstance(err, (HfHubHTTPError, OfflineModeIsEnabled))


def download_run(repo_id: str, revision: str | None = None, token: str | None = None) -> Path:
    """The local snapshot of a pushed run (downloaded into the Hub cache, or found there when offline)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    _check_repo_id(repo_id, "the repo id")
    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        folder = _retrying(
            lambda: snapshot_download(repo_id, revision=revision, token=token, ignore_patterns=["*.png", "*.jpg"]),
            f"downloading {where}",
        )
    except RepositoryNotFoundError:
        raise HubError(
            f"'{repo_id}' is neither a run folder on disk nor a model repo on the Hub that you can read; check the "
            f"path or the repo id (for a private repo, run `{HF_LOGIN}` or set HF_TOKEN)."
        ) from None
    except RevisionNotFoundError:
        raise HubError(f"{repo_id} has no revision '{revision}'; check the branch, tag or commit.") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        if constants.HF_HUB_OFFLINE:
            raise HubError(
                f"'{repo_id}' is not a run folder on disk, and that Hub repo is not in the local cache while "
                "HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE to download it, or give a run folder."
            ) from None
        raise HubError(
            f"'{where}' could not be downloaded (the Hub cannot be reached) and is not in the local cache; check "
            "your connection and try again."
        ) from None
    except (_GaveUp, HfHubHTTPError) as err:
        raise _hub_error(err, f"downloading {where}", repo_id, token, "Try again later.") from None
    folder = Path(folder)
    if not (folder / METADATA_FILE).is_file():
        raise ModelError(
            f"the Hub repo '{repo_id}' is not an hf-transfer run ({METADATA_FILE} is missing); load it with the "
            "library it was made for."
        )
    recipe = (
        yaml.safe_load((folder / RECIPE_FILE).read_text(encoding="utf-8")) if (folder / RECIPE_FILE).is_file() else {}
    )
    if ((recipe or {}).get("model") or {}).get("trust_remote_code"):
        # A repo must not decide on its own to run code on this machine: that takes a folder the user chose.
        raise ModelError(
            f"the recipe of '{repo_id}' sets model.trust_remote_code, which would run code from the Hub here; review "
            f"the repo (`{HF_DOWNLOAD} {repo_id} --local-dir DIR`) and load that folder if you trust it."
        )
    return folder


def run_dir_for(path_or_repo_id: str | os.PathLike, revision: str | None = None) -> Path:
    """A run folder on disk as is, or a Hub repo id downloaded to the cache."""
    path = Path(path_or_repo_id)
    if path.exists() or not is_hub_repo_id(str(path_or_repo_id)):
        return path
    return download_run(str(path_or_repo_id), revision=revision)


__all__ = [
    "NO_TOKEN",
    "PushResult",
    "base_model_of",
    "check_push_ready",
    "download_run",
    "is_hub_repo_id",
    "push_run",
    "run_dir_for",
]
