"""Optional TensorBoard logging (extra `tensorboard`): metrics.jsonl's numbers and the sample grids,
for people who watch runs in TensorBoard. training.callbacks.TensorBoardLog calls it on the trainer's schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gankit.errors import ConfigError
from gankit.records import fields, kind_of
from gankit.report.plots import image_grid


class TensorBoardWriter:
    """Log lines' numbers as `train/NAME`, evaluations' as `eval/NAME`, warnings as text, grids as images, into `log_dir`."""

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.tensorboard=true needs the tensorboard package: pip install 'gankit[tensorboard]'") from None
        self.writer = SummaryWriter(str(log_dir))

    def train_record(self, record: dict[str, Any]) -> None:
        self._scalars("train", fields(record), record["step"])

    def other_records(self, records: list[dict[str, Any]]) -> None:
        """Evaluations and warnings, as other callbacks wrote them to metrics.jsonl."""
        for record in records:
            if kind_of(record) == "eval":
                self._scalars("eval", record["eval"], record["step"])
            if kind_of(record) in ("warning", "note"):
                self.writer.add_text(f"warning/{record['warning']}", record["message"], record["step"])

    def samples(self, samples: torch.Tensor, step: int) -> None:
        """An image grid of (N, C, H, W) samples; 2-D points are not drawn here."""
        if samples.dim() == 4:
            grid = np.asarray(image_grid(samples))  # (H, W) for grayscale, (H, W, 3) for RGB
            self.writer.add_image("samples", grid, step, dataformats="HWC" if grid.ndim == 3 else "HW")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def _scalars(self, section: str, values: dict[str, Any], step: int) -> None:
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{section}/{name}", value, step)
