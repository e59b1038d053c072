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
HOLDOUT_SEED = 0  # data.holdout's pick depends on the data alone


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
    """samples: uint8 (N, C, H, W) images or float32 (N, 2) toy points; labels: int64 (N,) or None.

    xflip: the dataset is the N samples and then their mirror images (index i >= N is sample i - N
    flipped left-right), mirrored per batch. host_resident: samples larger than the device budget stay
    in host memory (memory-mapped from the folder cache when there is one) and go to the device one
    batch at a time; every reader indexes them, which gathers only the rows asked for."""

    samples: torch.Tensor
    labels: torch.Tensor | None
    num_classes: int | None
    name: str
    class_names: list[str] | None = None
    structure: Structure = field(default_factory=Structure)
    xflip: bool = False
    host_resident: bool = False

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.samples):
            raise ValueError(f"{self.name}: {len(self.labels)} labels for {len(self.samples)} samples")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.samples.shape[1:])

    def __len__(self) -> int:
        return len(self.samples) * (2 if self.xflip else 1)

    def to(self, device: torch.device | str) -> Dataset:
        """On the device whole, unless host_resident (then batch() sends each batch)."""
        if self.host_resident:
            return self
        labels = None if self.labels is None else self.labels.to(device)
        return replace(self, samples=self.samples.to(device), labels=labels)

    def permutation(self, generator: torch.Generator) -> torch.Tensor:
        """A random order of the len(self) indices (drawn on the CPU), where batch() reads its indices."""
        return torch.randperm(len(self), generator=generator).to(self.samples.device)

    def balanced_order(self, generator: torch.Generator) -> torch.Tensor:
        """len(self) indices drawn with replacement, every class equally likely (a scarce class's images
        repeat), where batch() reads its indices: so a conditional GAN sees each class as often."""
        labels = self.labels.cpu().repeat(2 if self.xflip else 1)
        weights = 1 / torch.bincount(labels, minlength=self.num_classes).double()[labels]
        return torch.multinomial(weights, len(self), replacement=True, generator=generator).to(self.samples.device)

    def batch(self, indices: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The samples and labels (None if unlabelled) at indices (on the samples' device), on `device`."""
        count = len(self.samples)
        source = indices % count if self.xflip else indices
        samples = self.samples[source]
        labels = None if self.labels is None else self.labels[source]
        if self.xflip:
            samples = torch.where((indices >= count).view(-1, *[1] * (samples.ndim - 1)), samples.flip(-1), samples)
        if samples.device != device:
            samples, labels = (_to_device(tensor, device) for tensor in (samples, labels))
        return samples, labels


def _to_device(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """A host tensor on the device; on CUDA through pinned memory, so the copy does not wait for the GPU
    (the caching host allocator keeps the pinned block until the copy has finished)."""
    if tensor is None:
        return None
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


UNLABELLED = -1  # the label of an image whose label data.labels_per_class hid


def class_pick(dataset: Dataset, counts: dict[int, int], seed: int, setting: str) -> torch.Tensor:
    """Sorted indices of counts[label] images of each listed class and every image of the others: the first
    counts[label] of each class's torch.randperm (seeded once with seed, every class in label order), so the
    pick does not depend on the training seed, a smaller count keeps a subset of a larger one's pick, and a
    class's pick is the same whichever other classes are cut. setting names the option in errors."""
    if dataset.labels is None:
        raise DataError(f"{setting} needs labels, and {dataset.name} has none; unset it")
    if unknown := sorted(set(counts) - set(range(dataset.num_classes))):
        raise DataError(f"{setting} names class {unknown[0]}, and {dataset.name} has classes 0..{dataset.num_classes - 1}")
    rng = torch.Generator().manual_seed(seed)
    labels = dataset.labels.cpu()
    picked = []
    for label in range(dataset.num_classes):
        members = torch.nonzero(labels == label).flatten()
        order = torch.randperm(len(members), generator=rng)
        count = counts.get(label, len(members))
        if len(members) < count:
            raise DataError(f"{setting}: class {label} of {dataset.name} has only {len(members)} images; ask {len(members)} or fewer")
        picked.append(members[order[:count]])
    return torch.cat(picked).sort().values


def class_subset(dataset: Dataset, counts: dict[int, int], seed: int, setting: str) -> Dataset:
    """The images class_pick picks, in their original order."""
    index = class_pick(dataset, counts, seed, setting)
    cut = ", ".join(f"{label}: {count}" for label, count in sorted(counts.items()))
    return replace(dataset, samples=dataset.samples[index], labels=dataset.labels[index], name=f"{dataset.name} (class counts {cut})")


def per_class_subset(dataset: Dataset, per_class: int, seed: int) -> Dataset:
    """per_class images of every class (data.per_class), picked as class_subset picks."""
    counts = dict.fromkeys(range(dataset.num_classes or 0), per_class)
    return replace(class_subset(dataset, counts, seed, f"data.per_class={per_class}"), name=f"{dataset.name} ({per_class} per class)")


def hide_labels(dataset: Dataset, per_class: int, seed: int) -> Dataset:
    """Every image, but only per_class of each class keep their label (picked as data.per_class picks); the rest are UNLABELLED."""
    index = class_pick(dataset, dict.fromkeys(range(dataset.num_classes or 0), per_class), seed, f"data.labels_per_class={per_class}")
    labels = torch.full_like(dataset.labels, UNLABELLED)
    labels[index] = dataset.labels[index]
    return replace(dataset, labels=labels, name=f"{dataset.name} ({per_class} labels per class)")


def holdout_split(dataset: Dataset, fraction: float, split: str) -> Dataset:
    """The train or test part of a dataset that has no test split: `fraction` of each class (of all images when
    unlabelled), picked by a fixed seed so every run and seed holds out the same images."""
    rng = torch.Generator().manual_seed(HOLDOUT_SEED)
    groups = [torch.arange(len(dataset.samples))] if dataset.labels is None else [torch.nonzero(dataset.labels.cpu() == label).flatten() for label in range(dataset.num_classes)]
    held = torch.zeros(len(dataset.samples), dtype=torch.bool)
    for members in groups:
        held[members[torch.randperm(len(members), generator=rng)[: round(fraction * len(members))]]] = True
    index = torch.nonzero(held if split == "test" else ~held).flatten()
    if len(index) == 0:
        raise DataError(f"data.holdout={fraction} leaves the {split} part of {dataset.name} empty; choose a fraction that leaves images on both sides")
    labels = None if dataset.labels is None else dataset.labels[index]
    return replace(dataset, samples=dataset.samples[index], labels=labels, name=f"{dataset.name} ({split}: {len(index)} of {len(dataset.samples)})")
