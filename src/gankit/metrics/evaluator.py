"""Evaluator networks: small CNN classifiers whose penultimate features are the metrics' feature space.

Why our own classifier and not Inception: 28x28 grayscale digits and clothes are far from
ImageNet, Inception would need a download, and a network trained on the dataset itself
measures what a GAN for it should get right. Its held-out accuracy is reported with
it, so a reader can judge how much its features can be trusted. Training them: evaluator_training.

Input: (N, C, H, W) images of the shape the evaluator was trained on, float in [-1, 1] (the
generators' range) or uint8 (a Dataset's samples, converted with to_model_range). features()
gives (N, 128) float32, the ReLU activations that the last linear layer reads; forward() gives
the class logits.

Two designs, chosen by the input shape the file records: 1x28x28 keeps the flat design the
shipped weights have (conv blocks, then a linear layer over the whole 7x7 map), so their
state_dicts and SHA-256s stay as they were; every other shape (grey or RGB, 16 to 256 px) gets
conv blocks down to a 4-7 px map and global average pooling, so one design serves any size.

File format: one safetensors file, the state_dict in its body and one metadata key holding
JSON {"info": the EvaluatorInfo fields but sha256, "digest": SHA-256 of that info and every
tensor}. The digest makes a user-trained file self-checking; the shipped files are also
checked against SHIPPED_SHA256. Nothing is ever unpickled.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from gankit.config import DataConfig
from gankit.data import Dataset, Structure, describe
from gankit.data.images import to_model_range
from gankit.errors import CheckpointError, DataError
from gankit.files import UNREADABLE_SAFETENSORS, content_digest, read_safetensors

FLAT_SHAPE = (1, 28, 28)  # the shipped evaluators' input, and the only shape the flat design takes
CHANNELS = (16, 32)  # the flat design's blocks; the pooled design continues doubling up to MAX_CHANNELS
MAX_CHANNELS = 128
POOLED_SIDES = (16, 256)  # smallest and largest image side the pooled design is meant for
NUM_FEATURES = 128
DROPOUT = 0.3
METADATA_KEY = "gankit_evaluator"

WEIGHTS_DIR = Path(__file__).with_name("weights")
# Written by scripts/train_evaluators.sh; a shipped file whose hash differs is refused.
SHIPPED_SHA256 = {
    "fashion-mnist": "48af29ddf8b3521bda279ff5a1a854c08047539afc4dd2216f83f37a7ae172e6",
    "mnist": "744ea5bee674d41e66a5dcb07ca03f8d65156fb96b39e93bef2cdba9db8c86da",
}


class Evaluator(nn.Module):
    """Conv blocks (3x3 conv, BatchNorm, ReLU, 2x2 max-pool; 16, 32, 64, ... channels), a 128-wide
    layer, dropout, a linear head: small enough to train in minutes on two CPU cores. The flat
    design (1x28x28) feeds the whole map of its two blocks to the 128-wide layer; the pooled one
    (any other shape) averages its last map over space first (module docstring).

    logits = head(features(x)), the split metrics.features.extract relies on. torchmetrics calls a
    custom feature module's forward(), which here gives logits: hand it
    metrics.features.EvaluatorFeatures instead.
    """

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int] = FLAT_SHAPE, name: str = "evaluator"):
        """name only appears in error messages."""
        super().__init__()
        self.name = name
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.num_features = NUM_FEATURES
        self.body = _flat_body() if self.input_shape == FLAT_SHAPE else _pooled_body(self.input_shape)
        self.head = nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(NUM_FEATURES, num_classes))

    def features(self, images: Tensor) -> Tensor:
        """(N, C, H, W) float [-1, 1] or uint8 -> (N, 128) float32 penultimate activations."""
        return self.body(self._prepare(images))

    def forward(self, images: Tensor) -> Tensor:
        """(N, C, H, W) float [-1, 1] or uint8 -> (N, num_classes) logits."""
        return self.head(self.features(images))

    def _prepare(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or tuple(images.shape[1:]) != self.input_shape:
            got = f"{shape_text(images.shape[1:])} images" if images.ndim == 4 else f"a tensor of shape {tuple(images.shape)}"
            raise DataError(f"the {self.name} evaluator takes {shape_text(self.input_shape)} images, a (N, {', '.join(map(str, self.input_shape))}) batch; got {got}")
        return to_model_range(images.to(next(self.parameters()).device))


def _flat_body() -> nn.Sequential:
    """The shipped evaluators' body: its module order fixes their state_dict keys, so it must not change."""
    return nn.Sequential(
        _conv_block(FLAT_SHAPE[0], CHANNELS[0]),
        _conv_block(CHANNELS[0], CHANNELS[1]),
        nn.Flatten(),
        nn.Linear(CHANNELS[1] * (FLAT_SHAPE[1] // 4) * (FLAT_SHAPE[2] // 4), NUM_FEATURES),
        nn.ReLU(),
    )


def _pooled_body(input_shape: tuple[int, ...]) -> nn.Sequential:
    """Blocks halve the map until it is under 8 px (at least two blocks), then global average pooling."""
    channels, height, width = input_shape
    blocks = max(2, (min(height, width) // 4).bit_length() - 1)  # 16 px: 2 blocks, 32: 3, 64: 4, ..., 256: 6
    widths = [min(CHANNELS[0] * 2**block, MAX_CHANNELS) for block in range(blocks)]
    return nn.Sequential(
        *(_conv_block(before, after) for before, after in zip([channels, *widths], widths)),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(widths[-1], NUM_FEATURES),
        nn.ReLU(),
    )


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
    # Recorded since evaluators read any image shape; the shipped files predate them and get these defaults.
    input_shape: list[int] = field(default_factory=lambda: list(FLAT_SHAPE))
    class_names: list[str] | None = None
    balanced_accuracy: float | None = None  # mean of the per-class held-out accuracies: what unbalanced classes need
    data_description: str | None = None  # what the images were: count, shape, images per class

    def describe(self) -> str:
        """Where a reader sees what the evaluator's features can be trusted for."""
        balanced = "" if self.balanced_accuracy is None else f", balanced accuracy {self.balanced_accuracy:.4f}"
        return f"gankit evaluator '{self.name}' ({self.dataset}, {shape_text(self.input_shape)}; held-out accuracy {self.test_accuracy:.4f}{balanced})"


def shape_text(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def check_fits(info: EvaluatorInfo, data: Dataset, data_config: DataConfig) -> None:
    """Refuse an evaluator whose input shape or dataset is not the run's (data and the config that loaded it).

    The dataset fits when it is the one the evaluator was trained on (same data.dataset value), of
    the same family (data.forms: e.g. any copy of MNIST), or has the same class names (the same
    labelled folder under another path)."""
    retrain = f"train one on it: {train_command_hint(data_config)}"
    if tuple(info.input_shape) != data.sample_shape:
        raise DataError(f"the {info.name} evaluator takes {shape_text(info.input_shape)} images but {data.name} has {shape_text(data.sample_shape)}; {retrain}")
    spec = data_config.dataset
    family = describe(info.dataset).family
    if info.dataset != spec and (family is None or family != data.structure.family) and (info.class_names is None or info.class_names != data.class_names):
        raise DataError(f"the {info.name} evaluator was trained on {info.dataset}, not on this run's data {spec}; {retrain}")


def train_command_hint(data_config: DataConfig) -> str:
    """The command that trains an evaluator on the images a run's data settings load (what to do when none fits)."""
    return train_command(data_config.dataset, "evaluator.safetensors", data_dir=data_config.data_dir, image_size=data_config.image_size, channels=data_config.channels)


def train_command(dataset: str, out: str | Path, *, epochs: int | None = None, seed: int | None = None, data_dir: str | None = None,
                  image_size: int | None = None, channels: int | None = None, flip: bool = True) -> str:
    """The `gankit evaluator train` command line for these settings (None: the option is left out)."""
    options = (("--epochs", epochs), ("--seed", seed), ("--data-dir", data_dir), ("--image-size", image_size), ("--channels", channels))
    words = ["gankit", "evaluator", "train", "--dataset", dataset, "--out", str(out)]
    words += [word for option, value in options if value is not None for word in (option, str(value))]
    return shlex.join(words + ([] if flip else ["--no-flip"]))


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
    model = Evaluator(info["num_classes"], tuple(info.get("input_shape", FLAT_SHAPE)), name=info["name"])
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise CheckpointError(f"{path} holds weights of another architecture ({str(err).splitlines()[0]})") from None
    return model.to(device).eval(), EvaluatorInfo(sha256=sha256, **info)


def serialize(model: Evaluator, info: dict) -> bytes:
    """The weights file: state_dict plus the info and digest in its metadata (module docstring)."""
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
    known = {field.name for field in fields(EvaluatorInfo)} - {"sha256"}
    required = {field.name for field in fields(EvaluatorInfo) if field.default is MISSING and field.default_factory is MISSING} - {"sha256"}
    if not required <= set(info) <= known:
        raise CheckpointError(f"{path} was written by another gankit version (fields {sorted(set(info) ^ known)} differ); retrain it with: {info.get('train_command')}")
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
