"""Evaluator networks: small CNN classifiers whose penultimate features are the metrics' feature space.

Why our own classifier and not Inception: 28x28 grayscale digits and clothes are far from
ImageNet, Inception would need a download, and a network trained on the dataset family itself
measures what a GAN for that family should get right. Its held-out accuracy is reported with
it, so a reader can judge how much its features can be trusted.

Input: (N, 1, 28, 28) images, float in [-1, 1] (the generators' range) or uint8 (a Dataset's
samples, converted with to_model_range). features() gives (N, 128) float32, the ReLU
activations that the last linear layer reads; forward() gives the class logits.

Held-out split (evaluation_split): a source with a test split (mnist, fashion-mnist, an idx:
folder holding t10k-/test- files) is measured on that split; any other source holds out
HOLDOUT_FRACTION of its images, chosen by torch.randperm seeded with HOLDOUT_SEED, independent
of the training seed so that every evaluator of one source is measured on the same images.
Held-out images are never trained on, and the reported accuracy is that of the final epoch
(no epoch is picked by its held-out score).

Training (train_evaluator): AdamW with a one-cycle learning rate, each batch shifted by up to
MAX_SHIFT pixels; scripts/train_evaluators.sh holds the commands behind the shipped weights.

File format: one safetensors file, the state_dict in its body and one metadata key holding
JSON {"info": the EvaluatorInfo fields but sha256, "digest": SHA-256 of that info and every
tensor}. The digest makes a user-trained file self-checking; the shipped files are also
checked against SHIPPED_SHA256. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn
from tqdm import tqdm

from gankit.config import DataConfig
from gankit.data import Dataset, Structure, describe, load_dataset
from gankit.data.forms import has_test_split
from gankit.data.images import to_model_range
from gankit.errors import CheckpointError, ConfigError, DataError
from gankit.files import UNREADABLE_SAFETENSORS, content_digest, read_safetensors, write_atomically

IMAGE_SHAPE = (1, 28, 28)
CHANNELS = (16, 32)
NUM_FEATURES = 128
BATCH_SIZE = 128
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
MAX_SHIFT = 1
DROPOUT = 0.3
HOLDOUT_FRACTION = 0.2
HOLDOUT_SEED = 0
EVAL_BATCH = 1000
METADATA_KEY = "gankit_evaluator"

WEIGHTS_DIR = Path(__file__).with_name("weights")
# Written by scripts/train_evaluators.sh; a shipped file whose hash differs is refused.
SHIPPED_SHA256 = {
    "fashion-mnist": "48af29ddf8b3521bda279ff5a1a854c08047539afc4dd2216f83f37a7ae172e6",
    "mnist": "744ea5bee674d41e66a5dcb07ca03f8d65156fb96b39e93bef2cdba9db8c86da",
}


class Evaluator(nn.Module):
    """Two conv blocks (3x3 conv with 16 then 32 channels, BatchNorm, ReLU, 2x2 max-pool), a 128-wide
    layer, dropout, a linear head: small enough to train in minutes on two CPU cores.

    logits = head(features(x)), the split metrics.features.extract relies on. torchmetrics calls a
    custom feature module's forward(), which here gives logits: hand it
    metrics.features.EvaluatorFeatures instead.
    """

    def __init__(self, num_classes: int, name: str = "evaluator"):
        """name only appears in error messages."""
        super().__init__()
        self.name = name
        self.num_classes = num_classes
        self.num_features = NUM_FEATURES
        self.body = nn.Sequential(
            _conv_block(IMAGE_SHAPE[0], CHANNELS[0]),
            _conv_block(CHANNELS[0], CHANNELS[1]),
            nn.Flatten(),
            nn.Linear(CHANNELS[1] * (IMAGE_SHAPE[1] // 4) * (IMAGE_SHAPE[2] // 4), NUM_FEATURES),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(NUM_FEATURES, num_classes))

    def features(self, images: Tensor) -> Tensor:
        """(N, 1, 28, 28) float [-1, 1] or uint8 -> (N, 128) float32 penultimate activations."""
        return self.body(self._prepare(images))

    def forward(self, images: Tensor) -> Tensor:
        """(N, 1, 28, 28) float [-1, 1] or uint8 -> (N, num_classes) logits."""
        return self.head(self.features(images))

    def _prepare(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
            got = "x".join(map(str, images.shape[1:])) + " images" if images.ndim == 4 else f"a tensor of shape {tuple(images.shape)}"
            raise DataError(f"the {self.name} evaluator takes 1x28x28 images, a (N, 1, 28, 28) batch; got {got}")
        return to_model_range(images.to(next(self.parameters()).device))


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


@dataclass
class EvaluatorInfo:
    """What a weights file records about its training (its metadata), plus the file's SHA-256."""

    name: str
    sha256: str
    test_accuracy: float  # on the held-out images described by split
    split: str
    train_command: str
    seed: int
    dataset: str
    epochs: int
    train_size: int
    held_out_size: int
    num_classes: int
    torch_version: str  # with torch_threads: what a bit-identical retraining needs besides the command
    torch_threads: int


