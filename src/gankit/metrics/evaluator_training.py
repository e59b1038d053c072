"""Training an evaluator network (metrics.evaluator) on a labelled 1x28x28 dataset.

Held-out split (evaluation_split): a source with a test split (mnist, fashion-mnist, an idx:
folder holding t10k-/test- files) is measured on that split; any other source holds out
HOLDOUT_FRACTION of its images, chosen by torch.randperm seeded with HOLDOUT_SEED, independent
of the training seed so that every evaluator of one source is measured on the same images.
Held-out images are never trained on, and the reported accuracy is that of the final epoch
(no epoch is picked by its held-out score).

Training (train_evaluator): AdamW with a one-cycle learning rate, each batch shifted by up to
MAX_SHIFT pixels; scripts/train_evaluators.sh holds the commands behind the shipped weights.
"""

from __future__ import annotations

import hashlib
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from gankit.config import DataConfig
from gankit.data import Dataset, load_dataset
from gankit.data.forms import has_test_split
from gankit.errors import ConfigError, DataError
from gankit.files import write_atomically
from gankit.metrics.evaluator import IMAGE_SHAPE, Evaluator, EvaluatorInfo, serialize

BATCH_SIZE = 128
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
MAX_SHIFT = 1
HOLDOUT_FRACTION = 0.2
HOLDOUT_SEED = 0
EVAL_BATCH = 1000


@dataclass
class Split:
    """The images an evaluator trains on and the disjoint ones its accuracy is measured on."""

    train: Dataset
    held_out: Dataset
    description: str


def evaluation_split(dataset: str, data_dir: str | None = None) -> Split:
    """Load a labelled 1x28x28 source and split it as the module docstring says."""
    train = _load_labelled(dataset, "train", data_dir)
    if has_test_split(dataset):
        held_out = _load_labelled(dataset, "test", data_dir)
        return Split(train, held_out, f"{dataset} test split ({len(held_out)} images)")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(HOLDOUT_SEED))
    count = round(len(train) * HOLDOUT_FRACTION)
    if count < 1:
        raise DataError(f"{dataset} has {len(train)} images, too few to hold out {HOLDOUT_FRACTION:.0%} for measuring accuracy")
    description = (
        f"{dataset} train split, held-out {HOLDOUT_FRACTION:.0%} ({count} images: "
        f"the first {count} of torch.randperm({len(train)}) seeded with {HOLDOUT_SEED})"
    )
    return Split(_subset(train, order[count:]), _subset(train, order[:count]), description)


@torch.no_grad()
def evaluate_accuracy(model: Evaluator, data: Dataset) -> float:
    """Fraction of data's images whose arg-max logit is their label (eval mode; the model's mode is restored)."""
    was_training = model.training
    model.eval()
    correct = sum(
        int((model(images).argmax(1).cpu() == labels).sum())
        for images, labels in zip(data.samples.split(EVAL_BATCH), data.labels.split(EVAL_BATCH))
    )
    model.train(was_training)
    return correct / len(data)


def train_evaluator(
    dataset: str, out: Path, *, epochs: int, seed: int, data_dir: str | None = None, progress: bool | None = None
) -> EvaluatorInfo:
    """Train an evaluator on dataset's training images, measure it on the held-out ones, write it to out.

    Deterministic given the seed (on one machine and torch build): weights, data order,
    augmentation and dropout all draw from it, and the caller's global RNG state is restored.
    progress: None prints a line per epoch and a bar on a terminal; True forces the bar; False prints nothing.
    """
    if epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")
    out = Path(out)
    say = print if progress is not False else _silent
    split = evaluation_split(dataset, data_dir)
    num_classes = max(split.train.num_classes, split.held_out.num_classes)
    say(f"training the {out.stem} evaluator on {len(split.train)} images of {dataset}; held out: {split.description}")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Evaluator(num_classes, name=out.stem)
        _fit(model, split, epochs, torch.Generator().manual_seed(seed), progress, say)
    accuracy = evaluate_accuracy(model, split.held_out)
    info = {
        "name": out.stem,
        "test_accuracy": accuracy,
        "split": split.description,
        "train_command": _train_command(dataset, out, epochs, seed, data_dir),
        "seed": seed,
        "dataset": dataset,
        "epochs": epochs,
        "train_size": len(split.train),
        "held_out_size": len(split.held_out),
        "num_classes": num_classes,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    payload = serialize(model, info)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, payload)
    sha256 = hashlib.sha256(payload).hexdigest()
    say(f"held-out accuracy {accuracy:.4f} ({split.description}); trained in {time.perf_counter() - start:.0f} s")
    say(f"wrote {out} ({len(payload) / 1e6:.2f} MB, sha256 {sha256})")
    return EvaluatorInfo(sha256=sha256, **info)


def _fit(model: Evaluator, split: Split, epochs: int, generator: torch.Generator, progress: bool | None, say: Callable[[str], None]) -> None:
    """AdamW with a one-cycle schedule; each batch shifted by up to MAX_SHIFT pixels (augmentation)."""
    train = split.train
    batches_per_epoch = -(-len(train) // BATCH_SIZE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LEARNING_RATE, total_steps=epochs * batches_per_epoch)
    for epoch in range(1, epochs + 1):
        model.train()
        started, loss_sum = time.perf_counter(), torch.zeros(())
        batches = torch.randperm(len(train), generator=generator).split(BATCH_SIZE)
        for batch in tqdm(batches, desc=f"epoch {epoch}/{epochs}", leave=False, disable=None if progress is None else not progress):
            loss = F.cross_entropy(model(_random_shift(train.samples[batch], generator)), train.labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach() * len(batch)
        accuracy = evaluate_accuracy(model, split.held_out)
        say(f"epoch {epoch}/{epochs}  loss {loss_sum.item() / len(train):.4f}  held-out accuracy {accuracy:.4f}  ({time.perf_counter() - started:.0f} s)")


def _random_shift(images: Tensor, generator: torch.Generator) -> Tensor:
    """Translate each uint8 image by up to MAX_SHIFT pixels in x and y, filling with black (the background)."""
    count, _, height, width = images.shape
    padded = F.pad(images, (MAX_SHIFT,) * 4)
    dy, dx = torch.randint(0, 2 * MAX_SHIFT + 1, (2, count, 1), generator=generator)
    rows = (dy + torch.arange(height))[:, :, None]
    cols = (dx + torch.arange(width))[:, None, :]
    return padded[torch.arange(count)[:, None, None], 0, rows, cols].unsqueeze(1)


def _load_labelled(dataset: str, split: str, data_dir: str | None) -> Dataset:
    data = load_dataset(DataConfig(dataset=dataset, split=split, data_dir=data_dir))
    if data.labels is None:
        raise DataError(f"an evaluator learns from labels, and {dataset} ({split}) has none")
    if data.sample_shape != IMAGE_SHAPE:
        shape = "x".join(map(str, data.sample_shape))
        raise DataError(f"evaluators take 1x28x28 grayscale images; {dataset} gives {shape}")
    return data


def _subset(data: Dataset, index: Tensor) -> Dataset:
    return replace(data, samples=data.samples[index], labels=data.labels[index])


def _train_command(dataset: str, out: Path, epochs: int, seed: int, data_dir: str | None) -> str:
    args = ["gankit", "evaluator", "train", "--dataset", dataset, "--out", str(out), "--epochs", str(epochs), "--seed", str(seed)]
    return shlex.join(args + (["--data-dir", data_dir] if data_dir else []))


def _silent(*_: object) -> None:
    pass
