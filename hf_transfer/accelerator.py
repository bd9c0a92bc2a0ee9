"""The one place that builds an Accelerator afresh, for runs, cross-validation folds, baselines and `rank` alike."""

from __future__ import annotations

from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState


def fresh_accelerator(**kwargs) -> Accelerator:
    """An Accelerator with `kwargs` alone deciding precision and accumulation.

    Accelerate keeps one global state per process; several runs in one process (the Python API, cv, baselines,
    rank) each bring their own, so this clears what the last one set. The distributed part (PartialState) stays:
    `accelerate launch` set it up for this process.
    """
    AcceleratorState._reset_state()
    GradientState._reset_state()
    return Accelerator(**kwargs)
