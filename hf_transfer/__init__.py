"""hf-transfer: transfer learning on the Hugging Face stack, from a recipe to a shared model."""

from __future__ import annotations

from hf_transfer.core.errors import HfTransferError
from hf_transfer.core.version import __version__


def run(recipe, overrides=(), resume: bool = False, callbacks=None):
    """Run a recipe (a Recipe, a shipped name or a YAML path, with `section.key=value` overrides); returns the
    run folder."""
    from hf_transfer.config.loading import load_recipe
    from hf_transfer.config.recipe import Recipe
    from hf_transfer.hub.publish import HubPublisher
    from hf_transfer.runs.runner import run_recipe

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(str(recipe), list(overrides))
    return run_recipe(recipe, resume=resume, callbacks=callbacks, publisher=HubPublisher())


def load(path, device: str | None = None, revision: str | None = None):
    """A trained run (a folder, or a Hub repo id pushed with `hf-transfer push`) ready to `.predict(inputs)`."""
    from hf_transfer.apps.predict import load as _load

    return _load(path, device=device, revision=revision)


def push(run_dir, repo_id: str, private: bool = False, **kwargs):
    """Push a run folder to the Hub in one commit (see `hf_transfer.hub.push.push_run`)."""
    from hf_transfer.hub.push import push_run

    return push_run(run_dir, repo_id, private=private, **kwargs)


__all__ = ["HfTransferError", "__version__", "load", "push", "run"]
