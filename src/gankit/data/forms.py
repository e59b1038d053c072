"""Dataset forms by name: how each form of `data.dataset` loads, and what its data is (a Structure).

This is the one reader of the data.dataset string: loading attaches the form's Structure to the
Dataset, and describe() gives it without loading. A new form is a loader in its own module and
one entry in FORMS.

  mnist, fashion-mnist   a named dataset, data.split train or test (found, downloaded, verified: see sources)
  idx:DIR                a folder of <split>-images-idx3-ubyte[.gz] (+ labels) files (see idx)
  folder:DIR             PNG/JPEG images, class subfolders for labels (see folder)
  npz:FILE               arrays 'images' and optional 'labels' (see npz)
  toy:ring8, toy:grid25  2-D Gaussian mixtures of data.generated_samples points (see toy)
  stacked-mnist[:SOURCE] data.generated_samples stacks of three digits from SOURCE (default mnist;
                         e.g. stacked-mnist:idx:../shared/datasets/mnist-10k), 1000 classes (see stacked)

Images come out uint8 (N, C, H, W); data.image_size resizes (shorter side, then center crop; folders:
as data.fit says) with antialiasing and data.channels converts between grayscale and RGB. Folders
default to 64 x 64; other image sources keep their native size. Toy data ignores both settings.
load_dataset applies what holds for every form: data.holdout (a test split cut from the data),
data.per_class or data.class_counts, data.labels_per_class (training split only), data.xflip, and
whether the samples exceed data.device_memory_mb (then they stay in host memory: Dataset.host_resident).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from gankit.config import DataConfig, background_rgb
from gankit.data import folder_cache
from gankit.data.dataset import Dataset, Modes, Structure, class_subset, hide_labels, holdout_split, per_class_subset
from gankit.data.folder import Decoding, image_paths, load_folder, load_images
from gankit.data.idx import find_split_files, load_idx_folder
from gankit.data.images import fit_images, to_model_range
from gankit.data.npz import load_npz
from gankit.data.sources import NAMED_DATASETS, load_named
from gankit.data.stacked import stack_digits
from gankit.data.toy import sample_toy, toy_modes
from gankit.errors import DataError

DEFAULT_FOLDER_SIZE = 64
Loader = Callable[[str, DataConfig, int], Dataset]  # (target: the text after "form:", config, seed)


@dataclass(frozen=True)
class Form:
    """usage: how it is written in data.dataset. target: True when the form needs one ("idx:DIR"), False
    when it takes none (a named set), None when it is optional. test_split: whether a target has a
    held-out test split (data.split=test)."""

    usage: str
    load: Loader
    structure: Callable[[str], Structure] = lambda target: Structure()
    target: bool | None = True
    test_split: Callable[[str], bool] = lambda target: False


def _named(name: str) -> Form:
    def load(target: str, cfg: DataConfig, seed: int) -> Dataset:
        images, labels = load_named(name, cfg.split, cfg.data_dir, cfg.download)
        return _image_dataset(images, labels, f"{name}/{cfg.split}", cfg)

    return Form(name, load, lambda target: Structure(family=name), target=False, test_split=lambda target: True)


def _idx(target: str, cfg: DataConfig, seed: int) -> Dataset:
    return _image_dataset(*load_idx_folder(Path(target).expanduser(), cfg.split), f"idx:{target}", cfg)


def _idx_family(target: str) -> Structure:
    """An idx folder whose name says mnist holds MNIST digits, or clothes when it also says fashion."""
    folder = Path(target).name.lower()
    family = None if "mnist" not in folder else "fashion-mnist" if "fashion" in folder else "mnist"
    return Structure(family=family)


def _idx_has_test_split(target: str) -> bool:
    try:
        find_split_files(Path(target).expanduser(), "test")
    except DataError:
        return False
    return True


def _npz(target: str, cfg: DataConfig, seed: int) -> Dataset:
    return _image_dataset(*load_npz(Path(target).expanduser()), f"npz:{target}", cfg)


def _folder(target: str, cfg: DataConfig, seed: int) -> Dataset:
    decoding = Decoding(cfg.image_size or DEFAULT_FOLDER_SIZE, cfg.channels, background_rgb(cfg.background), cfg.fit)
    workers = cfg.workers or os.cpu_count() or 1
    cache = folder_cache.location(cfg.cache, cfg.cache_dir)
    images, labels, class_names = load_folder(Path(target).expanduser(), decoding, workers, cache, _device_budget(cfg))
    return _image_dataset(images, labels, f"folder:{target}", cfg, class_names)


def _toy(target: str, cfg: DataConfig, seed: int) -> Dataset:
    points, modes = sample_toy(target, cfg.generated_samples, seed)
    return Dataset(points, modes, len(toy_modes(target)[0]), f"toy:{target}")


def _stacked(target: str, cfg: DataConfig, seed: int) -> Dataset:
    spec = f"stacked-mnist:{target}" if target else "stacked-mnist"
    source = load_dataset(cfg.model_copy(update={"dataset": target or "mnist", "channels": None, "per_class": None, "class_counts": None, "labels_per_class": None, "holdout": 0.0}), seed)
    if source.sample_shape[0] != 1 or source.labels is None or source.num_classes != 10:
        raise DataError(f"{spec}: the source must be labelled single-channel digits (10 classes), got {source.name}")
    stacks, labels = stack_digits(source.samples, source.labels, cfg.generated_samples, seed)
    return Dataset(stacks, labels, 1000, spec)


FORMS: dict[str, Form] = {
    **{name: _named(name) for name in NAMED_DATASETS},
    "idx": Form("idx:DIR", _idx, _idx_family, test_split=_idx_has_test_split),
    "folder": Form("folder:DIR", _folder),
    "npz": Form("npz:FILE", _npz),
    "toy": Form("toy:ring8, toy:grid25", _toy, lambda target: Structure("points", Modes(*toy_modes(target)))),
    "stacked-mnist": Form("stacked-mnist[:SOURCE]", _stacked, lambda target: Structure("stacked", family="mnist"), target=None),
}


def form_of(spec: str) -> tuple[Form, str]:
    """The form a data.dataset value names, and its target (the text after "form:")."""
    name, _, target = spec.partition(":")
    form = FORMS.get(name)
    if form is None or (form.target is True and not target) or (form.target is False and target):
        raise DataError(f"unknown dataset '{spec}'; use one of {', '.join(form.usage for form in FORMS.values())}")
    return form, target


def describe(spec: str) -> Structure:
    """The kind, modes and family of a data.dataset value's data, without loading it."""
    form, target = form_of(spec)
    return form.structure(target)


