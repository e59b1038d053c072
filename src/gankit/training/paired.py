"""Paired training for task: restore. Each step degrades a batch of clean images with a fresh
per-image draw (gankit.degradations.DegradationSampler), the U-Net restores them, the PatchGAN D
judges (degraded, clean) against (degraded, restored) pairs, and G minimizes
adv_weight * adversarial + l1_weight * L1 + l2_weight * L2 (pix2pix's objective).

Everything else (optimizers, precision, EMA, checkpoints, resume, log windows, callbacks) is the
Trainer's: D's step is the GAN's D step on pairs, and G's loss enters through its hook. The
degradations draw from the trainer's checkpointed generator, so a resumed run sees the same pairs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gankit.config import Config
from gankit.data import Dataset, to_model_range
from gankit.degradations import DegradationSampler, psnr
from gankit.models.sampling import eval_mode
from gankit.models.unet import build_restorer, paste_known, restorer_inputs
from gankit.training.distributed import SINGLE, World
from gankit.training.precision import autocast
from gankit.training.trainer import STAT_NAMES, Trainer


class PairedTrainer(Trainer):
    """A Trainer whose G restores degraded images instead of drawing from noise."""

    stat_names = STAT_NAMES + ("l1", "psnr")  # g_loss is G's whole objective; l1 and psnr (dB) of the restored batch

    def __init__(self, config: Config, dataset: Dataset, device: torch.device, world: World = SINGLE):
        self.degrade = DegradationSampler(config.restore.degradations)
        super().__init__(config, dataset, device, world)

    @staticmethod
    def build_networks(config: Config, sample_shape: tuple[int, ...], num_classes: int | None) -> tuple[nn.Module, nn.Module]:
        return build_restorer(config.model, config.stabilizers, sample_shape, num_classes)

    def train_step(self) -> None:
        if self.config.optim.lr_decay != "none":
            self._decay_learning_rates()
        truth, _ = self._real_batch(self.step)
        inputs, exact = self._degraded(truth, self.perturb)
        with autocast(self.precision, self.device):
            restored = paste_known(self.update_g(inputs), inputs, exact)
        fake = torch.cat([inputs, restored], 1)
        d_loss, d_real, d_fake = self._d_step(torch.cat([inputs, truth], 1), fake.detach(), None, self.step)
        self._truth = truth  # what _generator_objective compares against, inside the G step
        g_loss = self._g_step(fake, None)
        self._end_step([d_loss, g_loss, d_real, d_fake, *self._errors], self.config.train.batch_size)

    def _generator_objective(self, adversarial: Tensor, fake: Tensor) -> Tensor:
        weights = self.config.restore
        restored = fake[:, self.G.condition_channels :].float()
        error = restored - self._truth
        l1, l2 = error.abs().mean(), error.pow(2).mean()
        self._errors = (l1.detach(), psnr(restored.detach(), self._truth).mean())
        return weights.adv_weight * adversarial + weights.l1_weight * l1 + weights.l2_weight * l2

    def _degraded(self, truth: Tensor, rng: torch.Generator) -> tuple[Tensor, Tensor]:
        """G's inputs for clean images under a fresh degradation draw, and (N,) bool: known pixels are exact (may be pasted)."""
        draw = self.degrade(len(truth), truth.shape[-2], truth.shape[-1], rng)
        exact = draw.exact & self.config.restore.paste_known
        return restorer_inputs(draw.corrupt(truth, rng), draw.keep), exact

    def _fixed_inputs(self) -> tuple[Tensor, None]:
        """The first 3k^2 images of the data, degraded once from the seed (k as large as train.sample_grid allows):
        with a column each for degraded, restored and clean, the square sample grid then keeps every triple on one row."""
        side = max(1, math.isqrt(self.config.train.sample_grid // 3))
        first, _ = self.data.batch(torch.arange(3 * side * side, device=self.data.samples.device), self.device)
        self.fixed_truth = to_model_range(first)
        inputs, self.fixed_exact = self._degraded(self.fixed_truth, torch.Generator(self.device).manual_seed(self.config.train.seed + 2))
        return inputs, None

    @torch.no_grad()
    def fixed_samples(self) -> Tensor:
        """Rows of (degraded, restored, clean) triples for the sample grids."""
        self.update_g.sync_master_buffers()
        with eval_mode(self.sampler) as restorer:
            restored = paste_known(restorer(self.fixed_z), self.fixed_z, self.fixed_exact)
        return torch.stack([self.fixed_z[:, :-1], restored, self.fixed_truth], 1).flatten(0, 1)
