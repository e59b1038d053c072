"""Datasets, held whole in memory as one tensor so that the trainer slices batches on the device.

data.dataset accepts:
  mnist, fashion-mnist   a named dataset, data.split train or test (found, downloaded, verified: see sources)
  idx:DIR                a folder of <split>-images-idx3-ubyte[.gz] (+ labels) files (see idx)
  folder:DIR             PNG/JPEG images, class subfolders for labels (see folder)
  npz:FILE               arrays 'images' and optional 'labels' (see npz)
  toy:ring8, toy:grid25  2-D Gaussian mixtures of data.generated_samples points (see toy)
  stacked-mnist[:SOURCE] data.generated_samples stacks of three digits from SOURCE (default mnist;
                         e.g. stacked-mnist:idx:../shared/datasets/mnist-10k), 1000 classes (see stacked)

Images come out uint8 (N, C, H, W); data.image_size resizes (shorter side, then center crop)
with antialiasing and data.channels converts between grayscale and RGB. Folders default to
64 x 64; other image sources keep their native size. Toy data ignores both settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from gankit.config import DataConfig
from gankit.data.folder import load_folder
from gankit.data.idx import load_idx_folder, read_idx
from gankit.data.images import fit_images, to_model_range
from gankit.data.npz import load_npz, save_npz
from gankit.data.sources import NAMED_DATASETS, load_named
from gankit.data.stacked import stack_digits
from gankit.data.toy import sample_toy, toy_modes
from gankit.errors import DataError

__all__ = ["Dataset", "load_dataset", "read_idx", "save_npz", "to_model_range", "toy_modes"]

DATASET_FORMS = "mnist, fashion-mnist, idx:DIR, folder:DIR, npz:FILE, toy:ring8, toy:grid25, stacked-mnist[:SOURCE]"
STACKED = "stacked-mnist"
DEFAULT_FOLDER_SIZE = 64


@dataclass
class Dataset:
    """samples: uint8 (N, C, H, W) images or float32 (N, 2) toy points; labels: int64 (N,) or None."""

    samples: torch.Tensor
    labels: torch.Tensor | None
    num_classes: int | None
    name: str
    class_names: list[str] | None = None

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


def load_dataset(cfg: DataConfig, seed: int = 0) -> Dataset:
    """Load cfg.dataset (only data.per_class images of each class when set); seed only matters for generated (toy) data."""
    dataset = _load_whole(cfg, seed)
    return per_class_subset(dataset, cfg.per_class, cfg.subset_seed) if cfg.per_class else dataset


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


def _load_whole(cfg: DataConfig, seed: int) -> Dataset:
    spec = cfg.dataset
    kind, _, target = spec.partition(":")
    if spec in NAMED_DATASETS:
        images, labels = load_named(spec, cfg.split, cfg.data_dir, cfg.download)
        return _image_dataset(images, labels, f"{spec}/{cfg.split}", cfg)
    if kind == STACKED:
        source = load_dataset(cfg.model_copy(update={"dataset": target or "mnist", "channels": None, "per_class": None}), seed)
        if source.sample_shape[0] != 1 or source.labels is None or source.num_classes != 10:
            raise DataError(f"{spec}: the source must be labelled single-channel digits (10 classes), got {source.name}")
        stacks, labels = stack_digits(source.samples, source.labels, cfg.generated_samples, seed)
        return Dataset(stacks, labels, 1000, spec)
    if kind == "toy" and target:
        points, modes = sample_toy(target, cfg.generated_samples, seed)
        return Dataset(points, modes, len(toy_modes(target)[0]), spec)
    path = Path(target).expanduser()
    if kind == "idx" and target:
        return _image_dataset(*load_idx_folder(path, cfg.split), spec, cfg)
    if kind == "npz" and target:
        return _image_dataset(*load_npz(path), spec, cfg)
    if kind == "folder" and target:
        images, labels, class_names = load_folder(path, cfg.image_size or DEFAULT_FOLDER_SIZE, cfg.channels)
        return _image_dataset(images, labels, spec, cfg, class_names)
    raise DataError(f"unknown dataset '{spec}'; use one of {DATASET_FORMS}")


def _image_dataset(
    images: np.ndarray, labels: np.ndarray | None, name: str, cfg: DataConfig, class_names: list[str] | None = None
) -> Dataset:
    if len(images) == 0:
        raise DataError(f"{name} holds no images")
    samples = torch.from_numpy(np.ascontiguousarray(images))
    samples = fit_images(samples.unsqueeze(1) if samples.ndim == 3 else samples, cfg.image_size, cfg.channels)
    if labels is None:
        return Dataset(samples, None, None, name, class_names)
    num_classes = len(class_names) if class_names else int(labels.max()) + 1
    return Dataset(samples, torch.from_numpy(labels.astype(np.int64)), num_classes, name, class_names)
