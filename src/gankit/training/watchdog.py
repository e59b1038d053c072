"""Watching a run for the two ways a GAN goes wrong without crashing: a loss that explodes, and mode collapse.

LossBound turns an exploding loss into TrainingDiverged, which the run answers like a NaN: roll
back to the last checkpoint with lower learning rates (training.run). ModeCollapseWatchdog
checks, every watchdog.every_epochs epochs, how much of the data's variety the sampling
generator still produces, and warns (stderr and a {"warning": "mode-collapse"} line in
metrics.jsonl) once a check has failed watchdog.patience times in a row; early training
looks collapsed too, so a single failed check says little.

The checks only read the generator, from their own noise, so a watched run trains exactly as
an unwatched one.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from gankit.config import Config, WatchdogConfig
from gankit.data import Dataset, Modes
from gankit.errors import TrainingDiverged
from gankit.metrics.evaluator import Evaluator, check_fits, load_evaluator, train_command_hint
from gankit.metrics.features import extract
from gankit.metrics.image_scoring import classifier_name
from gankit.metrics.toy import high_quality_histogram, histogram_metrics
from gankit.models.sampling import cycled_labels, eval_mode
from gankit.records import RECOVERED_SUFFIX, note_record, warning_record
from gankit.training.callbacks import MetricsLog
from gankit.training.hooks import Callback
from gankit.training.trainer import Trainer

COVERED_SHARE = 0.25  # a mode or class counts as covered with at least a quarter of its uniform share of the fakes
PROBE_SEED_OFFSET = 3  # the probe's noise: train.seed + 3, apart from the trainer's streams (+1, +2)
REMEDIES = (
    "stabilizers.r1=10, stabilizers.pack=2 (PacGAN), stabilizers.ema_decay=0.999, "
    "loss.name=wgan-gp or a lower optim.lr_g/optim.lr_d"
)


def warn(message: str, label: str = "warning") -> None:
    """A "gankit: LABEL: message" line on stderr (a warning unless told) that does not tear the progress bar."""
    tqdm.write(f"gankit: {label}: {message}", file=sys.stderr)


class LossBound(Callback):
    """Raise TrainingDiverged when a logged |d_loss| or |g_loss| exceeds train.max_abs_loss."""

    on_every_rank = True  # every process must stop (and roll back) alike

    def __init__(self, bound: float):
        self.bound = bound

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        for name in ("d_loss", "g_loss"):
            if abs(record[name]) > self.bound:
                raise TrainingDiverged(
                    f"training diverged by step {record['step']}: {name}={record[name]:.4g} exceeds train.max_abs_loss={self.bound:g}; "
                    "the last good checkpoint is kept. Lower optim.lr_g/lr_d or add a stabilizer (stabilizers.spectral_norm=true, stabilizers.r1=10)"
                )


class ToyProbe:
    """2-D toys: the fixed-noise samples (2,500) against the mixture's known modes. A mode counts as
    covered when it holds at least COVERED_SHARE of its uniform share of the samples that lie near
    some mode (within 3 std): collapse piles them onto a few modes, while a generator that is
    still blurry early in training keeps them spread over all."""

    def __init__(self, modes: Modes):
        self.centers, self.std = modes.centers, modes.std

    def __call__(self, trainer: Trainer) -> dict[str, Any]:
        samples = trainer.fixed_samples()
        near = high_quality_histogram(samples, self.centers, self.std)
        numbers = histogram_metrics(near, len(samples))
        covered = int((near >= max(COVERED_SHARE * int(near.sum()) / len(self.centers), 1)).sum())
        return numbers | {"modes_covered": covered, "coverage": covered / len(self.centers)}

    @staticmethod
    def describe(numbers: dict[str, Any]) -> str:
        return (
            f"{numbers['modes_covered']}/{numbers['modes_total']} modes covered ({numbers['modes_captured']} with any sample), "
            f"{numbers['high_quality_fraction']:.1%} of samples near a mode"
        )


class ImageProbe:
    """Images an evaluator can read: classes covered by fakes from fresh noise, and the spread of their
    features (mean pairwise distance) relative to the real images' spread, computed once."""

    def __init__(self, evaluator: Evaluator, data: Dataset, num_samples: int, seed: int):
        self.evaluator = evaluator
        self.num_samples = num_samples
        self.seed = seed
        count = min(num_samples, len(data.samples))  # the real images, unmirrored (data.xflip)
        order = torch.randperm(len(data.samples), generator=torch.Generator().manual_seed(seed))[:count]
        real_features, _ = extract(evaluator, data.samples[order].cpu())
        self.real_spread = _mean_pairwise_distance(real_features)

    @torch.no_grad()
    def __call__(self, trainer: Trainer) -> dict[str, Any]:
        sampler = trainer.sampler
        rng = torch.Generator(trainer.device).manual_seed(self.seed)
        z = torch.randn(self.num_samples, sampler.z_dim, device=trainer.device, generator=rng)
        with eval_mode(sampler):
            fakes = sampler(z, cycled_labels(self.num_samples, sampler.num_classes, trainer.device))
        features, logits = extract(self.evaluator, fakes)
        num_classes = logits.shape[1]
        counts = torch.bincount(logits.argmax(1), minlength=num_classes)
        covered = int((counts >= COVERED_SHARE * self.num_samples / num_classes).sum())
        diversity = _mean_pairwise_distance(features) / self.real_spread
        return {"classes_covered": covered, "num_classes": num_classes, "coverage": covered / num_classes, "diversity_ratio": diversity}

    @staticmethod
    def describe(numbers: dict[str, Any]) -> str:
        return (
            f"{numbers['classes_covered']}/{numbers['num_classes']} classes covered, "
            f"feature diversity {numbers['diversity_ratio']:.2f} of the real data's"
        )


