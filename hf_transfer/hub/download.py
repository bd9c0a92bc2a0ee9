"""Read a pushed run back: a Hub repo id becomes a run folder in the local Hub cache, which loads like any other."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from hf_transfer.core.errors import HubError, ModelError
from hf_transfer.hub.access import HF_DOWNLOAD, HF_LOGIN, check_repo_id, is_hub_repo_id
from hf_transfer.hub.retry import GaveUp, hub_error, retrying
from hf_transfer.runs.folder import METADATA_FILE, RECIPE_FILE


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

    check_repo_id(repo_id, "the repo id")
    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        folder = retrying(
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
    except (GaveUp, HfHubHTTPError) as err:
        raise hub_error(err, f"downloading {where}", repo_id, token, "Try again later.") from None
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
