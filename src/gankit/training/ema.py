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

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for shadow_param, param in zip(self.shadow.parameters(), model.parameters()):
            shadow_param.lerp_(param, 1.0 - self.decay)
        for shadow_buffer, buffer in zip(self.shadow.buffers(), model.buffers()):
            shadow_buffer.copy_(buffer)
