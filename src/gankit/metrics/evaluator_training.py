"""Training an evaluator network (metrics.evaluator) on a labelled image dataset.

Held-out split (evaluation_split): a source with a test split (mnist, fashion-mnist, an idx:
folder holding t10k-/test- files) is measured on that split. Any other source holds out
HOLDOUT_FRACTION of its images, drawn with torch.randperm seeded with HOLDOUT_SEED, independent
of the training seed so that every evaluator of one source is measured on the same images:
of each class separately (stratified, at least one image a class) for the pooled design, whose
folders often have unbalanced classes; of the whole set for the flat 1x28x28 design, as the
shipped weights were made. Held-out images are never trained on, and the reported accuracy is
that of the final epoch (no epoch is picked by its held-out score). With unbalanced classes the
plain accuracy mostly measures the large classes, so the balanced accuracy (mean of the
per-class accuracies) is reported and stored beside it.

Training (train_evaluator): AdamW with a one-cycle learning rate, each batch augmented (Recipe):
the flat design shifts by up to 1 pixel (the shipped recipe, kept so that
scripts/train_evaluators.sh still reproduces their weights); the pooled design shifts by up to
1/16 of the side, filling with the edge pixels, mirrors half the images left to right
(flip=False for data where a mirror image changes the class, such as letters), and weighs each
class's images by the inverse of its size in the loss, so that a small class shapes the features
as much as a large one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from gankit.config import DataConfig, from_dict
from gankit.data import Dataset, load_dataset
from gankit.data.forms import has_test_split
from gankit.errors import ConfigError, DataError
from gankit.files import write_atomically
from gankit.metrics.evaluator import FLAT_SHAPE, POOLED_SIDES, Evaluator, EvaluatorInfo, serialize, shape_text, train_command

BATCH_SIZE = 128
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
HOLDOUT_FRACTION = 0.2
HOLDOUT_SEED = 0
EVAL_BATCH = 1000
SHIFT_DIVISOR = 16  # the pooled design's translations: up to side / 16 pixels (4 at 64 px)


@dataclass(frozen=True)
class Recipe:
    """Random translations by up to max_shift pixels (the uncovered border black, or its edge pixels
    repeated); with flip, left-right mirroring of half the images; with balance_classes, a loss
    that weighs each class equally."""

    max_shift: int
    edge_fill: bool
    flip: bool
    balance_classes: bool


FLAT_RECIPE = Recipe(max_shift=1, edge_fill=False, flip=False, balance_classes=False)  # digits and clothes: black background, handed, balanced


def recipe_for(sample_shape: tuple[int, ...], flip: bool) -> Recipe:
    return FLAT_RECIPE if sample_shape == FLAT_SHAPE else Recipe(max(1, sample_shape[-1] // SHIFT_DIVISOR), True, flip, True)


@dataclass
class Split:
    """The images an evaluator trains on and the disjoint ones its accuracy is measured on."""

    train: Dataset
    held_out: Dataset
    description: str


def evaluation_split(dataset: str, data_dir: str | None = None, image_size: int | None = None, channels: int | None = None) -> Split:
    """Load a labelled image source and split it as the module docstring says."""
    settings = from_dict({"data": {"dataset": dataset, "data_dir": data_dir, "image_size": image_size, "channels": channels}}).data  # one-line errors
    train = _load_labelled(settings)
    if has_test_split(dataset):
        held_out = _load_labelled(settings.model_copy(update={"split": "test"}))
        return Split(train, held_out, f"{dataset} test split ({len(held_out)} images)")
    generator = torch.Generator().manual_seed(HOLDOUT_SEED)
    if train.sample_shape != FLAT_SHAPE:
        return _stratified_split(train, dataset, generator)
    order = torch.randperm(len(train), generator=generator)
    count = round(len(train) * HOLDOUT_FRACTION)
    if count < 1:
        raise DataError(f"{dataset} has {len(train)} images, too few to hold out {HOLDOUT_FRACTION:.0%} for measuring accuracy")
    description = (
        f"{dataset} train split, held-out {HOLDOUT_FRACTION:.0%} ({count} images: "
        f"the first {count} of torch.randperm({len(train)}) seeded with {HOLDOUT_SEED})"
    )
    return Split(_subset(train, order[count:]), _subset(train, order[:count]), description)


def _stratified_split(data: Dataset, dataset: str, generator: torch.Generator) -> Split:
    held_out = []
    for label in range(data.num_classes):
        members = torch.nonzero(data.labels == label).flatten()
        if len(members) < 2:
            raise DataError(f"class {_class_name(data, label)} of {dataset} has {len(members)} image(s); an evaluator needs at least 2 a class (one to learn from, one to measure)")
        held_out.append(members[torch.randperm(len(members), generator=generator)[: max(1, round(len(members) * HOLDOUT_FRACTION))]])
    held = torch.cat(held_out).sort().values
    kept = torch.ones(len(data), dtype=torch.bool)
    kept[held] = False
    description = (
        f"{dataset}, held-out {HOLDOUT_FRACTION:.0%} of each class ({len(held)} images: for each class in label order, the first "
        f"round({HOLDOUT_FRACTION:g} x its count), at least 1, of torch.randperm of its images, one generator seeded with {HOLDOUT_SEED})"
    )
    return Split(_subset(data, torch.nonzero(kept).flatten()), _subset(data, held), description)


@torch.no_grad()
def predict(model: Evaluator, data: Dataset) -> Tensor:
    """(N,) arg-max classes of data's images, in eval mode (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    predicted = torch.cat([model(images).argmax(1).cpu() for images in data.samples.split(EVAL_BATCH)])
    model.train(was_training)
    return predicted


