"""gankit's files: where a run folder keeps what, writing so that a reader never sees half a file,
and reading weights without running code (safetensors; a pickle only when the user trusts it)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from gankit.errors import CheckpointError

PICKLE_MAGICS = (b"\x80", b"PK\x03\x04")  # a pickle (protocol 2+), a torch.save zip archive
UNREADABLE_SAFETENSORS = (SafetensorError, KeyError, TypeError, ValueError)  # what a damaged or foreign file raises here


class RunPaths:
    """A run is a folder: config.yaml, checkpoints/, samples/, metrics.jsonl, loss.png (and report.html, eval.json)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.checkpoints = self.root / "checkpoints"
        self.samples = self.root / "samples"
        self.metrics = self.root / "metrics.jsonl"
        self.loss_plot = self.root / "loss.png"


@contextmanager
def atomic_write(dest: Path) -> Iterator[BinaryIO]:
    """A hidden temp file beside dest, flushed to disk and renamed over dest only when the block
    completes; an exception in the block (or a failed write) leaves dest as it was and no temp file."""
    if not dest.name or dest.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give a file name", str(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    try:
        with open(temp, "xb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, dest)
    finally:
        temp.unlink(missing_ok=True)
    folder = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)


def write_atomically(path: Path, payload: bytes, kept: str | None = None) -> None:
    """atomic_write for a finished payload, with a failure (full disk, no permission) as one clear line that ends
    with `kept`, what is still intact (default: the previous version of the file, when there was one)."""
    if kept is None:
        kept = f"the previous {path.name} is untouched" if path.exists() else "no partial file was left"
    try:
        with atomic_write(path) as out:
            out.write(payload)
    except OSError as err:
        raise CheckpointError(f"could not write {path}: {err.strerror or err}; {kept}") from None


def content_digest(tensors: dict[str, torch.Tensor], text: str) -> str:
    """SHA-256 of a JSON text and every tensor (name and bytes, in name order): what a file must still hold."""
    digest = hashlib.sha256(text.encode())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().cpu().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_safetensors(payload: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors payload; a damaged one raises one of UNREADABLE_SAFETENSORS."""
    return load_safetensors(payload), read_metadata(payload)


def read_metadata(payload: bytes) -> dict[str, str]:
    header_len = int.from_bytes(payload[:8], "little")
    return json.loads(payload[8 : 8 + header_len]).get("__metadata__", {})


def is_pickle(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(9)
    return looks_pickled(head, path.stat().st_size)


def looks_pickled(head: bytes, size: int) -> bool:
    """A pickle or torch.save archive by its first bytes. A safetensors file starts with its header
    length (8 bytes, little-endian) and then '{', and those bytes can begin like a pickle (0x80 0x03 is a
    header of 896 + n*65536 bytes), so a plausible safetensors start is ruled out first."""
    header_len = int.from_bytes(head[:8], "little")
    if len(head) == 9 and head[8:9] == b"{" and 8 + header_len <= size:
        return False
    return head.startswith(PICKLE_MAGICS)


def load_trusted_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A pickled state dict the user vouched for, read with torch.load(weights_only=True): tensors only, never code."""
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (torch raises UnpicklingError, RuntimeError, EOFError... for a bad pickle)
        raise CheckpointError(f"{path} refused even with --trust: it holds more than plain tensors ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(weights, dict) or not all(isinstance(value, torch.Tensor) for value in weights.values()):
        raise CheckpointError(f"{path} holds a {type(weights).__name__}, not a state dict of {what}")
    return weights