def _mean_pairwise_distance(features: Tensor) -> float:
    return float(torch.pdist(features.double()).mean())


class ModeCollapseWatchdog(Callback):
    """Warn "mode collapse suspected" with the numbers and remedies after `patience` failed checks in a row,
    and say so when a later check passes again (early collapse that training outgrows is common)."""

    def __init__(self, settings: WatchdogConfig, probe: ToyProbe | ImageProbe, log: MetricsLog):
        self.settings = settings
        self.probe = probe
        self.log = log
        self.failed_checks = 0

    def on_train_start(self, trainer: Trainer) -> None:
        self.failed_checks = 0

    def on_epoch_end(self, trainer: Trainer) -> None:
        settings = self.settings
        if trainer.epoch % settings.every_epochs:
            return
        numbers = self.probe(trainer)
        too_narrow = numbers["coverage"] < settings.min_coverage or numbers.get("diversity_ratio", 1.0) < settings.min_diversity
        warned = self.failed_checks >= settings.patience
        self.failed_checks = self.failed_checks + 1 if too_narrow else 0
        where = f"at step {trainer.step} (epoch {trainer.epoch}): {self.probe.describe(numbers)}"
        if warned and not too_narrow:
            self._announce(trainer, "note", f"mode-collapse{RECOVERED_SUFFIX}", f"mode coverage recovered {where}", numbers)
        elif self.failed_checks == settings.patience:
            message = (
                f"mode collapse suspected {where}, "
                f"in {settings.patience} checks in a row (watchdog.min_coverage={settings.min_coverage:g}"
                + (f", watchdog.min_diversity={settings.min_diversity:g}" if "diversity_ratio" in numbers else "")
                + f"). Remedies: {REMEDIES}"
            )
            self._announce(trainer, "warning", "mode-collapse", message, numbers)

    def _announce(self, trainer: Trainer, label: str, event: str, message: str, numbers: dict[str, Any]) -> None:
        """One stderr line ("gankit: LABEL: ...") and the same message, with the numbers, in metrics.jsonl."""
        warn(message, label)
        record = note_record if label == "note" else warning_record
        self.log.write(record(trainer.step, trainer.epoch, event, message, **numbers))


def watchdog_callbacks(config: Config, data: Dataset, log: MetricsLog) -> tuple[list[Callback], list[Callback]]:
    """(callbacks that must see a log record before anything acts on it, callbacks that run after the others)."""
    before = [LossBound(config.train.max_abs_loss)] if config.train.max_abs_loss else []
    settings = config.watchdog
    if not settings.every_epochs:
        return before, []
    if data.structure.modes is not None:
        probe: ToyProbe | ImageProbe = ToyProbe(data.structure.modes)
    else:
        name = classifier_name(config.eval.evaluator, data)
        if name is None:
            warn(
                f"no evaluator reads {config.data.dataset}; the mode-collapse watchdog is off for this run. "
                f"Train one with `{train_command_hint(config.data)}` and set eval.evaluator to its file"
            )
            return before, []
        evaluator, info = load_evaluator(name)
        check_fits(info, data, config.data)
        probe = ImageProbe(evaluator, data, settings.num_samples, config.train.seed + PROBE_SEED_OFFSET)
    return before, [ModeCollapseWatchdog(settings, probe, log)]
