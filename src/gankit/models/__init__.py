"""Architectures by name: a new one is a builder function and one entry in BUILDERS.

A builder returns (G, D) that honour the contracts of `Generator` and `Discriminator`:
G(z (N, z_dim), labels) -> (N, *sample_shape); D(x (N, *sample_shape), labels) -> (N // pack,).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gankit.errors import ConfigError
from gankit.models.common import Discriminator, DSettings, Generator, ModelSettings, apply_spectral_norm
from gankit.models.dcgan import build_dcgan
from gankit.models.mlp import build_mlp_reference
from gankit.models.toy import build_mlp_toy

Builder = Callable[[ModelSettings, DSettings, tuple[int, ...], int | None], tuple[Generator, Discriminator]]

BUILDERS: dict[str, Builder] = {
    "mlp-reference": build_mlp_reference,
    "dcgan": build_dcgan,
    "mlp-toy": build_mlp_toy,
}

__all__ = ["BUILDERS", "Discriminator", "Generator", "build_models"]


def build_models(
    model: ModelSettings, stabilizers: DSettings, sample_shape: Sequence[int], num_classes: int | None
) -> tuple[Generator, Discriminator]:
    """Build (G, D) for samples of `sample_shape` ((C, H, W) images or (d,) points).

    `num_classes` is only used when model.conditional; the D-side stabilizers (dropout, spectral
    norm, packing) are built into D here, so D is complete without a trainer.
    """
    if model.conditional and num_classes is None:
        raise ConfigError("model.conditional=true needs class labels, but the dataset has none; set model.conditional=false or use a labelled dataset")
    generator, discriminator = BUILDERS[model.name](model, stabilizers, tuple(sample_shape), num_classes if model.conditional else None)
    if stabilizers.spectral_norm:
        apply_spectral_norm(discriminator)
    return generator, discriminator
