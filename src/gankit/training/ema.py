"""Exponential moving average of G's weights: smoother samples than the last iterate."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Holds `shadow`, a frozen copy of the model whose parameters trail it by `decay` per update."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay for update number `step` (0-based), ramped up as (1 + step) / (10 + step):
        with a fixed 0.999 the average would still be 74% initial weights after 300 steps."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        weight = 1.0 - self.decay_at(step)
        for shadow_param, param in zip(self.shadow.parameters(), model.parameters()):
            shadow_param.lerp_(param, weight)
        for shadow_buffer, buffer in zip(self.shadow.buffers(), model.buffers()):
            shadow_buffer.copy_(buffer)
