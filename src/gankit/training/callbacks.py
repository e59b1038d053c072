"""The run folder's outputs, written on the trainer's schedule: metrics.jsonl, evaluations, sample grids,
plots, progress, report.html and TensorBoard events (the writers live in report/; these time them)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from gankit.config import LOWER_IS_BETTER
from gankit.files import write_atomically
from gankit.metrics.suite import RunEvaluator
from gankit.report.html import write_report
from gankit.records import append_record, eval_record, fields, read_records, to_line, train_record
from gankit.report.plots import plot_losses, save_samples
from gankit.report.tensorboard import TensorBoardWriter
from gankit.training.checkpoint import load_checkpoint
from gankit.training.hooks import Callback
from gankit.training.trainer import Trainer


class MetricsLog(Callback):
    """One JSON object per log line; on resume, lines past the restored step are dropped."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_start(self, trainer: Trainer) -> None:
        kept = [r for r in read_records(self.path) if r["step"] <= trainer.step]
        write_atomically(self.path, "".join(map(to_line, kept)).encode())

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.write(train_record(record["step"], record["epoch"], fields(record)))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record made by gankit.records."""
        append_record(self.path, record)


class Evaluation(Callback):
    """Every eval.every_epochs epochs: score the sampling generator, log {"eval": ...} to metrics.jsonl,
    and keep checkpoints/best.safetensors by eval.best_metric."""

    def __init__(self, evaluate: RunEvaluator, log: MetricsLog, best_path: Path):
        self.evaluate = evaluate
        self.log = log
        self.best_path = best_path
        self.best: float | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        if self.best_path.exists():
            self.best = load_checkpoint(self.best_path)[1].get("best_value")

    def on_epoch_end(self, trainer: Trainer) -> None:
        settings = trainer.config.eval
        if trainer.epoch % settings.every_epochs:
            return
        result = self.evaluate(trainer.sampler, seed=trainer.config.train.seed)
        self.log.write(eval_record(trainer.step, trainer.epoch, result["metrics"], result["seconds"]))
        metric = settings.best_metric
        if metric is None:
            return
        value = float(result["metrics"][metric])
        if self.best is None or (value < self.best if metric in LOWER_IS_BETTER else value > self.best):
            self.best = value
            trainer.save_to(self.best_path, best_metric=metric, best_value=value)


class SampleGrids(Callback):
    """Samples from fixed noise after every epoch and at the end, so progress can be seen."""

    def __init__(self, directory: Path, modes: torch.Tensor | None = None):
        self.directory = directory
        self.modes = modes

    def on_epoch_end(self, trainer: Trainer) -> None:
        self._save(trainer, f"epoch-{trainer.epoch:03d}.png", f"epoch {trainer.epoch}")

    def on_train_end(self, trainer: Trainer) -> None:
        self._save(trainer, "final.png", f"step {trainer.step}")

    def _save(self, trainer: Trainer, name: str, title: str) -> None:
        save_samples(trainer.fixed_samples(), self.directory / name, self.modes, title)


class LossPlot(Callback):
    def __init__(self, metrics_path: Path, out_path: Path):
        self.metrics_path = metrics_path
        self.out_path = out_path

    def on_epoch_end(self, trainer: Trainer) -> None:
        plot_losses(self.metrics_path, self.out_path)

    on_train_end = on_epoch_end


class ProgressBar(Callback):
    """A bar with ETA and the latest losses on a terminal. When stderr is not one (CI, nohup, a log file) tqdm
    hides the bar, so with `enabled` None a one-line record is printed every `every_s` seconds instead."""

    every_s = 30.0

    def __init__(self, enabled: bool | None = None):
        self.disable = None if enabled is None else not enabled
        self.bar: tqdm | None = None
        self.lines = False

    def on_train_start(self, trainer: Trainer) -> None:
        self.bar = tqdm(total=trainer.end_step, initial=trainer.step, unit="step", disable=self.disable, dynamic_ncols=True)
        self.lines = self.disable is None and not sys.stderr.isatty()
        self.start = self.last_line = (time.monotonic(), trainer.step)

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.bar.update(record["step"] - self.bar.n)
        self.bar.set_postfix(epoch=record["epoch"], d_loss=f"{record['d_loss']:.3f}", g_loss=f"{record['g_loss']:.3f}", refresh=False)
        now = time.monotonic()
        if self.lines and now - self.last_line[0] >= self.every_s:
            self.last_line = (now, record["step"])
            print(self._line(trainer, record, now), file=sys.stderr, flush=True)

    def _line(self, trainer: Trainer, record: dict[str, Any], now: float) -> str:
        started, first_step = self.start
        done = record["step"] - first_step
        eta = (trainer.end_step - record["step"]) * (now - started) / done if done else float("nan")
        return (
            f"gankit: step {record['step']}/{trainer.end_step}, epoch {record['epoch']}, {record['images_per_s']:.0f} images/s, "
            f"d_loss {record['d_loss']:.3f}, g_loss {record['g_loss']:.3f}, ETA {_duration(eta)}"
        )

    def on_train_end(self, trainer: Trainer) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    if seconds != seconds:
        return "unknown"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


class HtmlReport(Callback):
    """Rewrites the run's report.html (atomically) after every epoch and when training ends, so a browser tab
    refreshed during training shows the run so far."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_train_end(self, trainer: Trainer) -> None:
        write_report(self.run_dir)

    on_epoch_end = on_train_end


class TensorBoardLog(Callback):
    """Each log line at once; after every epoch, the evaluations and warnings other callbacks wrote to
    metrics.jsonl since the last look, and the fixed-noise grid."""

    def __init__(self, log_dir: Path, metrics_path: Path):
        self.writer = TensorBoardWriter(log_dir)
        self.metrics_path = metrics_path
        self.lines_seen = 0

    def on_train_start(self, trainer: Trainer) -> None:
        self.lines_seen = len(read_records(self.metrics_path))  # a resumed run: those are in TensorBoard already

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.writer.train_record(record)

    def on_epoch_end(self, trainer: Trainer) -> None:
        records = read_records(self.metrics_path)
        self.writer.other_records(records[self.lines_seen :])
        self.lines_seen = len(records)
        self.writer.samples(trainer.fixed_samples(), trainer.step)

    def on_train_end(self, trainer: Trainer) -> None:
        self.writer.close()