@dataclass
class Split:
    """The images an evaluator trains on and the disjoint ones its accuracy is measured on."""

    train: Dataset
    held_out: Dataset
    description: str


def evaluator_for(structure: Structure) -> str | None:
    """The shipped evaluator that reads a dataset's images (by their family), or None."""
    return structure.family if structure.kind == "images" and structure.family in SHIPPED_SHA256 else None


def evaluator_for_dataset(dataset_spec: str) -> str | None:
    """The shipped evaluator that fits a data.dataset value, or None (see data.forms for the families)."""
    return evaluator_for(describe(dataset_spec))


def load_evaluator(name: str, device: str | torch.device = "cpu") -> tuple[Evaluator, EvaluatorInfo]:
    """A shipped evaluator by name (hash-verified) or one trained by train_evaluator, by path; in eval mode."""
    path, expected = _locate(name)
    try:
        payload = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read evaluator weights {path}: {err.strerror or err}") from None
    sha256 = hashlib.sha256(payload).hexdigest()
    if expected is not None and sha256 != expected:
        raise CheckpointError(
            f"{path}: SHA-256 {sha256} is not the shipped {name} evaluator's {expected}; "
            "the file is damaged or was replaced: reinstall gankit"
        )
    tensors, info = _parse(payload, path)
    model = Evaluator(info["num_classes"], name=info["name"])
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise CheckpointError(f"{path} holds weights of another architecture ({str(err).splitlines()[0]})") from None
    return model.to(device).eval(), EvaluatorInfo(sha256=sha256, **info)


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
    payload = _serialize(model, info)
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


def _serialize(model: Evaluator, info: dict) -> bytes:
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    record = {"info": info, "digest": _digest(tensors, info)}
    return save_safetensors(tensors, metadata={METADATA_KEY: json.dumps(record, sort_keys=True)})


def _parse(payload: bytes, path: Path) -> tuple[dict[str, Tensor], dict]:
    """Tensors and info of an evaluator file, refused unless they match the digest recorded with them."""
    try:
        tensors, metadata = read_safetensors(payload)
        record = json.loads(metadata[METADATA_KEY])
        info, digest = record["info"], record["digest"]
        intact = _digest(tensors, info) == digest
    except UNREADABLE_SAFETENSORS as err:
        raise CheckpointError(f"{path} is not a gankit evaluator file ({type(err).__name__}: {err}); it may be damaged or from another tool") from None
    if not intact:
        raise CheckpointError(f"{path}: weights or metadata differ from what was recorded at training time; the file is damaged or was edited")
    recorded = {field.name for field in fields(EvaluatorInfo)} - {"sha256"}
    if set(info) != recorded:
        raise CheckpointError(f"{path} was written by another gankit version (fields {sorted(set(info) ^ recorded)} differ); retrain it with: {info.get('train_command')}")
    return tensors, info


def _digest(tensors: dict[str, Tensor], info: dict) -> str:
    return content_digest(tensors, json.dumps(info, sort_keys=True))


def _locate(name: str) -> tuple[Path, str | None]:
    """The weights file for a shipped name (with its expected SHA-256) or for a path (no expectation)."""
    if name in SHIPPED_SHA256:
        return WEIGHTS_DIR / f"{name}.safetensors", SHIPPED_SHA256[name]
    path = Path(name).expanduser()
    if not path.is_file():
        raise CheckpointError(f"no evaluator '{name}': use a shipped one ({', '.join(SHIPPED_SHA256)}) or the path of a .safetensors file written by train_evaluator")
    return path, None


def _silent(*_: object) -> None:
    pass
