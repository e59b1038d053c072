"""mlp-toy: small ReLU MLPs for points (2-D toy data such as ring8 or grid25; any (d,) works)."""

from __future__ import annotations

from torch import nn

from gankit.models.common import Discriminator, DSettings, Generator, ModelSettings, generator_input_width, mlp_layers, settings_discriminator


def build_mlp_toy(
    model: ModelSettings, stabilizers: DSettings, sample_shape: tuple[int, ...], num_classes: int | None
) -> tuple[Generator, Discriminator]:
    """G: z -> width x depth (ReLU) -> d, unbounded (toy data is not scaled to [-1, 1]).

    D: d * pack -> width x depth (ReLU [+ dropout]) -> 1. PyTorch's default init.
    """
    (dims,) = sample_shape
    hidden = [model.width] * model.depth
    generator_body = nn.Sequential(
        *mlp_layers([generator_input_width(model.z_dim, num_classes), *hidden], nn.ReLU),
        nn.Linear(model.width, dims),
    )
    features = nn.Sequential(*mlp_layers([dims * stabilizers.pack, *hidden], nn.ReLU, stabilizers.d_dropout))
    generator = Generator(generator_body, model.z_dim, sample_shape, num_classes)
    discriminator = settings_discriminator(features, model.width, sample_shape, model, stabilizers, num_classes)
    return generator, discriminator
