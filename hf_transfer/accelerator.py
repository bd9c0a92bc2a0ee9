"""Devices and Accelerate: the one place that builds an Accelerator afresh (runs, cross-validation folds, baselines
and `rank` alike), and which memory layout a model runs fastest in on a device."""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from torch import nn


def fresh_accelerator(**kwargs) -> Accelerator:
    """An Accelerator with `kwargs` alone deciding precision and accumulation.

    Accelerate keeps one global state per process; several runs in one process (the Python API, cv, baselines,
    rank) each bring their own, so this clears what the last one set. The distributed part (PartialState) stays:
    `accelerate launch` set it up for this process.
    """
    AcceleratorState._reset_state()
    GradientState._reset_state()
    return Accelerator(**kwargs)


def wants_channels_last(model: nn.Module, device: torch.device | str) -> bool:
    """Whether `model` runs faster in channels-last (NHWC) memory on `device`: a convolutional network on CUDA, where
    cuDNN's tensor-core convolutions take NHWC without transposing around every layer (on CPUs the gain depends on
    the kernels, and depthwise convolutions can lose)."""
    return torch.device(device).type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules())
