"""The networks of a semi-supervised GAN classifier (Salimans et al. 2016, "Improved techniques for training
GANs", their MNIST pair, for any image shape).

D is a K-way classifier whose logits l also judge real against fake: with a (K+1)-th "fake" logit fixed
at 0, P(real | x) = Z / (Z + 1) for Z = sum(exp(l)), so no extra output is needed. Gaussian noise on its
inputs and after every hidden layer (while training) and weight normalization keep it from fitting the
few labels (hidden layers: unit-length weight rows; the head: a learned scale). G is trained by feature matching: its batches must match the mean of D's last hidden layer
on real data, which is why D exposes `features_and_logits`.

G(z (N, z_dim)) -> (N, C, H, W) in [-1, 1]; D(x (N, C, H, W)) -> (N, K) class logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from gankit.errors import ConfigError
from gankit.models.common import Generator

D_HIDDEN = (1000, 500, 250, 250, 250)
G_HIDDEN = (500, 500)


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise while training; the identity in eval mode."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = std

    def forward(self, x: Tensor) -> Tensor:
        return x + self.std * torch.randn_like(x) if self.training and self.std else x


class UnitRowLinear(nn.Linear):
    """A linear layer whose weight rows are rescaled to unit length in every pass: weight normalization with the
    scale held at 1, so no hidden unit of D can sharpen itself by growing its weights."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, F.normalize(self.weight, dim=1), self.bias)


class SemiSupervisedDiscriminator(nn.Module):
    """MLP on [0, 1] pixels: noise before every layer, unit-row hidden layers with ReLU, a weight-normalized head of K logits."""

    score_space = "logits"
    pack = 1

    def __init__(self, sample_shape: tuple[int, ...], num_classes: int, input_noise: float, hidden_noise: float) -> None:
        super().__init__()
        self.sample_shape = tuple(sample_shape)
        self.num_classes = num_classes
        widths = (math.prod(sample_shape), *D_HIDDEN)
        self.hidden = nn.ModuleList(UnitRowLinear(width_in, width_out) for width_in, width_out in zip(widths, widths[1:]))
        self.noise = nn.ModuleList(GaussianNoise(input_noise if index == 0 else hidden_noise) for index in range(len(D_HIDDEN)))
        self.head = weight_norm(nn.Linear(D_HIDDEN[-1], num_classes))

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 250) last hidden activations (what feature matching compares) and (N, K) logits."""
        h = (x.flatten(1) + 1) / 2
        for noise, layer in zip(self.noise, self.hidden):
            h = torch.relu(layer(noise(h)))
        return h, self.head(h)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.features_and_logits(x)[1]


def build_semi_supervised(
    z_dim: int, sample_shape: tuple[int, ...], num_classes: int | None, input_noise: float, hidden_noise: float
) -> tuple[Generator, SemiSupervisedDiscriminator]:
    """G: z -> 500 -> 500 -> C*H*W (BatchNorm, Softplus; Tanh out). D: C*H*W -> 1000 -> 500 -> 250 -> 250 -> 250 -> K."""
    if len(sample_shape) != 3:
        raise ConfigError(f"task=classify classifies images (samples of shape (C, H, W)), but the data's samples have shape {sample_shape}; use image data")
    if not num_classes or num_classes < 2:
        raise ConfigError("task=classify needs a labelled dataset with at least 2 classes (folder: one subfolder per class; npz: a labels array)")
    layers: list[nn.Module] = []
    for width_in, width_out in zip((z_dim, *G_HIDDEN), G_HIDDEN):
        layers += [nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out), nn.Softplus()]
    body = nn.Sequential(*layers, nn.Linear(G_HIDDEN[-1], math.prod(sample_shape)), nn.Tanh())
    return Generator(body, z_dim, sample_shape), SemiSupervisedDiscriminator(sample_shape, num_classes, input_noise, hidden_noise)