def evaluate_accuracy(model: Evaluator, data: Dataset) -> float:
    """Fraction of data's images whose arg-max logit is their label."""
    return held_out_scores(model, data)[0]


def held_out_scores(model: Evaluator, data: Dataset) -> tuple[float, float]:
    """(accuracy, balanced accuracy: the mean over the classes present of the fraction of each predicted right) on data."""
    predicted, labels = predict(model, data), data.labels
    per_class = [float((predicted[labels == label] == label).double().mean()) for label in labels.unique()]
    return float((predicted == labels).double().mean()), sum(per_class) / len(per_class)


def train_evaluator(
    dataset: str,
    out: Path,
    *,
    epochs: int,
    seed: int,
    data_dir: str | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    flip: bool = True,
    progress: bool | None = None,
) -> EvaluatorInfo:
    """Train an evaluator on dataset's training images, measure it on the held-out ones, write it to out.

    image_size and channels load the data as data.image_size / data.channels would (a run's
    evaluator must take the run's images). Deterministic given the seed (on one machine and
    torch build): weights, data order, augmentation and dropout all draw from it, and the
    caller's global RNG state is restored. flip: mirror images while training (pooled design).
    progress: None prints a line per epoch and a bar on a terminal; True forces the bar; False prints nothing.
    """
    if epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")
    out = Path(out)
    say = print if progress is not False else _silent
    split = evaluation_split(dataset, data_dir, image_size, channels)
    num_classes = max(split.train.num_classes, split.held_out.num_classes)
    shape = split.train.sample_shape
    say(f"training the {out.stem} evaluator on {len(split.train)} {shape_text(shape)} images of {dataset}; held out: {split.description}")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Evaluator(num_classes, shape, name=out.stem)
        _fit(model, split, epochs, recipe_for(shape, flip), torch.Generator().manual_seed(seed), progress, say)
    accuracy, balanced = held_out_scores(model, split.held_out)
    info = {
        "name": out.stem,
        "test_accuracy": accuracy,
        "balanced_accuracy": balanced,
        "split": split.description,
        "train_command": train_command(dataset, out, epochs=epochs, seed=seed, data_dir=data_dir, image_size=image_size, channels=channels, flip=flip),
        "seed": seed,
        "dataset": dataset,
        "epochs": epochs,
        "train_size": len(split.train),
        "held_out_size": len(split.held_out),
        "num_classes": num_classes,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "input_shape": list(shape),
        "class_names": split.train.class_names,
        "data_description": _describe_data(split),
    }
    payload = serialize(model, info)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, payload)
    sha256 = hashlib.sha256(payload).hexdigest()
    say(f"held-out accuracy {accuracy:.4f}, balanced accuracy {balanced:.4f} ({split.description}); trained in {time.perf_counter() - start:.0f} s")
    say(f"wrote {out} ({len(payload) / 1e6:.2f} MB, sha256 {sha256})")
    return EvaluatorInfo(sha256=sha256, **info)


