"""The Inception-v3 that FID papers use, in plain PyTorch, for users who bring its weights file.

The network is the "FID Inception" of pytorch-fid: torchvision's Inception-v3 layout (no
auxiliary head, a 1008-way fc) with the three changes that make it compute what TensorFlow's
inception-2015-12-05 graph computes: the 3x3 pools beside the 1x1 convs of blocks A, C and
E average over real pixels only (padding not counted), and the last block (Mixed_7c) pools
with a max instead of an average. Features are pool3: the (N, 2048) spatial mean of Mixed_7c.

Input: (N, 1 or 3, H, W) images, uint8 or float in [-1, 1] (the generators' range, which is
also what the network expects: pytorch-fid maps [0, 1] to it with 2x - 1). Gray images are
repeated to 3 channels; every image is resized bilinearly (align_corners=False, no antialias,
as pytorch-fid does) to 299 x 299.

Weights are never downloaded here. The user supplies pytorch-fid's published file
(PUBLISHED_FILE, a torch.save pickle) once: `gankit evaluator convert-inception IN.pth
OUT.safetensors --trust` reads it with torch.load(weights_only=True) and writes a safetensors
file that records the .pth's SHA-256; after that nothing is unpickled. The attribute names
(Conv2d_1a_3x3, Mixed_5b, ...) are torchvision's, so that file's state dict loads with
strict=True; BatchNorm's num_batches_tracked counters, which inference never reads, are
dropped from a file that has them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from gankit.data.images import to_model_range
from gankit.errors import CheckpointError, DataError
from gankit.files import UNREADABLE_SAFETENSORS, is_pickle, load_trusted_state_dict, read_safetensors, write_atomically

INPUT_SIZE = 299
NUM_FEATURES = 2048
NUM_LOGITS = 1008  # ImageNet's 1000 classes plus 8 unused outputs of the TensorFlow graph
BN_EPS = 1e-3
# Images per forward pass: a 299 px image's first activations take ~3 MB, so 32 stay well within memory.
EXTRACT_BATCH = 32
# pytorch-fid's file; by the torch.hub naming convention its SHA-256 begins with the hex digits in its name.
PUBLISHED_FILE = "pt_inception-2015-12-05-6726825d.pth"
PUBLISHED_SHA256_PREFIX = "6726825d"
METADATA_KEY = "gankit_inception"
CONVERT_COMMAND = "gankit evaluator convert-inception IN.pth OUT.safetensors --trust"


class _FrozenBatchNorm(nn.Module):
    """BatchNorm2d at inference: the same four tensors (weight, bias, running_mean, running_var), no counter."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, BN_EPS)


class _ConvBN(nn.Module):
    """Convolution without bias, batch norm, ReLU: torchvision's BasicConv2d (keys conv.*, bn.*)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int], stride: int = 1, padding: int | tuple[int, int] = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False)
        self.bn = _FrozenBatchNorm(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _pool_3x3(x: Tensor, kind: str) -> Tensor:
    """The same-size 3x3 pool before a block's pool branch; "avg" leaves the zero padding out of the mean, as TensorFlow does."""
    if kind == "max":
        return F.max_pool2d(x, 3, stride=1, padding=1)
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _chain(x: Tensor, *layers: nn.Module) -> Tensor:
    for layer in layers:
        x = layer(x)
    return x


