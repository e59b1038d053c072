"""Semi-supervised training for task: classify (Salimans et al. 2016). Each step D learns from three batches
in one pass: labelled images (cross-entropy over the K classes), unlabelled ones (called real) and G's
fakes (called fake), where P(real | x) = Z / (Z + 1) with Z = sum(exp(logits)). G matches the mean of D's
last hidden layer on real data (feature matching), which makes its fakes useful to D rather than good
pictures: the classifier, not G, is the product.

Everything else (optimizers, precision, EMA, checkpoints, resume, log windows, callbacks) is the
Trainer's. The unlabelled batches are the Trainer's epochs over all images; the labelled batches cycle
through the labelled images in an order fixed by (seed, round), so a resumed run sees the same batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gankit.config import Config
from gankit.data import Dataset, to_model_range
from gankit.data.dataset import UNLABELLED
from gankit.errors import DataError
from gankit.models.semi import build_semi_supervised
from gankit.training.distributed import SINGLE, World
from gankit.training.precision import autocast
from gankit.training.trainer import STAT_NAMES, Trainer

LABELLED_STREAM = 500_009  # offsets the labelled order's seeds from the epoch orders'


def real_fake_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """D's unsupervised loss: -log P(real | x) on real data and -log P(fake | G(z)) on fakes, as the paper weighs them (each half)."""
    real_z, fake_z = real_logits.logsumexp(1), fake_logits.logsumexp(1)
    return 0.5 * (F.softplus(real_z) - real_z).mean() + 0.5 * F.softplus(fake_z).mean()


def feature_matching_loss(real_features: Tensor, fake_features: Tensor) -> Tensor:
    """Mean squared difference of the batch means of D's features on real and fake data."""
    return (real_features.mean(0) - fake_features.mean(0)).pow(2).mean()


class SemiSupervisedTrainer(Trainer):
    """A Trainer whose D is a K-way classifier trained on a few labels and all images, and whose G feeds it fakes."""

    stat_names = STAT_NAMES + ("labelled_loss", "labelled_accuracy")  # d_real/d_fake: mean P(real) of unlabelled and fake images

    def __init__(self, config: Config, dataset: Dataset, device: torch.device, world: World = SINGLE):
        super().__init__(config, dataset, device, world)
        known = torch.nonzero(self.data.labels.cpu() != UNLABELLED).flatten()
        if len(known) == 0:
            raise DataError(f"{dataset.name} has no labelled images; task=classify needs a few per class (data.labels_per_class)")
        self.labelled = known

    @staticmethod
    def build_networks(config: Config, sample_shape: tuple[int, ...], num_classes: int | None) -> tuple[nn.Module, nn.Module]:
        settings = config.classify
        return build_semi_supervised(config.model.z_dim, sample_shape, num_classes, settings.input_noise, settings.hidden_noise)

    def train_step(self) -> None:
        if self.config.optim.lr_decay != "none":
            self._decay_learning_rates()
        unlabelled, _ = self._real_batch(self.step)
        labelled, labels = self._labelled_batch(self.step)
        fake = self._generate(len(unlabelled), None)
        with autocast(self.precision, self.device):
            _, logits = self._features_and_logits(torch.cat([labelled, unlabelled, fake.detach()]))
        labelled_logits, real_logits, fake_logits = logits.float().split([len(labelled), len(unlabelled), len(fake)])
        supervised = F.cross_entropy(labelled_logits, labels)
        d_loss = supervised + self.config.classify.unlabelled_weight * real_fake_loss(real_logits, fake_logits)
        self.update_d.step(d_loss)
        g_loss = self._feature_matching_step(unlabelled, fake)
        accuracy = (labelled_logits.detach().argmax(1) == labels).float().mean()
        d_real, d_fake = (torch.sigmoid(scores.detach().logsumexp(1)).mean() for scores in (real_logits, fake_logits))
        self._end_step([d_loss.detach(), g_loss, d_real, d_fake, supervised.detach(), accuracy], self.config.train.batch_size)

    def _features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.update_d.compute.features_and_logits(images.to(self.update_d.input_dtype))

    def _feature_matching_step(self, real: Tensor, fake: Tensor) -> Tensor:
        """One G update toward D's mean features on the real batch (D frozen)."""
        self.update_d.compute.requires_grad_(False)
        with autocast(self.precision, self.device):
            with torch.no_grad():
                real_features, _ = self._features_and_logits(real)
            fake_features, _ = self._features_and_logits(fake)
        loss = feature_matching_loss(real_features.float(), fake_features.float())
        self._update_generator(loss)
        return loss.detach()

    def _labelled_batch(self, step: int) -> tuple[Tensor, Tensor]:
        """This rank's slice of labelled batch `step`: positions in an endless sequence of rounds, each round the
        labelled images in a fresh order seeded by (seed, round), so every labelled image is seen equally often."""
        count, size = len(self.labelled), self.local_batch
        start = (step * self.world.size + self.world.rank) * size
        positions = torch.arange(start, start + size)
        rounds = positions // count
        picked = torch.empty(size, dtype=torch.long)
        for round_index in rounds.unique().tolist():
            order = torch.randperm(count, generator=torch.Generator().manual_seed(self.config.train.seed * 1_000_003 + LABELLED_STREAM + round_index))
            chosen = rounds == round_index
            picked[chosen] = self.labelled[order[positions[chosen] % count]]
        samples, labels = self.data.batch(picked.to(self.data.samples.device), self.device)
        return to_model_range(samples), labels
