"""The reference MLP pair: the seed networks layer for layer, generalized to any C x H x W.

For 1 x 28 x 28 and z_dim 100, G has 1,486,352 parameters and D 1,460,225, and the leaf modules
of each are exactly the reference layers in order (flattening happens in forward, not in modules).
"""

from __future__ import annotations

import math

from torch import nn

from gankit.models.common import Discriminator, DSettings, Generator, ModelSettings, generator_input_width, mlp_layers, settings_discriminator

GENERATOR_HIDDEN = (256, 512, 1024)
DISCRIMINATOR_HIDDEN = (1024, 512, 256)


def build_mlp_reference(
    model: ModelSettings, stabilizers: DSettings, sample_shape: tuple[int, ...], num_classes: int | None
) -> tuple[Generator, Discriminator]:
    """G: z -> 256 -> 512 -> 1024 -> C*H*W, Tanh (images in [-1, 1]). D: C*H*W*pack -> 1024 -> 512 -> 256 -> 1."""
    pixels = math.prod(sample_shape)
    generator_body = nn.Sequential(
        *mlp_layers([generator_input_width(model.z_dim, num_classes), *GENERATOR_HIDDEN], nn.ReLU),
        nn.Linear(GENERATOR_HIDDEN[-1], pixels),
        nn.Tanh(),
    )
    features = nn.Sequential(*mlp_layers([pixels * stabilizers.pack, *DISCRIMINATOR_HIDDEN], nn.ReLU, stabilizers.d_dropout))
    generator = Generator(generator_body, model.z_dim, sample_shape, num_classes)
    discriminator = settings_discriminator(features, DISCRIMINATOR_HIDDEN[-1], sample_shape, model, stabilizers, num_classes, flat_input=True)
    return generator, discriminator
