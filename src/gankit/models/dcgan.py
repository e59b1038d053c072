"""DCGAN (Radford et al. 2016) for square 28, 32 and 64 px images with any channel count.

G projects z to a start x start map and doubles it with ConvTranspose2d(4, 2, 1) blocks
(BatchNorm + ReLU) up to the image, Tanh at the end (images in [-1, 1]). D mirrors it with
Conv2d(4, 2, 1) blocks and LeakyReLU(0.2), BatchNorm in all but the first block when
model.d_norm == "batch", then flattens the start x start map into the linear head.
G's last hidden block and D's first have `model.width` channels, doubling each block inward.
"""

from __future__ import annotations

from torch import nn

from gankit.models.common import Discriminator, DSettings, Generator, ModelSettings, generator_input_width, hidden_activation, settings_discriminator

START_SIDE = {28: 7, 32: 4, 64: 4}  # image side -> side of G's first (and D's last) feature map


def build_dcgan(
    model: ModelSettings, stabilizers: DSettings, sample_shape: tuple[int, ...], num_classes: int | None
) -> tuple[Generator, Discriminator]:
    channels, height, _ = sample_shape  # square, of a side in START_SIDE: models.build_models checks the registry entry
    start = START_SIDE[height]
    blocks = (height // start).bit_length() - 1  # 7 -> 28: 2 doublings; 4 -> 32: 3; 4 -> 64: 4
    widths = [model.width * 2**block for block in range(blocks)]  # outermost (width) to innermost

    generator = Generator(
        _generator_body(generator_input_width(model.z_dim, num_classes), widths, channels, start),
        model.z_dim,
        sample_shape,
        num_classes,
        z_spatial=(1, 1),
    )
    discriminator = settings_discriminator(
        _discriminator_features(channels * stabilizers.pack, widths, model.d_norm == "batch", stabilizers.d_dropout),
        widths[-1] * start * start,
        sample_shape,
        model,
        stabilizers,
        num_classes,
    )
    generator.apply(dcgan_init)
    discriminator.apply(dcgan_init)
    return generator, discriminator


def _generator_body(input_width: int, widths: list[int], channels: int, start: int) -> nn.Sequential:
    """(N, input_width, 1, 1) -> (N, channels, start * 2**len(widths), ...) in [-1, 1]."""
    inward_out = widths[::-1]
    layers: list[nn.Module] = [nn.ConvTranspose2d(input_width, inward_out[0], start, 1, 0, bias=False), nn.BatchNorm2d(inward_out[0]), nn.ReLU()]
    for width_in, width_out in zip(inward_out, inward_out[1:]):
        layers += [nn.ConvTranspose2d(width_in, width_out, 4, 2, 1, bias=False), nn.BatchNorm2d(width_out), nn.ReLU()]
    layers += [nn.ConvTranspose2d(widths[0], channels, 4, 2, 1), nn.Tanh()]
    return nn.Sequential(*layers)


def _discriminator_features(in_channels: int, widths: list[int], batch_norm: bool, dropout: float) -> nn.Sequential:
    """(N, in_channels, side, side) -> (N, widths[-1], start, start); each block halves the side."""
    layers: list[nn.Module] = []
    for block, (width_in, width_out) in enumerate(zip([in_channels, *widths], widths)):
        normalize = batch_norm and block > 0
        layers.append(nn.Conv2d(width_in, width_out, 4, 2, 1, bias=not normalize))
        if normalize:
            layers.append(nn.BatchNorm2d(width_out))
        layers += hidden_activation(nn.LeakyReLU(0.2), dropout)
    return nn.Sequential(*layers)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.'s init: weights N(0, 0.02), BatchNorm scales N(1, 0.02), biases 0. Embeddings keep theirs."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
    else:
        return
    if module.bias is not None:
        nn.init.zeros_(module.bias)