class _BlockA(nn.Module):
    """35 x 35 block: 1x1, 5x5, double 3x3 and pool branches; 224 + pool_features channels out."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = _ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = _ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            _chain(x, self.branch5x5_1, self.branch5x5_2),
            _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
            self.branch_pool(_pool_3x3(x, "avg")),
        ], 1)


class _BlockB(nn.Module):
    """35 -> 17 grid reduction: strided 3x3, strided double 3x3 and a max-pool branch; 480 + in_channels out."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = _ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3(x),
            _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _BlockC(nn.Module):
    """17 x 17 block with 7x7 convolutions factored into 1x7 and 7x1; 768 channels out."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = _ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = _ConvBN(in_channels, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _ConvBN(in_channels, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _ConvBN(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            _chain(x, self.branch7x7_1, self.branch7x7_2, self.branch7x7_3),
            _chain(x, self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5),
            self.branch_pool(_pool_3x3(x, "avg")),
        ], 1)


class _BlockD(nn.Module):
    """17 -> 8 grid reduction; 512 + in_channels out."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = _ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            _chain(x, self.branch3x3_1, self.branch3x3_2),
            _chain(x, self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _BlockE(nn.Module):
    """8 x 8 block whose 3x3 branches split into parallel 1x3 and 3x1; 2048 channels out.

    pool: "avg" for Mixed_7b; "max" for Mixed_7c, where the TensorFlow graph max-pools (a quirk
    of that graph, kept because FID is defined by it).
    """

    def __init__(self, in_channels: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = _ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = _ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        narrow = self.branch3x3_1(x)
        double = _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(narrow),
            self.branch3x3_2b(narrow),
            self.branch3x3dbl_3a(double),
            self.branch3x3dbl_3b(double),
            self.branch_pool(_pool_3x3(x, self.pool)),
        ], 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 as FID uses it. features(images) -> (N, 2048) pool3; head(features) -> (N, 1008) logits.

    Built with placeholder weights (ones/zeros, or PyTorch's default init for convs): load real
    ones with load_inception. The attribute names are torchvision's so that weight files load as they are.
    """

    num_features = NUM_FEATURES
    num_classes = NUM_LOGITS

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _BlockA(192, pool_features=32)
        self.Mixed_5c = _BlockA(256, pool_features=64)
        self.Mixed_5d = _BlockA(288, pool_features=64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, channels_7x7=128)
        self.Mixed_6c = _BlockC(768, channels_7x7=160)
        self.Mixed_6d = _BlockC(768, channels_7x7=160)
        self.Mixed_6e = _BlockC(768, channels_7x7=192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, pool="avg")
        self.Mixed_7c = _BlockE(2048, pool="max")
        self.fc = nn.Linear(NUM_FEATURES, NUM_LOGITS)

    def features(self, images: Tensor) -> Tensor:
        """(N, 1 or 3, H, W) uint8 or float [-1, 1] -> (N, 2048) float32 pool3 features."""
        x = self._prepare(images)
        x = _chain(x, self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3)
        x = F.max_pool2d(x, 3, stride=2)
        x = _chain(x, self.Conv2d_3b_1x1, self.Conv2d_4a_3x3)
        x = F.max_pool2d(x, 3, stride=2)
        x = _chain(x, self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c, self.Mixed_6d)
        x = _chain(x, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c)
        return x.mean((2, 3))

    def head(self, features: Tensor) -> Tensor:
        """(N, 2048) -> (N, 1008) logits of the ImageNet classifier the weights come with."""
        return self.fc(features)

    def forward(self, images: Tensor) -> Tensor:
        return self.features(images)

    def _prepare(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise DataError(f"Inception-v3 takes (N, 1 or 3, H, W) images; got a tensor of shape {tuple(images.shape)}")
        x = to_model_range(images.to(self.fc.weight.device))
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class InceptionInfo:
    """What a loaded weights file is: its name, its SHA-256, and the SHA-256 of the .pth it came from when known."""

    file: str
    sha256: str
    source_sha256: str | None  # the pytorch-fid .pth itself, or the one convert_inception read (None: unknown origin)

    @property
    def is_published(self) -> bool | None:
        """Whether the weights trace back to pytorch-fid's published file (None: no record of the origin)."""
        return None if self.source_sha256 is None else self.source_sha256.startswith(PUBLISHED_SHA256_PREFIX)

    def describe_origin(self) -> str:
        if self.is_published is None:
            return f"origin unknown (no record of the .pth it came from; convert {PUBLISHED_FILE} with `{CONVERT_COMMAND}`)"
        if self.is_published:
            return f"converted from pytorch-fid's {PUBLISHED_FILE} (sha256 {self.source_sha256})"
        return (
            f"WARNING: not pytorch-fid's {PUBLISHED_FILE} (source sha256 {self.source_sha256} does not begin with "
            f"{PUBLISHED_SHA256_PREFIX}); its scores are not comparable with published FIDs"
        )


def load_inception(path: str | Path, *, trust: bool = False, device: str | torch.device = "cpu") -> tuple[FIDInceptionV3, InceptionInfo]:
    """FIDInceptionV3 with the weights of a .safetensors file, or of a pickled .pth when trust (weights_only=True); eval mode."""
    path = Path(path).expanduser()
    payload = _read(path)
    sha256 = hashlib.sha256(payload).hexdigest()
    if is_pickle(path):
        tensors, source_sha256 = _unpickle_state_dict(path, trust), sha256
    else:
        tensors, source_sha256 = _parse_safetensors(payload, path)
    model = FIDInceptionV3()
    _load_strict(model, tensors, path)
    return model.to(device).eval(), InceptionInfo(path.name, sha256, source_sha256)


def convert_inception(source: str | Path, out: str | Path, *, trust: bool) -> InceptionInfo:
    """Read pytorch-fid's pickled weights once (trust required; weights_only=True), check they fit, write safetensors.

    The output records the source file's name and SHA-256 in its metadata, so scores made with
    it can still say which published file their weights came from.
    """
    source, out = Path(source).expanduser(), Path(out).expanduser()
    payload = _read(source)
    if not is_pickle(source):
        raise CheckpointError(f"{source} is not a torch.save (.pth) file; a .safetensors file needs no conversion: use it with --evaluator inception:{source}")
    tensors = _unpickle_state_dict(source, trust)
    _load_strict(FIDInceptionV3(), tensors, source)
    kept = {name: tensor.detach().contiguous().cpu() for name, tensor in _drop_counters(tensors).items()}
    record = {"source_file": source.name, "source_sha256": hashlib.sha256(payload).hexdigest()}
    written = save_safetensors(kept, metadata={METADATA_KEY: json.dumps(record, sort_keys=True)})
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, written)
    return InceptionInfo(out.name, hashlib.sha256(written).hexdigest(), record["source_sha256"])


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read Inception weights {path}: {err.strerror or err}; give the path of the weights file you downloaded") from None


def _unpickle_state_dict(path: Path, trust: bool) -> dict[str, Tensor]:
    if not trust:
        raise CheckpointError(
            f"{path} is a pickle (torch.save) file, and loading one can run code hidden in it; if you trust it, "
            f"convert it once with `{CONVERT_COMMAND}` (or pass --trust; it is then read with weights_only=True)"
        )
    return load_trusted_state_dict(path, f"tensors (pytorch-fid's {PUBLISHED_FILE} is one)")


def _parse_safetensors(payload: bytes, path: Path) -> tuple[dict[str, Tensor], str | None]:
    """Tensors and, when convert_inception wrote the file, the SHA-256 of the .pth it came from."""
    try:
        tensors, metadata = read_safetensors(payload)
        record = metadata.get(METADATA_KEY)
        source_sha256 = json.loads(record)["source_sha256"] if record else None
    except UNREADABLE_SAFETENSORS as err:
        raise CheckpointError(f"{path} is neither a .safetensors nor a .pth weights file ({type(err).__name__}: {err})") from None
    return tensors, source_sha256


def _drop_counters(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: tensor for name, tensor in tensors.items() if not name.endswith(".num_batches_tracked")}


def _load_strict(model: FIDInceptionV3, tensors: dict[str, Tensor], path: Path) -> None:
    """Load with strict=True after dropping BatchNorm counters; any other difference is a one-line CheckpointError."""
    tensors = _drop_counters(tensors)
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    missing = sorted(expected.keys() - tensors.keys())
    unexpected = sorted(tensors.keys() - expected.keys())
    misshapen = sorted(name for name in expected.keys() & tensors.keys() if tuple(tensors[name].shape) != expected[name])
    problems = [
        f"{len(names)} {what} (first: {names[0]}{detail(names[0])})"
        for names, what, detail in (
            (missing, "missing", lambda _: ""),
            (unexpected, "unexpected", lambda _: ""),
            (misshapen, "of another shape", lambda name: f" {tuple(tensors[name].shape)}, expected {expected[name]}"),
        )
        if names
    ]
    if problems:
        raise CheckpointError(
            f"{path} does not hold FID Inception-v3 weights: tensors {'; '.join(problems)}; use pytorch-fid's {PUBLISHED_FILE} "
            f"(converted with `{CONVERT_COMMAND}`)"
        )
    model.load_state_dict(tensors, strict=True)
