"""The G and D wrappers every architecture shares, and the stabilizers that live in D's layers.

An architecture supplies only G's body and D's feature extractor phi; the wrappers add label
conditioning, PacGAN packing, D's linear head and the optional Sigmoid, so these behave the
same whatever the architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class ModelSettings(Protocol):
    """What builders read of the run's model section (config.ModelConfig), so models need not import the config."""

    name: str
    z_dim: int
    conditional: bool
    width: int
    depth: int
    d_output: str
    d_norm: str
    mapping_layers: int


class DSettings(Protocol):
    """The stabilizers built into D's layers (config.StabilizerConfig)."""

    d_dropout: float
    spectral_norm: bool | None  # None: what the architecture implies (models.spectral_norm_of)
    pack: int


def generator_input_width(z_dim: int, num_classes: int | None) -> int:
    """Width of G's first layer: z, plus a num_classes-wide label code when conditional."""
    return z_dim + (num_classes or 0)


class Generator(nn.Module):
    """G(z (N, z_dim) float, labels (N,) int64 | None) -> samples (N, *sample_shape).

    `body` maps (N, generator_input_width, *z_spatial) to N * prod(sample_shape) values; its last
    layer sets the range (Tanh: [-1, 1] for images). A conditional G concatenates a learned label
    code to z; it is num_classes wide, the width of a one-hot code, but trainable. With
    `labels_to_body`, the body conditions itself instead (class-conditional BatchNorm): it is called
    as body(z, labels) and z goes in alone. Unconditional generators ignore labels, so a trainer may
    pass them regardless.
    """

    def __init__(
        self,
        body: nn.Module,
        z_dim: int,
        sample_shape: Sequence[int],
        num_classes: int | None = None,
        z_spatial: tuple[int, ...] = (),
        labels_to_body: bool = False,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.sample_shape = tuple(sample_shape)
        self.num_classes = num_classes
        self.z_spatial = z_spatial  # (1, 1) lets a ConvTranspose2d body read z as a 1x1 map
        self.labels_to_body = labels_to_body
        self.label_embedding = nn.Embedding(num_classes, num_classes) if num_classes and not labels_to_body else None
        self.body = body

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        code = self.code(z, labels)
        code = code.reshape(*code.shape, *self.z_spatial)
        values = self.body(code, self.class_labels(labels)) if self.labels_to_body else self.body(code)
        # shape[0], not len(): an exported graph keeps the batch axis open
        return values.view(z.shape[0], *self.sample_shape)

    def code(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """G's input: z, with the label code concatenated when G is conditional through it."""
        if self.label_embedding is None:
            return z
        return torch.cat([z, self.label_embedding(self.class_labels(labels))], dim=1)

    def class_labels(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The labels a conditional G needs (refusing None), or None for an unconditional one."""
        return _require_labels(labels, "generator", self.num_classes) if self.num_classes else None


class Discriminator(nn.Module):
    """D(x (N, *sample_shape), labels (N,) int64 | None) -> scores (N // pack,).

    score = head(phi(x)) [+ <embed(y), phi(x)>, the projection discriminator of Miyato & Koyama
    2018], then Sigmoid when score_space == "probabilities"; otherwise raw logits in R.
    PacGAN: each run of `pack` consecutive samples is concatenated along the channel (or feature)
    axis and judged as one, so `features` must take pack * sample_shape[0] input channels.
    `flat_input` flattens the packed samples for MLP features; phi's output is always flattened.
    Unconditional discriminators ignore labels.
    """

    def __init__(
        self,
        features: nn.Module,
        feature_dim: int,
        sample_shape: Sequence[int],
        *,
        pack: int = 1,
        num_classes: int | None = None,
        sigmoid: bool = False,
        flat_input: bool = False,
    ) -> None:
        super().__init__()
        if pack > 1 and num_classes:
            raise ValueError("a packed discriminator cannot be conditional: a packed group has no single label")
        self.sample_shape = tuple(sample_shape)
        self.pack = pack
        self.num_classes = num_classes
        self.flat_input = flat_input
        self.score_space = "probabilities" if sigmoid else "logits"
        self.features = features
        self.head = nn.Linear(feature_dim, 1)
        self.projection = nn.Embedding(num_classes, feature_dim) if num_classes else None
        if self.projection is not None:
            # N(0, 1) rows would make <embed(y), phi(x)> dwarf the head over thousands of features.
            nn.init.xavier_uniform_(self.projection.weight)
        self.sigmoid = nn.Sigmoid() if sigmoid else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if len(x) % self.pack:
            raise ValueError(f"this discriminator packs {self.pack} samples per score, so the batch size must be a multiple of {self.pack}, not {len(x)}")
        x = x.reshape(len(x) // self.pack, self.pack * self.sample_shape[0], *self.sample_shape[1:])
        if self.flat_input:
            x = x.flatten(1)
        phi = self.features(x).flatten(1)
        score = self.head(phi).squeeze(1)
        if self.projection is not None:
            score = score + (self.projection(_require_labels(labels, "discriminator", self.num_classes)) * phi).sum(1)
        return score if self.sigmoid is None else self.sigmoid(score)


def settings_discriminator(
    features: nn.Module,
    feature_dim: int,
    sample_shape: Sequence[int],
    model: ModelSettings,
    stabilizers: DSettings,
    num_classes: int | None,
    flat_input: bool = False,
) -> Discriminator:
    """The Discriminator around `features` as the run's settings ask: packing, the projection when conditional, the Sigmoid."""
    return Discriminator(
        features, feature_dim, sample_shape, pack=stabilizers.pack, num_classes=num_classes, sigmoid=model.d_output == "sigmoid", flat_input=flat_input
    )


def _require_labels(labels: torch.Tensor | None, role: str, num_classes: int | None) -> torch.Tensor:
    if labels is None:
        raise ValueError(f"this {role} is conditional: pass labels, an (N,) int64 tensor of classes in [0, {num_classes})")
    return labels


def hidden_activation(activation: nn.Module, dropout: float = 0.0) -> list[nn.Module]:
    """The activation, then Dropout(dropout) when dropout > 0 (D's dropout stabilizer)."""
    return [activation, nn.Dropout(dropout)] if dropout > 0 else [activation]


def mlp_layers(widths: Sequence[int], activation: Callable[[], nn.Module], dropout: float = 0.0) -> list[nn.Module]:
    """Linear(widths[i], widths[i + 1]) followed by an activation [and dropout], for each consecutive pair."""
    layers: list[nn.Module] = []
    for width_in, width_out in zip(widths, widths[1:]):
        layers += [nn.Linear(width_in, width_out), *hidden_activation(activation(), dropout)]
    return layers


class RunningMean(nn.Module):
    """A running statistic kept as a buffer (so checkpoints and EMA copies carry it); a module of its
    own so the bf16 compute copies keep it in float32, where a 1% update does not round away."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("value", torch.zeros(()))


def apply_spectral_norm(discriminator: nn.Module) -> None:
    """Spectral-normalize every Linear, Conv2d and Embedding weight in place (the projection embedding too)."""
    for layer in list(discriminator.modules()):
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.Embedding)):
            spectral_norm(layer)
