"""Exponential moving average of G's weights: smoother samples than the last iterate."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from gankit.models.sampling import device_of, recalibrate_batch_norm

CALIBRATION_SEED_OFFSET = 4  # z for the statistics: train.seed + 4, apart from the trainer's (+1, +2) and the watchdog's (+3)


def calibrate(generator: nn.Module, train_seed: int) -> None:
    """Re-estimate an averaged G's BatchNorm statistics from the z every read of this run uses."""
    recalibrate_batch_norm(generator, torch.Generator(device_of(generator)).manual_seed(train_seed + CALIBRATION_SEED_OFFSET))


class EMA:
    """Holds `shadow`, a frozen copy of the model whose parameters trail it by `decay` per update.

    Read it through `calibrated()`: a BatchNorm G's running statistics describe the live weights, not the
    average, so they are re-estimated for the shadow (from z seeded by the run's seed) whenever its
    weights have moved since the last read.
    """

    def __init__(self, model: nn.Module, decay: float, train_seed: int):
        self.decay = decay
        self.train_seed = train_seed
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)
        self._stale = True

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
        self._stale = True

    def calibrated(self) -> nn.Module:
        """The shadow, its BatchNorm statistics its own (the same z every time, so a resumed run reads the same)."""
        if self._stale:
            calibrate(self.shadow, self.train_seed)
            self._stale = False
        return self.shadow

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        self.shadow.load_state_dict(tensors)
        self._stale = True
