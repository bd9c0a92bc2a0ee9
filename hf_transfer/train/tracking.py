"""Experiment trackers (`train.report_to`, through accelerate): checked before any work, handed the recipe in a
shape they take, and sent the loop's numbers under a stage's prefix."""

from __future__ import annotations

import json

from accelerate import Accelerator

from hf_transfer.core.errors import RecipeError

# pip names where they differ from accelerate's tracker names
TRACKER_PACKAGES = {"comet_ml": "comet-ml"}


def check_trackers_installed(names: list[str]) -> None:
    """Fail before any work when a tracker of `train.report_to` cannot run: accelerate would drop it silently."""
    from accelerate.tracking import get_available_trackers

    available = {str(tracker) for tracker in get_available_trackers()}
    for name in names:
        if name not in available:
            package = TRACKER_PACKAGES.get(name, name)
            raise RecipeError(
                f"train.report_to: {name} needs the {package} package; run `pip install {package}`, "
                f"or remove {name} from train.report_to."
            )


def tracker_config(data: dict, prefix: str = "") -> dict[str, str | int | float | bool | None]:
    """A recipe dict as one level of dotted keys holding single values: TensorBoard's hparams take nothing else."""
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= tracker_config(value, f"{name}.")
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


class TrackerLog:
    """Sends numbers to the run's trackers under `prefix`, at steps counted on from `first_step` (a later stage of
    a run carries on the earlier one's curve). A no-op unless train.report_to names some; accelerate logs on the
    main process only."""

    def __init__(self, accelerator: Accelerator, prefix: str = "", first_step: int = 0):
        self.accelerator, self.prefix, self.first_step = accelerator, prefix, first_step

    def __call__(self, values: dict, step: int) -> None:
        self.accelerator.log({self.prefix + k: v for k, v in values.items()}, step=self.first_step + step)