def _fit(
    model: Evaluator, split: Split, epochs: int, recipe: Recipe, generator: torch.Generator, progress: bool | None, say: Callable[[str], None]
) -> None:
    """AdamW with a one-cycle schedule; each batch augmented."""
    train = split.train
    counts = torch.bincount(train.labels, minlength=model.num_classes).clamp(min=1)
    weight = len(train) / (model.num_classes * counts.float()) if recipe.balance_classes else None
    batches_per_epoch = -(-len(train) // BATCH_SIZE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LEARNING_RATE, total_steps=epochs * batches_per_epoch)
    for epoch in range(1, epochs + 1):
        model.train()
        started, loss_sum = time.perf_counter(), torch.zeros(())
        batches = torch.randperm(len(train), generator=generator).split(BATCH_SIZE)
        for batch in tqdm(batches, desc=f"epoch {epoch}/{epochs}", leave=False, disable=None if progress is None else not progress):
            loss = F.cross_entropy(model(_augment(train.samples[batch], recipe, generator)), train.labels[batch], weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach() * len(batch)
        accuracy, balanced = held_out_scores(model, split.held_out)
        say(f"epoch {epoch}/{epochs}  loss {loss_sum.item() / len(train):.4f}  held-out accuracy {accuracy:.4f}  balanced {balanced:.4f}  ({time.perf_counter() - started:.0f} s)")


def _augment(images: Tensor, recipe: Recipe, generator: torch.Generator) -> Tensor:
    """uint8 (N, C, H, W) images, each translated by up to max_shift pixels in x and y, and mirrored with probability 1/2 with flip."""
    count, channels, height, width = images.shape
    shift = recipe.max_shift
    dy, dx = torch.randint(0, 2 * shift + 1, (2, count, 1), generator=generator)
    rows, cols = (dy + torch.arange(height))[:, :, None], (dx + torch.arange(width))[:, None, :]
    if recipe.edge_fill:
        source, rows, cols = images, (rows - shift).clamp(0, height - 1), (cols - shift).clamp(0, width - 1)
    else:
        source = F.pad(images, (shift,) * 4)
    shifted = source[torch.arange(count)[:, None, None, None], torch.arange(channels)[None, :, None, None], rows[:, None], cols[:, None]]
    if recipe.flip:
        mirrored = torch.rand(count, generator=generator) < 0.5
        shifted[mirrored] = shifted[mirrored].flip(-1)
    return shifted


def _load_labelled(settings: DataConfig) -> Dataset:
    data = load_dataset(settings)
    what = f"{settings.dataset} ({settings.split})"
    if data.labels is None:
        raise DataError(f"an evaluator learns from labels, and {what} has none; put the images in one subfolder per class")
    if data.sample_shape != FLAT_SHAPE and not POOLED_SIDES[0] <= min(data.sample_shape[1:]) <= max(data.sample_shape[1:]) <= POOLED_SIDES[1]:
        low, high = POOLED_SIDES
        raise DataError(f"evaluators take {shape_text(FLAT_SHAPE)} images or sides from {low} to {high} px; {what} gives {shape_text(data.sample_shape)}: set --image-size")
    return data


def _describe_data(split: Split) -> str:
    labels = torch.cat([split.train.labels, split.held_out.labels])
    counts = torch.bincount(labels, minlength=split.train.num_classes).tolist()
    per_class = ", ".join(f"{_class_name(split.train, label)} {count}" for label, count in enumerate(counts))
    return f"{split.train.name}: {len(labels)} labelled {shape_text(split.train.sample_shape)} images; per class: {per_class}"


def _class_name(data: Dataset, label: int) -> str:
    return data.class_names[label] if data.class_names else str(label)


def _subset(data: Dataset, index: Tensor) -> Dataset:
    return replace(data, samples=data.samples[index], labels=data.labels[index])


def _silent(*_: object) -> None:
    pass
