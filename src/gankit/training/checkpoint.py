"""Checkpoints: one safetensors file per step, tensors plus a JSON state, written atomically.

Nothing here unpickles: weights, optimizer moments and RNG states are tensors in the
safetensors body; step counters, optimizer hyper-parameters and shapes are JSON in its
metadata. A file is written under a temporary name, flushed to disk, then renamed, so a crash
leaves either the previous checkpoint set or the new one, never a broken file under a real name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors

from gankit.errors import CheckpointError
from gankit.files import UNREADABLE_SAFETENSORS, RunPaths, content_digest, looks_pickled, read_safetensors, write_atomically

STEP_FILE = re.compile(r"^step-(\d{8})\.safetensors$")
BEST_NAME = "best.safetensors"
STATE_KEY = "gankit_state"
DIGEST_KEY = "gankit_sha256"
EARLIER = "use an earlier checkpoint: --checkpoint STEP or PATH (train takes it with --resume RUN; `gankit info RUN` lists them)"


def step_path(directory: Path, step: int) -> Path:
    return directory / f"step-{step:08d}.safetensors"


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete step checkpoints, oldest first (temporary files are never listed)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if STEP_FILE.match(p.name))


def remove_interrupted_writes(directory: Path) -> None:
    """Delete the temp files of checkpoint writes a killed process left behind (never read, only clutter)."""
    if directory.is_dir():
        for temp in directory.glob(".*.part"):
            temp.unlink(missing_ok=True)


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    body = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    state_json = json.dumps(state)
    metadata = {STATE_KEY: state_json, DIGEST_KEY: content_digest(body, state_json)}
    kept = "the previous checkpoint is untouched" if list_checkpoints(path.parent) else "no checkpoint had been saved yet"
    write_atomically(path, save_safetensors(body, metadata=metadata), kept)


def prune_checkpoints(directory: Path, keep: int) -> None:
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint without unpickling; a truncated, tampered or foreign file is a CheckpointError."""
    try:
        payload = Path(path).read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from None
    if looks_pickled(payload[:9], len(payload)):
        raise CheckpointError(f"{path} is a pickle (torch.save) file, and unpickling runs whatever code its maker put in it; gankit checkpoints are safetensors")
    expected_size = _declared_size(payload)
    if expected_size is not None and len(payload) < expected_size:
        raise CheckpointError(f"{path} is truncated ({len(payload)} of {expected_size} bytes); {EARLIER}")
    try:
        tensors, metadata = read_safetensors(payload)
        state_json = metadata[STATE_KEY]
        state = json.loads(state_json)
    except UNREADABLE_SAFETENSORS as err:
        raise CheckpointError(f"{path} is not a complete gankit checkpoint ({type(err).__name__}: {err}); it may be truncated or from another tool") from None
    if content_digest(tensors, state_json) != metadata.get(DIGEST_KEY):
        raise CheckpointError(f"{path} fails its content hash: it was modified or corrupted after gankit wrote it; {EARLIER}")
    return {name: t.to(device) for name, t in tensors.items()}, state


def _declared_size(payload: bytes) -> int | None:
    """The file size a safetensors header promises (header plus the furthest tensor end), or None if unreadable."""
    try:
        header_len = int.from_bytes(payload[:8], "little")
        header = json.loads(payload[8 : 8 + header_len])
        ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return 8 + header_len + max(ends, default=0)


def resolve_checkpoint(run_dir: Path, which: str = "last") -> Path:
    """'last', 'best' or a path, turned into an existing checkpoint file."""
    directory = RunPaths(Path(run_dir)).checkpoints
    if which == "last":
        found = list_checkpoints(directory)
        if not found:
            raise CheckpointError(f"{run_dir} has no checkpoints; is it a gankit run folder that finished at least one save?")
        return found[-1]
    if which == "best":
        best = directory / BEST_NAME
        if not best.exists():
            raise CheckpointError(f"{run_dir} has no best checkpoint (one is kept only when training evaluates a chosen metric); use --checkpoint last")
        return best
    path = Path(which)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {which} not found; use last, best or a path to a .safetensors file")
    return path


def flatten_optimizer(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Split an optimizer's state_dict into tensors (per-parameter moments) and JSON (hyper-parameters)."""
    state_dict = optimizer.state_dict()
    tensors = {
        f"{prefix}.{index}.{key}": value
        for index, slots in state_dict["state"].items()
        for key, value in slots.items()
    }
    return tensors, state_dict["param_groups"]


def restore_optimizer(prefix: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], param_groups: list[dict[str, Any]]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            index, key = name[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in group.items()} for group in param_groups]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
