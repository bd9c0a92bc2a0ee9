"""Whether a name is spelled like a Hub repo id, and whether a recipe's `model.checkpoint` names a local folder
that is missing (checked before any data loads).

A leaf (no torch, no model libraries), so `hf-transfer validate` can run it without loading the stack.
"""

from __future__ import annotations

from pathlib import Path

from hf_transfer.core.errors import ModelError


def is_repo_id(text: str | None, namespaced: bool = False) -> bool:
    """Whether `text` is spelled like a Hub repo id (`name`, or `namespace/name` when `namespaced`); a path that
    starts with . / or ~ is not, even where huggingface_hub's own check would let it pass."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(text, str) or text.startswith((".", "/", "~")) or (namespaced and "/" not in text):
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def _reads_as_path(text: str) -> bool:
    """Whether a checkpoint name can only be a path: no Hub id starts with . / ~, holds a backslash or two slashes."""
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        return True
    return "/" in text and not is_repo_id(text)


def check_local_checkpoint(checkpoint: str) -> None:
    """Fail, naming the path, when `model.checkpoint` can only mean a local folder and there is none (rather than
    letting the Hub client reject it as a malformed repo id, after the data has loaded)."""
    if checkpoint.startswith("hf-hub:"):
        return
    text = checkpoint.removeprefix("local-dir:")
    path = Path(text).expanduser()
    if path.exists():
        return  # a file where a folder belongs is the backbone's to explain
    if checkpoint.startswith("local-dir:") or _reads_as_path(text):
        raise ModelError(
            f"model.checkpoint '{checkpoint}' is not a folder: '{path.absolute()}' does not exist; give the path of "
            "a checkpoint folder, or a Hub id (namespace/name)."
        )


def absolute_checkpoint(checkpoint: str) -> str | None:
    """The absolute path of a local checkpoint folder (so the run loads from anywhere), else None."""
    path = Path(checkpoint.removeprefix("local-dir:"))
    if path.exists():
        prefix = "local-dir:" if checkpoint.startswith("local-dir:") else ""
        return prefix + str(path.resolve())
    return None
