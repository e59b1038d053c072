"""Architectures by name: a new one is a builder function and one Architecture entry in BUILDERS.

A builder returns (G, D) that honour the contracts of `Generator` and `Discriminator`:
G(z (N, z_dim), labels) -> (N, *sample_shape); D(x (N, *sample_shape), labels) -> (N // pack,).
The entry says what the builder accepts (sample kind, image sides, the D-side stabilizers its layers
take, what it implies, whether G has a mapping network), so `build_models` and the config refuse a
mismatch in one line and no builder repeats those checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from gankit.errors import ConfigError
from gankit.models.common import Discriminator, DSettings, Generator, ModelSettings, apply_spectral_norm
from gankit.models.dcgan import START_SIDE, build_dcgan
from gankit.models.mlp import build_mlp_reference
from gankit.models.resnet import SIZES as RESNET_SIZES, build_resnet
from gankit.models.stylegan2 import SIZES as STYLEGAN2_SIZES, build_stylegan2
from gankit.models.toy import build_mlp_toy

Builder = Callable[[ModelSettings, DSettings, tuple[int, ...], int | None], tuple[Generator, Discriminator]]
SampleKind = Literal["images", "points"]
D_STABILIZERS_ON = {  # each D-side stabilizer, and when a setting turns it on
    "d_dropout": lambda settings: settings.d_dropout > 0,
    "spectral_norm": lambda settings: bool(settings.spectral_norm),
    "pack": lambda settings: settings.pack > 1,
}


@dataclass(frozen=True)
class Architecture:
    """A registry entry: the builder and what it accepts.

    samples: images (C, H, W) or points (d,); sizes: the square image sides it builds (None: any);
    d_stabilizers: the D-side stabilizers its D's layers honour (the config refuses the others rather
    than ignore them); implied: stabilizer settings the architecture is defined with, used when the
    config leaves them unset (None); mapping: G exposes map(z, labels) -> w and synthesize(w) -> images
    and a `path_length_mean` (common.RunningMean), which path-length regularization needs."""

    build: Builder
    samples: SampleKind = "images"
    sizes: tuple[int, ...] | None = None
    d_stabilizers: tuple[str, ...] = tuple(D_STABILIZERS_ON)
    implied: dict[str, bool] = field(default_factory=dict)
    mapping: bool = False


BUILDERS: dict[str, Architecture] = {
    "mlp-reference": Architecture(build_mlp_reference, sizes=(28, 32)),
    "dcgan": Architecture(build_dcgan, sizes=tuple(START_SIDE)),
    "resnet": Architecture(build_resnet, sizes=RESNET_SIZES, d_stabilizers=("spectral_norm", "pack"), implied={"spectral_norm": True}),
    "stylegan2": Architecture(build_stylegan2, sizes=STYLEGAN2_SIZES, d_stabilizers=("pack",), mapping=True),
    "mlp-toy": Architecture(build_mlp_toy, samples="points"),
}

__all__ = ["BUILDERS", "Architecture", "Discriminator", "Generator", "architectures_that", "build_models", "spectral_norm_of"]


def architectures_that(accept: Callable[[Architecture], bool]) -> list[str]:
    """Names of the registered architectures an entry test accepts (for messages that say what would work)."""
    return [name for name, entry in BUILDERS.items() if accept(entry)]


def spectral_norm_of(name: str, stabilizers: DSettings) -> bool:
    """stabilizers.spectral_norm, or what architecture `name` implies when it is unset (None)."""
    if stabilizers.spectral_norm is None:
        return BUILDERS[name].implied.get("spectral_norm", False)
    return stabilizers.spectral_norm


def unsupported_d_stabilizer(name: str, stabilizers: DSettings) -> str | None:
    """Why a D-side stabilizer that is on cannot apply to architecture `name` (its D's layers do not take it), or None."""
    for key, is_on in D_STABILIZERS_ON.items():
        if is_on(stabilizers) and key not in BUILDERS[name].d_stabilizers:
            others = ", ".join(architectures_that(lambda entry: key in entry.d_stabilizers))
            return f"stabilizers.{key} is not built into model.name={name}'s discriminator; leave it off, or use it with {others}"
    return None


def check_sample_shape(name: str, sample_shape: tuple[int, ...]) -> None:
    """Refuse data the architecture does not model, in one line that says what would fit."""
    entry = BUILDERS[name]
    kind = "images" if len(sample_shape) == 3 else "points" if len(sample_shape) == 1 else None
    if kind != entry.samples:
        described = "an image model (samples of shape (C, H, W))" if entry.samples == "images" else "a points model (samples of shape (d,))"
        others = ", ".join(architectures_that(lambda other: other.samples == kind)) or "none"
        raise ConfigError(f"model.name={name} is {described}, but the data's samples have shape {sample_shape}; models for these: {others}")
    if kind == "images" and entry.sizes is not None:
        _, height, width = sample_shape
        if height != width or height not in entry.sizes:
            supported = ", ".join(f"{side}x{side}" for side in entry.sizes)
            raise ConfigError(f"model.name={name} supports {supported} images, not {height}x{width}; set data.image_size to one of them")


def build_models(
    model: ModelSettings, stabilizers: DSettings, sample_shape: Sequence[int], num_classes: int | None
) -> tuple[Generator, Discriminator]:
    """Build (G, D) for samples of `sample_shape` ((C, H, W) images or (d,) points).

    `num_classes` is only used when model.conditional; the D-side stabilizers (dropout, spectral
    norm, packing) are built into D here, so D is complete without a trainer.
    """
    sample_shape = tuple(sample_shape)
    check_sample_shape(model.name, sample_shape)
    if problem := unsupported_d_stabilizer(model.name, stabilizers):
        raise ConfigError(problem)
    if model.conditional and num_classes is None:
        raise ConfigError("model.conditional=true needs class labels, but the dataset has none; set model.conditional=false or use a labelled dataset")
    generator, discriminator = BUILDERS[model.name].build(model, stabilizers, sample_shape, num_classes if model.conditional else None)
    if spectral_norm_of(model.name, stabilizers):
        apply_spectral_norm(discriminator)
    return generator, discriminator
