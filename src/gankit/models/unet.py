"""The image-to-image pair of a trained restorer (pix2pix, Isola et al. 2017; context encoders, Pathak et
al. 2016): a U-Net G that maps a degraded image and its mask of known pixels to the restored image, and
a PatchGAN D that judges (condition, image) pairs patch by patch.

G(inputs (N, C + 1, H, W)) -> (N, C, H, W) in [-1, 1]: inputs are the observation (unknown pixels 0)
and the keep mask (1 = known). D(pairs (N, 2C + 1, H, W)) -> (N, P) logits, one per patch: every
loss averages its scores, so a patch map serves them as the (N,) scores of an image D do.
Neither has normalization in G (a restorer must not depend on its batch) nor z; both ignore labels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gankit.errors import ConfigError
from gankit.models.common import DSettings, ModelSettings, apply_spectral_norm, hidden_activation

MIN_SIDE = 7  # G halves the image while both sides stay even and at least this large


def halvings(height: int, width: int) -> int:
    """How many times G downsamples: 28 -> 14 -> 7 is 2, 32 -> 8 is 2, 64 -> 8 is 3."""
    count = 0
    while height % 2 == 0 and width % 2 == 0 and min(height, width) // 2 >= MIN_SIDE:
        height, width, count = height // 2, width // 2, count + 1
    return count


def _conv(width_in: int, width_out: int) -> list[nn.Module]:
    return [nn.Conv2d(width_in, width_out, 3, padding=1), nn.LeakyReLU(0.2)]


class UNet(nn.Module):
    """Encoder of 3x3 convolutions halving the image `depth` times (channels doubling from `width`), a
    bottleneck of two 3x3 convolutions that sees the whole image at 28 px, and a decoder that doubles it
    back (transposed 4x4 convolutions), joining each encoder level's features (the skips carry detail)."""

    def __init__(self, channels: int, height: int, width: int, base_width: int) -> None:
        super().__init__()
        self.sample_shape = (channels, height, width)
        self.num_classes = None
        self.condition_channels = channels + 1
        depth = halvings(height, width)
        widths = [base_width * 2**level for level in range(depth + 1)]
        self.stem = nn.Sequential(*_conv(self.condition_channels, widths[0]))
        self.down = nn.ModuleList(nn.Sequential(nn.Conv2d(w, w_next, 4, 2, 1), nn.LeakyReLU(0.2), *_conv(w_next, w_next)) for w, w_next in zip(widths, widths[1:]))
        self.bottleneck = nn.Sequential(*_conv(widths[-1], widths[-1]), *_conv(widths[-1], widths[-1]))
        self.up = nn.ModuleList(nn.Sequential(nn.ConvTranspose2d(w_next, w, 4, 2, 1), nn.LeakyReLU(0.2)) for w, w_next in zip(widths, widths[1:]))
        self.merge = nn.ModuleList(nn.Sequential(*_conv(2 * w, w)) for w in widths[:-1])
        self.out = nn.Sequential(nn.Conv2d(widths[0], channels, 1), nn.Tanh())

    def forward(self, inputs: Tensor, labels: Tensor | None = None) -> Tensor:
        skips = [self.stem(inputs.contiguous(memory_format=torch.channels_last))]  # a third faster on CPU (oneDNN's layout)
        for down in self.down:
            skips.append(down(skips[-1]))
        features = self.bottleneck(skips.pop())
        for up, merge in zip(reversed(self.up), reversed(self.merge)):
            features = merge(torch.cat([up(features), skips.pop()], 1))
        return self.out(features)


class PatchDiscriminator(nn.Module):
    """Strided 4x4 convolutions (LeakyReLU 0.2; BatchNorm after the first when `batch_norm`) down to the
    U-Net's bottleneck size, then a 3x3 convolution to one logit per patch."""

    score_space = "logits"
    pack = 1
    num_classes = None

    def __init__(self, channels: int, height: int, width: int, base_width: int, batch_norm: bool, dropout: float) -> None:
        super().__init__()
        self.sample_shape = (2 * channels + 1, height, width)
        layers: list[nn.Module] = []
        width_in = self.sample_shape[0]
        for level in range(max(1, halvings(height, width))):
            width_out = base_width * 2**level
            normalize = batch_norm and level > 0
            layers += [nn.Conv2d(width_in, width_out, 4, 2, 1, bias=not normalize), *([nn.BatchNorm2d(width_out)] if normalize else [])]
            layers += hidden_activation(nn.LeakyReLU(0.2), dropout)
            width_in = width_out
        layers.append(nn.Conv2d(width_in, 1, 3, padding=1))
        self.features = nn.Sequential(*layers)

    def forward(self, pairs: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.features(pairs.contiguous(memory_format=torch.channels_last)).flatten(1)


def restorer_inputs(observed: Tensor, keep: Tensor) -> Tensor:
    """G's input (N, C + 1, H, W): the observation with unknown pixels zeroed, and keep (N or 1, 1, H, W) as a channel."""
    keep = keep.to(observed).expand(len(observed), 1, *observed.shape[-2:])
    return torch.cat([observed * keep, keep], 1)


def paste_known(restored: Tensor, inputs: Tensor, exact: Tensor) -> Tensor:
    """G's output with its input's pixels put back where they were observed exactly ((N,) bool `exact`: no noise, no blur)."""
    trusted = (inputs[:, -1:] > 0) & exact.view(-1, 1, 1, 1)
    return torch.where(trusted, inputs[:, :-1].to(restored.dtype), restored)


def build_restorer(model: ModelSettings, stabilizers: DSettings, sample_shape: tuple[int, ...], num_classes: int | None) -> tuple[UNet, PatchDiscriminator]:
    """(U-Net G, PatchGAN D) for (C, H, W) images, `model.width` channels at full size in both."""
    if len(sample_shape) != 3:
        raise ConfigError(f"task: restore restores images (samples of shape (C, H, W)), but the data's samples have shape {sample_shape}; use image data")
    channels, height, width = sample_shape
    if min(height, width) < MIN_SIDE:
        raise ConfigError(f"a restorer needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, not {height}x{width}; set data.image_size")
    generator = UNet(channels, height, width, model.width)
    discriminator = PatchDiscriminator(channels, height, width, model.width, model.d_norm == "batch", stabilizers.d_dropout)
    if stabilizers.spectral_norm:
        apply_spectral_norm(discriminator)
    return generator, discriminator
