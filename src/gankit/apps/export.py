"""Export a run's generator (EMA weights when present) as ONNX or TorchScript, batch size left open.

The file is the network alone: inputs `z` (N, z_dim) float32 [and `labels` (N,) int64 for a
conditional G], output `samples` (N, *sample_shape). What a caller needs to drive it (z_dim,
sample shape, class count, output range) travels inside: ONNX metadata_props, or the TorchScript
extra file `gankit.json`. Neither format is read with Python's pickle.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gankit.errors import GankitError
from gankit.files import atomic_write
from gankit.runs import open_checkpoint

FORMATS = ("onnx", "torchscript")
METADATA_FILE = "gankit.json"  # the TorchScript extra file holding the metadata


def export_generator(run_or_checkpoint: str | Path, fmt: str, out: str | Path, checkpoint: str = "last") -> tuple[Path, dict[str, Any]]:
    """Write the sampling generator of a run (or checkpoint file) to `out`; returns the path and the metadata written."""
    if fmt not in FORMATS:
        raise GankitError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    loaded = open_checkpoint(run_or_checkpoint, checkpoint)
    generator = loaded.generator.eval()
    metadata = describe(generator, step=loaded.state["step"], ema=loaded.has_ema)
    payload = (to_onnx if fmt == "onnx" else to_torchscript)(generator, metadata)
    out = Path(out)
    with atomic_write(out) as handle:
        handle.write(payload)
    return out, metadata


def describe(generator: nn.Module, **extra: Any) -> dict[str, Any]:
    """What a caller needs to feed the exported network and read its output."""
    images = len(generator.sample_shape) == 3
    return {
        "producer": "gankit",
        "inputs": ["z", "labels"] if generator.num_classes else ["z"],
        "z_dim": generator.z_dim,
        "sample_shape": list(generator.sample_shape),
        "num_classes": generator.num_classes,
        # images come out of a Tanh; 2-D toy points are in the data's own coordinates
        "output_range": [-1.0, 1.0] if images else None,
        "output": "images (N, C, H, W) in [-1, 1]" if images else "points (N, D)",
        **extra,
    }


def example_inputs(generator: nn.Module, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Inputs of the exported signature: (z,) or (z, labels). Batch 2, not 1, so no size-1 dimension gets specialized."""
    z = torch.zeros(batch, generator.z_dim)
    return (z, torch.arange(batch) % generator.num_classes) if generator.num_classes else (z,)


def to_torchscript(generator: nn.Module, metadata: dict[str, Any]) -> bytes:
    with torch.no_grad():
        traced = torch.jit.trace(generator, example_inputs(generator))
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={METADATA_FILE: json.dumps(metadata)})
    return buffer.getvalue()


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence what the ONNX exporter says about itself (skipped torchvision ops, deprecations inside torch):
    none of it concerns the user's generator, and it buried the one line that does."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def to_onnx(generator: nn.Module, metadata: dict[str, Any]) -> bytes:
    """Through torch.export (the dynamo exporter; the TorchScript-based one is deprecated), batch dynamic."""
    try:
        import onnxscript  # noqa: F401  (the exporter needs it; a clear line beats its ImportError)
    except ImportError:
        raise GankitError("ONNX export needs the export extra: pip install 'gankit[export]' (onnx, onnxscript, onnxruntime)") from None
    names = metadata["inputs"]
    batch = torch.export.Dim("batch")
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            generator,
            example_inputs(generator),
            dynamo=True,
            input_names=names,
            output_names=["samples"],
            dynamic_shapes={name: {0: batch} for name in names},
            verbose=False,
        )
    model = program.model_proto
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    return model.SerializeToString()
