"""The package's version, and the versions of the libraries a run records next to its results."""

from __future__ import annotations

import platform

__version__ = "0.1.0"


def library_versions() -> dict[str, str]:
    import accelerate
    import datasets
    import huggingface_hub
    import peft
    import torch
    import transformers

    versions = {
        "hf_transfer": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
        "peft": peft.__version__,
        "huggingface_hub": huggingface_hub.__version__,
        "python": platform.python_version(),
    }
    try:
        import timm

        versions["timm"] = timm.__version__
    except ImportError:  # pragma: no cover
        pass
    return versions
