"""Residual G and D in the SNGAN / BigGAN shape (Miyato et al. 2018, Brock et al. 2019) for 32-256 px.

G: z -> Linear -> 4x4 map, then up-sampling residual blocks (BN-ReLU-up-conv3-BN-ReLU-conv3, with an
up-sampled 1x1 shortcut), then BN-ReLU-conv3-Tanh. A conditional G swaps every block's BatchNorm
for class-conditional BatchNorm (per-class gains and biases), the way SNGAN and BigGAN condition.
D: down-sampling residual blocks to 4x4 (the first "optimized": conv before ReLU, since ReLU of the
pixels would drop their negative half), one more block at 4x4, ReLU, global sum pooling; the
wrapper's linear head and projection (Miyato & Koyama 2018) score it. Spectral norm in D is
implied by the registry entry. Channel counts are `model.width` times the multipliers below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gankit.models.common import Discriminator, DSettings, Generator, ModelSettings, settings_discriminator

START_SIDE = 4
# image side -> channel multipliers of G's 4x4 map and of each up block's output (BigGAN's tables)
G_MULTIPLIERS = {32: (4, 4, 4, 4), 64: (16, 8, 4, 2, 1), 128: (16, 16, 8, 4, 2, 1), 256: (16, 16, 8, 8, 4, 2, 1)}
# image side -> channel multipliers of D's blocks; all halve the side but the last
D_MULTIPLIERS = {32: (2, 2, 2, 2), 64: (1, 2, 4, 8, 16), 128: (1, 2, 4, 8, 16, 16), 256: (1, 2, 4, 8, 8, 16, 16)}
SIZES = tuple(G_MULTIPLIERS)


def build_resnet(
    model: ModelSettings, stabilizers: DSettings, sample_shape: tuple[int, ...], num_classes: int | None
) -> tuple[Generator, Discriminator]:
    channels, side, _ = sample_shape
    d_widths = [model.width * m for m in D_MULTIPLIERS[side]]
    generator = Generator(
        ResNetGeneratorBody(model.z_dim, [model.width * m for m in G_MULTIPLIERS[side]], channels, num_classes),
        model.z_dim,
        sample_shape,
        num_classes,
        labels_to_body=True,
    )
    features = ResNetDiscriminatorFeatures(channels * stabilizers.pack, d_widths)
    discriminator = settings_discriminator(features, d_widths[-1], sample_shape, model, stabilizers, num_classes)
    generator.apply(resnet_init)
    discriminator.apply(resnet_init)
    return generator, discriminator


class ClassBatchNorm2d(nn.Module):
    """BatchNorm2d whose scale and shift are looked up by class when `num_classes` is given
    (class-conditional BatchNorm, gains starting at 1 and biases at 0), else learned once."""

    def __init__(self, channels: int, num_classes: int | None) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=num_classes is None)
        self.gain = nn.Embedding(num_classes, channels) if num_classes else None
        self.bias = nn.Embedding(num_classes, channels) if num_classes else None
        if num_classes:
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        x = self.norm(x)
        if self.gain is None:
            return x
        return x * self.gain(labels)[:, :, None, None] + self.bias(labels)[:, :, None, None]


class UpBlock(nn.Module):
    """(N, in, s, s) -> (N, out, 2s, 2s): BN-ReLU-up-conv3-BN-ReLU-conv3 plus up(x) through a 1x1 conv."""

    def __init__(self, width_in: int, width_out: int, num_classes: int | None) -> None:
        super().__init__()
        self.norm1 = ClassBatchNorm2d(width_in, num_classes)
        self.conv1 = nn.Conv2d(width_in, width_out, 3, padding=1)
        self.norm2 = ClassBatchNorm2d(width_out, num_classes)
        self.conv2 = nn.Conv2d(width_out, width_out, 3, padding=1)
        self.shortcut = nn.Conv2d(width_in, width_out, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(_upsample(F.relu(self.norm1(x, labels))))
        h = self.conv2(F.relu(self.norm2(h, labels)))
        return h + self.shortcut(_upsample(x))


class ResNetGeneratorBody(nn.Module):
    """(N, z_dim) z and (N,) labels (None when unconditional) -> (N, channels, side, side) in [-1, 1],
    side = 4 * 2**(len(widths) - 1)."""

    def __init__(self, z_dim: int, widths: list[int], channels: int, num_classes: int | None) -> None:
        super().__init__()
        self.start_width = widths[0]
        self.project = nn.Linear(z_dim, widths[0] * START_SIDE * START_SIDE)
        self.blocks = nn.ModuleList(UpBlock(width_in, width_out, num_classes) for width_in, width_out in zip(widths, widths[1:]))
        self.to_image = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(), nn.Conv2d(widths[-1], channels, 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], self.start_width, START_SIDE, START_SIDE)
        for block in self.blocks:
            h = block(h, labels)
        return self.to_image(h)


class DownBlock(nn.Module):
    """(N, in, s, s) -> (N, out, s/2, s/2) (or s when not `down`): [ReLU]-conv3-ReLU-conv3[-avgpool] plus a
    shortcut (1x1 conv where the width or the side changes). `first` is SNGAN's optimized first block:
    no ReLU on the input pixels, and the shortcut pools before its 1x1 conv."""

    def __init__(self, width_in: int, width_out: int, down: bool, first: bool = False) -> None:
        super().__init__()
        self.down = down
        self.first = first
        self.conv1 = nn.Conv2d(width_in, width_out, 3, padding=1)
        self.conv2 = nn.Conv2d(width_out, width_out, 3, padding=1)
        self.shortcut = nn.Conv2d(width_in, width_out, 1) if down or width_in != width_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        return self._pool(h) + self._shortcut(x)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is None:
            return x
        return self.shortcut(self._pool(x)) if self.first else self._pool(self.shortcut(x))

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.down else x


class ResNetDiscriminatorFeatures(nn.Module):
    """(N, in_channels, side, side) -> (N, widths[-1]): residual blocks, ReLU, sum over positions."""

    def __init__(self, in_channels: int, widths: list[int]) -> None:
        super().__init__()
        last = len(widths) - 1
        self.blocks = nn.Sequential(
            *(DownBlock(width_in, width_out, down=i < last, first=i == 0) for i, (width_in, width_out) in enumerate(zip([in_channels, *widths], widths)))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.blocks(x)).sum(dim=(2, 3))


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def resnet_init(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for convolutions and linear layers (SNGAN's choice);
    class-conditional gains and biases and the projection keep their own init."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)
