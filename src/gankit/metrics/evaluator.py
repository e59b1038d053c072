"""Evaluator networks: small CNN classifiers whose penultimate features are the metrics' feature space.

Why our own classifier and not Inception: 28x28 grayscale digits and clothes are far from
ImageNet, Inception would need a download, and a network trained on the dataset family itself
measures what a GAN for that family should get right. Its held-out accuracy is reported with
it, so a reader can judge how much its features can be trusted. Training them: evaluator_training.

Input: (N, 1, 28, 28) images, float in [-1, 1] (the generators' range) or uint8 (a Dataset's
samples, converted with to_model_range). features() gives (N, 128) float32, the ReLU
activations that the last linear layer reads; forward() gives the class logits.

File format: one safetensors file, the state_dict in its body and one metadata key holding
JSON {"info": the EvaluatorInfo fields but sha256, "digest": SHA-256 of that info and every
tensor}. The digest makes a user-trained file self-checking; the shipped files are also
checked against SHIPPED_SHA256. Nothing is ever unpickled.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from gankit.data import Structure, describe
from gankit.data.images import to_model_range
from gankit.errors import CheckpointError, DataError
from gankit.files import UNREADABLE_SAFETENSORS, content_digest, read_safetensors

IMAGE_SHAPE = (1, 28, 28)
CHANNELS = (16, 32)
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
