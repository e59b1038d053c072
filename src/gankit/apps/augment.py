"""Labelled synthetic data from a trained generator, written where gankit's data loaders read it.

A class-conditional generator is asked for each class directly. An unconditional one has no
labels to give, so its samples are labelled by an evaluator classifier, and only those it is
confident about (softmax >= min_confidence) are kept, until every class has its share or the
draw budget runs out; a class the generator rarely makes is then reported, not silently short.

Outputs: FILE.npz (uint8 `images` and `labels`, for data.dataset=npz:FILE) or a folder with one
subfolder per class, named by the zero-padded label so that their sorted order is the label
order (for data.dataset=folder:DIR; give data.image_size too, since folders default to 64 px).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from gankit.data.images import to_uint8_images
from gankit.data.npz import save_npz
from gankit.errors import GankitError
from gankit.metrics.evaluator import evaluator_for_dataset, load_evaluator
from gankit.models.sampling import class_labels, draw, jacobian_threshold, sample
from gankit.runs import open_checkpoint

DEFAULT_MIN_CONFIDENCE = 0.9
DRAW_BATCH = 1000
DEFAULT_DRAW_FACTOR = 20  # an unconditional G may draw this many times the images asked for


@dataclass
class Synthetic:
    """uint8 (N, C, H, W) images with int64 (N,) labels, grouped by class; `drawn` generator samples were made for them."""

    images: np.ndarray
    labels: np.ndarray
    drawn: int

    def counts(self) -> dict[int, int]:
        values, counts = np.unique(self.labels, return_counts=True)
        return {int(value): int(count) for value, count in zip(values, counts)}


def augment(
    run_or_checkpoint: str | Path,
    per_class: int,
    out: str | Path,
    *,
    classes: list[int] | None = None,
    checkpoint: str = "last",
    evaluator: str | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    max_draws: int | None = None,
    seed: int = 0,
    truncation: float | None = None,
    jacobian_truncation: float | None = None,
    device: str = "cpu",
    trust: bool = False,
) -> Synthetic:
    """per_class labelled samples of every class (or of `classes` only: fill the scarce ones) from a run's
    generator, written to out (FILE.npz or DIR), drawn with the run's sampling settings (truncation and
    jacobian_truncation override them where given), as `gankit sample` draws.

    evaluator (a shipped name or a .safetensors path; default: the one for the run's dataset)
    labels an unconditional generator's samples; a conditional one needs none.
    """
    if per_class <= 0:
        raise GankitError(f"--per-class must be positive, got {per_class}")
    loaded = open_checkpoint(run_or_checkpoint, checkpoint, device=device, trust=trust)
    generator = loaded.generator
    settings = loaded.config.sampling.overridden(truncation, jacobian_truncation).model_dump()
    if generator.num_classes:
        if evaluator:
            raise GankitError("this generator is class-conditional and labels its own samples; drop --evaluator")
        data = synthesize_conditional(generator, per_class, classes=classes, seed=seed, **settings)
    else:
        name = evaluator or evaluator_for_dataset(loaded.config.data.dataset)
        if name is None:
            raise GankitError(
                f"this generator is unconditional and no shipped evaluator fits its dataset {loaded.config.data.dataset}; "
                "pass --evaluator fashion-mnist, mnist or a .safetensors file from `gankit evaluator train`"
            )
        classifier, _ = load_evaluator(name, device)
        data = synthesize_by_evaluator(
            generator, classifier, per_class, classes=classes, min_confidence=min_confidence, max_draws=max_draws, seed=seed, **settings
        )
    write_synthetic(data, Path(out))
    return data


def synthesize_conditional(
    generator: nn.Module,
    per_class: int,
    *,
    classes: list[int] | None = None,
    seed: int = 0,
    truncation: float | None = None,
    jacobian_truncation: float = 0.0,
) -> Synthetic:
    """per_class samples of every class of a class-conditional generator, or of `classes` only."""
    if not generator.num_classes:
        raise GankitError("this generator is unconditional; label its samples with an evaluator (synthesize_by_evaluator)")
    labels = torch.tensor(_chosen_classes(classes, generator.num_classes)).repeat_interleave(per_class)
    images, _ = sample(generator, len(labels), seed=seed, labels=labels, truncation=truncation, jacobian_truncation=jacobian_truncation)
    return Synthetic(_uint8(images).numpy(), labels.numpy(), len(labels))


@torch.no_grad()
def synthesize_by_evaluator(
    generator: nn.Module,
    evaluator: nn.Module,
    per_class: int,
    *,
    classes: list[int] | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    max_draws: int | None = None,
    seed: int = 0,
    truncation: float | None = None,
    jacobian_truncation: float = 0.0,
) -> Synthetic:
    """per_class samples of each of evaluator.num_classes classes (or of `classes` only), labelled by the
    evaluator's arg-max where its softmax probability is at least min_confidence; the rest are thrown away.

    Draws at most max_draws samples (default DEFAULT_DRAW_FACTOR times the total asked for) and
    raises, naming every class's count, when a class is still short.
    """
    if not 0 < min_confidence <= 1:
        raise GankitError(f"--min-confidence must be in (0, 1], got {min_confidence}")
    num_classes = evaluator.num_classes
    chosen = _chosen_classes(classes, num_classes)
    wanted = torch.zeros(num_classes, dtype=torch.long)
    wanted[chosen] = per_class
    max_draws = max_draws or DEFAULT_DRAW_FACTOR * per_class * len(chosen)
    rng = torch.Generator(next(generator.parameters()).device).manual_seed(seed)
    device = next(evaluator.parameters()).device
    was_training = evaluator.training
    evaluator.eval()
    kept: list[list[Tensor]] = [[] for _ in range(num_classes)]
    counts, drawn = torch.zeros(num_classes, dtype=torch.long), 0
    threshold = jacobian_threshold(generator, rng, truncation, jacobian_truncation)
    try:
        while drawn < max_draws and bool((counts < wanted).any()):
            batch = min(DRAW_BATCH, max_draws - drawn)
            images = _uint8(draw(generator, batch, rng, class_labels(generator, batch), truncation, threshold=threshold))
            drawn += batch
            confidence, predicted = evaluator(images.to(device)).softmax(1).max(1)  # judged as written: quantized
            confident, predicted = (confidence >= min_confidence).cpu(), predicted.cpu()
            for label in chosen:
                kept_now = images[confident & (predicted == label)][: int(wanted[label] - counts[label])]
                kept[label].append(kept_now)
                counts[label] += len(kept_now)
    finally:
        evaluator.train(was_training)
    if bool((counts < wanted).any()):
        short = ", ".join(f"class {label}: {int(counts[label])}" for label in chosen if counts[label] < per_class)
        raise GankitError(
            f"after {drawn} samples some classes have fewer than {per_class} images at confidence >= {min_confidence} ({short}); "
            "lower --min-confidence, raise --max-draws, or use a class-conditional generator"
        )
    images = torch.cat([torch.cat(kept[label]) for label in chosen])
    return Synthetic(images.numpy(), np.repeat(np.array(chosen), per_class), drawn)


def _chosen_classes(classes: list[int] | None, num_classes: int) -> list[int]:
    """The classes asked for, sorted (all when None); a label the generator or evaluator lacks is an error."""
    if classes is None:
        return list(range(num_classes))
    if not classes or not all(0 <= label < num_classes for label in classes):
        raise GankitError(f"--classes must name classes 0..{num_classes - 1}, got {','.join(map(str, classes)) or 'none'}")
    return sorted(set(classes))


def write_synthetic(data: Synthetic, out: Path) -> Path:
    """FILE.npz, or a new (or empty) folder of per-class PNG subfolders; either appears only once complete."""
    if out.suffix.lower() == ".npz":
        save_npz(out, data.images, data.labels)
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GankitError(f"{out} already exists and is not an empty folder; choose a new --out folder (or FILE.npz)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        _write_class_folders(data, staging)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _fsync_folder(out.parent)
    return out


def _write_class_folders(data: Synthetic, root: Path) -> None:
    width = len(str(max(int(data.labels.max()), 9)))  # at least one digit; 1000 classes get 000..999
    names = {label: f"{label:0{width}d}" for label in np.unique(data.labels).tolist()}
    for index, (pixels, label) in enumerate(zip(data.images, data.labels.tolist())):
        folder = root / names[label]
        folder.mkdir(exist_ok=True)
        path = folder / f"{index:06d}.png"
        Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)).save(path)
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())
    for folder in [*root.iterdir(), root]:
        _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _uint8(images: Tensor) -> Tensor:
    """[-1, 1] (N, C, H, W) -> uint8 (N, C, H, W), a Dataset's layout."""
    if images.dim() != 4:
        raise GankitError("augment writes images, and this generator makes 2-D points")
    return torch.from_numpy(to_uint8_images(images)).permute(0, 3, 1, 2).contiguous()
