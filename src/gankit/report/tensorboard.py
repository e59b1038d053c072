"""Optional TensorBoard logging (extra `tensorboard`): the scalars of metrics.jsonl and the
fixed-noise sample grids, on the same schedule, for people who watch runs in TensorBoard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gankit.errors import ConfigError
from gankit.report.plots import image_grid, read_metrics
from gankit.training.trainer import Callback, Trainer


class TensorBoardLog(Callback):
    """Each log line's numbers as `train/NAME`, each evaluation's as `eval/NAME`, each warning as
    text, and after every epoch the fixed-noise grid as an image, into `log_dir`."""

    def __init__(self, log_dir: Path, metrics_path: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.tensorboard=true needs the tensorboard package: pip install 'gankit[tensorboard]'") from None
        self.writer = SummaryWriter(str(log_dir))
        self.metrics_path = metrics_path
        self.lines_seen = 0

    def on_train_start(self, trainer: Trainer) -> None:
        self.lines_seen = len(read_metrics(self.metrics_path))  # a resumed run: those are in TensorBoard already

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self._scalars("train", record, record["step"])

    def on_epoch_end(self, trainer: Trainer) -> None:
        """Evaluations and warnings other callbacks wrote to metrics.jsonl since the last look, and the grid."""
        records = read_metrics(self.metrics_path)
        for record in records[self.lines_seen :]:
            if "eval" in record:
                self._scalars("eval", record["eval"], record["step"])
            if "warning" in record:
                self.writer.add_text(f"warning/{record['warning']}", record["message"], record["step"])
        self.lines_seen = len(records)
        samples = trainer.fixed_samples()
        if samples.dim() == 4:
            grid = np.asarray(image_grid(samples))  # (H, W) for grayscale, (H, W, 3) for RGB
            self.writer.add_image("samples", grid, trainer.step, dataformats="HWC" if grid.ndim == 3 else "HW")
        self.writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        self.writer.close()

    def _scalars(self, section: str, values: dict[str, Any], step: int) -> None:
        for name, value in values.items():
            if name not in ("step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{section}/{name}", value, step)
