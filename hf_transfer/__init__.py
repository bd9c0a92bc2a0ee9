"""hf-transfer: transfer learning on the Hugging Face stack, from a recipe to a shared model."""

from __future__ import annotations

__version__ = "0.1.0"

from hf_transfer.errors import HfTransferError


def run(recipe, overrides=(), resume: bool = False, callbacks=None):
    """Run a recipe (a Recipe, a shipped name or a YAML path, with `section.key=value` overrides); returns the
    run folder."""
    from hf_transfer.recipe import Recipe, load_recipe
    from hf_transfer.runner import run_recipe

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(str(recipe), list(overrides))
    return run_recipe(recipe, resume=resume, callbacks=callbacks)


def load(path, device: str | None = None, revision: str | None = None):
    """A trained run (a folder, or a Hub repo id pushed with `hf-transfer push`) ready to `.predict(inputs)`."""
    from hf_transfer.predict import load as _load

    return _load(path, device=device, revision=revision)


def push(run_dir, repo_id: str, private: bool = False, **kwargs):
    """Push a run folder to the Hub in one commit (see `hf_transfer.hub.push_run`)."""
    from hf_transfer.hub import push_run

    return push_run(run_dir, repo_id, private=private, **kwargs)


__all__ = ["HfTransferError", "__version__", "load", "push", "run"]
