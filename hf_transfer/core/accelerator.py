"""Devices and Accelerate: the one place that builds an Accelerator afresh (runs, cross-validation folds, baselines
and `rank` alike), and which memory layout a model runs fastest in on a device."""

from __future__ import annotations

import torch
from accelerate import Accelerator, PartialState
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


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` multiplies bf16 in hardware: a CUDA GPU that supports it (tensor cores), or a CPU with
    AVX512-BF16 or AMX, where oneDNN's bf16 matmuls beat fp32 (1.4x for a MiniLM training step on a 2-core EPYC,
    benchmarks/RESULTS.md). Elsewhere bf16 is emulated, and slower than fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def resolve_mixed_precision(setting: str, device: torch.device | str | None = None) -> str:
    """`train.mixed_precision` as Accelerate takes it: `auto` becomes bf16 where this process's device computes bf16
    natively and no otherwise; the other settings pass through."""
    if setting != "auto":
        return setting
    return "bf16" if native_bf16(device if device is not None else PartialState().device) else "no"


def wants_channels_last(model: nn.Module, device: torch.device | str) -> bool:
    """Whether `model` runs faster in channels-last (NHWC) memory on `device`: a convolutional network on CUDA, where
    cuDNN's tensor-core convolutions take NHWC without transposing around every layer (on CPUs the gain depends on
    the kernels, and depthwise convolutions can lose)."""
    return torch.device(device).type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules())
