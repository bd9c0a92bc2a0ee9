"""The optimizer the loop builds: AdamW, fused where the device has the kernel, stepping like the loop over tensors."""

from __future__ import annotations

import torch

from hf_transfer.config.sections import TrainConfig
from hf_transfer.train.optim import build_adamw


def test_adamw_is_fused_on_cuda_and_cpu_and_steps_like_the_loop_over_tensors():
    params = [{"params": [torch.nn.Parameter(torch.zeros(2))]}]
    assert build_adamw(params, TrainConfig(), torch.device("cuda")).defaults["fused"] is True
    assert build_adamw(params, TrainConfig(), torch.device("cpu")).defaults["fused"] is True
    assert not build_adamw(params, TrainConfig(), torch.device("mps")).defaults["fused"]
    torch.manual_seed(0)
    weights = [torch.randn(5, 3), torch.randn(3)]
    grads = [[torch.randn_like(w) for w in weights] for _ in range(4)]
    finals = []
    for fused in (True, False):
        trained = [torch.nn.Parameter(w.clone()) for w in weights]
        groups = [{"params": trained[:1], "weight_decay": 0.01}, {"params": trained[1:], "weight_decay": 0.0}]
        # "meta" stands for any device the fused kernel does not serve: the loop over tensors
        optimizer = build_adamw(groups, TrainConfig(), torch.device("cpu" if fused else "meta"))
        for step in grads:
            for p, g in zip(trained, step, strict=True):
                p.grad = g.clone()
            optimizer.step()
        finals.append(trained)
    for a, b in zip(*finals, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
