"""A dataset in memory, and the facts about it that its form fixes: kind, modes, family.

Everything downstream (trainer, watchdog, evaluation, sample pictures) reads these facts from the
Dataset or from data.forms.describe, never from the data.dataset string.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from gankit.errors import DataError

DatasetKind = Literal["points", "images", "stacked"]
POINTS_EVALUATION_SIZE = 2_500  # samples drawn to judge 2-D points: the mode-collapse literature's evaluation size


@dataclass(frozen=True)
class Modes:
    """The known modes of a 2-D mixture: (K, 2) float32 centers and the per-axis std of each Gaussian."""

    centers: torch.Tensor
    std: float


@dataclass(frozen=True)
class Structure:
    """kind: points (N, 2), images (N, C, H, W) or stacked (three digits as channels, 1000 classes).
    modes: a points mixture's known modes. family: which shipped classifier reads the images (or each
    channel of a stack): "mnist", "fashion-mnist", or None."""

    kind: DatasetKind = "images"
    modes: Modes | None = None
    family: str | None = None


@dataclass
class Dataset:
    """samples: uint8 (N, C, H, W) images or float32 (N, 2) toy points; labels: int64 (N,) or None."""

    samples: torch.Tensor
    labels: torch.Tensor | None
    num_classes: int | None
    name: str
    class_names: list[str] | None = None
    structure: Structure = field(default_factory=Structure)

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.samples):
            raise ValueError(f"{self.name}: {len(self.labels)} labels for {len(self.samples)} samples")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.samples.shape[1:])

    def __len__(self) -> int:
        return len(self.samples)

    def to(self, device: torch.device | str) -> Dataset:
        labels = None if self.labels is None else self.labels.to(device)
        return replace(self, samples=self.samples.to(device), labels=labels)


def per_class_subset(dataset: Dataset, per_class: int, seed: int) -> Dataset:
    """per_class images of every class, in their original order: the first per_class of each
    class's torch.randperm (seeded once with seed, classes in label order), so the pick does not
    depend on the training seed and a smaller per_class keeps a subset of a larger one's pick."""
    if dataset.labels is None:
        raise DataError(f"data.per_class={per_class} needs labels, and {dataset.name} has none; unset data.per_class")
    rng = torch.Generator().manual_seed(seed)
    labels = dataset.labels.cpu()
    picked = []
    for label in range(dataset.num_classes):
        members = torch.nonzero(labels == label).flatten()
        if len(members) < per_class:
            raise DataError(
                f"data.per_class={per_class} but class {label} of {dataset.name} has only {len(members)} images; lower data.per_class to {len(members)} or less"
            )
        picked.append(members[torch.randperm(len(members), generator=rng)[:per_class]])
    index = torch.cat(picked).sort().values
    return replace(dataset, samples=dataset.samples[index], labels=dataset.labels[index], name=f"{dataset.name} ({per_class} per class)")