def has_test_split(spec: str) -> bool:
    form, target = form_of(spec)
    return form.test_split(target)


def load_dataset(cfg: DataConfig, seed: int = 0) -> Dataset:
    """Load cfg.dataset (cut to data.per_class or data.class_counts when set); seed only matters for generated (toy) data."""
    form, target = form_of(cfg.dataset)
    if cfg.holdout:
        if form.test_split(target):
            raise DataError(f"{cfg.dataset} has its own test split (data.split=test); unset data.holdout")
        dataset = holdout_split(form.load(target, cfg.model_copy(update={"split": "train"}), seed), cfg.holdout, cfg.split)
    else:
        dataset = form.load(target, cfg, seed)
    dataset = replace(dataset, structure=form.structure(target))
    if cfg.xflip and dataset.structure.kind == "points":
        raise DataError(f"data.xflip mirrors images, and {dataset.name} holds 2-D points; unset data.xflip")
    if cfg.per_class:
        dataset = per_class_subset(dataset, cfg.per_class, cfg.subset_seed)
    if cfg.class_counts:
        dataset = class_subset(dataset, cfg.class_counts, cfg.subset_seed, "data.class_counts")
    if cfg.labels_per_class and cfg.split == "train":
        dataset = hide_labels(dataset, cfg.labels_per_class, cfg.subset_seed)
    return replace(dataset, xflip=cfg.xflip, host_resident=dataset.samples.nbytes > _device_budget(cfg))


def _device_budget(cfg: DataConfig) -> int:
    """Bytes of samples the training device holds whole (data.device_memory_mb); larger datasets stay on the host."""
    return cfg.device_memory_mb * 2**20


def _image_dataset(
    images: np.ndarray, labels: np.ndarray | None, name: str, cfg: DataConfig, class_names: list[str] | None = None
) -> Dataset:
    if len(images) == 0:
        raise DataError(f"{name} holds no images")
    with warnings.catch_warnings():  # a memory-mapped cache is read-only; every reader indexes it, which copies
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        samples = torch.from_numpy(np.ascontiguousarray(images))
    samples = fit_images(samples.unsqueeze(1) if samples.ndim == 3 else samples, cfg.image_size, cfg.channels)
    if labels is None:
        return Dataset(samples, None, None, name, class_names)
    num_classes = len(class_names) if class_names else int(labels.max()) + 1
    return Dataset(samples, torch.from_numpy(labels.astype(np.int64)), num_classes, name, class_names)


def read_input_images(path: Path, sample_shape: tuple[int, ...]) -> tuple[torch.Tensor, list[str]]:
    """Images in [-1, 1] that a command is pointed at, and a name for each (its file, or its index in an .npz):
    an .npz as stored (the size must match), a folder or one image file (fitted to sample_shape's size and
    channels like a training folder)."""
    channels, height, _ = sample_shape
    if path.suffix.lower() == ".npz":
        images, _ = load_npz(path)
        names = [str(index) for index in range(len(images))]
    elif path.is_dir() or path.is_file():
        files = image_paths(path) if path.is_dir() else [path]
        if not files:
            raise DataError(f"--input {path} holds no images (PNG, JPEG, ...)")
        images, names = load_images(files, height, channels), [str(file.relative_to(path) if path.is_dir() else file.name) for file in files]
    else:
        raise DataError(f"--input {path} does not exist; give an image file, a folder of images or an .npz")
    return to_model_range(torch.from_numpy(np.ascontiguousarray(images))), names
