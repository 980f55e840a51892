"""AdamW with decoupled weight decay on matrices only, and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay weight matrices; never norms, biases or other 1-D parameters (the usual LLM convention)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], eps: float, fused: bool
) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, fused=fused or None, foreach=None if fused else True
    )


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    return math.ceil(total_steps * warmup_ratio)


def lr_at(step: int, total_steps: int, lr: float, warmup_ratio: float, min_lr_ratio: float = 0.0) -> float:
    """Learning rate of optimiser step `step` (0-based).

    Linear warmup over ceil(warmup_ratio * total) steps reaching `lr` on its last step (the first update
    uses lr / warmup, not 0 as HF's scheduler does), then a half cosine from lr down to min_lr_ratio * lr at
    the last step.
    """
    warm = warmup_steps(total_steps, warmup_ratio)
    if step < warm:
        return lr * (step + 1) / warm
    decay_steps = total_steps - warm
    if decay_steps <= 1:
        return lr
    progress = (step - warm) / (decay_steps - 1)  # 0 at the first decay step, 1 at the last
    floor = lr * min_lr_ratio
    return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
