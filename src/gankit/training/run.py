"""Start or resume a training run in its folder: the one function behind `gankit train`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gankit.config import Config, apply_overrides, from_dict, load_config, read_yaml, to_yaml
from gankit.data import load_dataset
from gankit.errors import GankitError, TrainingDiverged
from gankit.files import RunPaths, write_atomically
from gankit.metrics.suite import RunEvaluator
from gankit.records import warning_record
from gankit.training import checkpoint as ckpt
from gankit.training.callbacks import Evaluation, HtmlReport, LossPlot, MetricsLog, ProgressBar, SampleGrids, TensorBoardLog
from gankit.training.distributed import World, leave, world_from_env
from gankit.training.hooks import Callback
from gankit.training.trainer import Trainer, resolve_device
from gankit.training.watchdog import warn, watchdog_callbacks


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    step: int
    checkpoint: Path
    samples: Path
    loss_plot: Path


def train(
    config: Config | str | Path | None = None,
    out_dir: str | Path | None = None,
    *,
    overrides: list[str] = (),
    resume: str | Path | None = None,
    max_steps: int | None = None,
    device: str = "auto",
    progress: bool | None = None,
) -> RunResult:
    """Train from a config (object, YAML path or preset name), or continue the run in `resume`.

    `max_steps` stops after that many steps in all (the run can be resumed later);
    `progress` None shows a bar only on a terminal. Under torchrun every process calls this and
    trains its shard; rank 0 alone writes the run folder.
    """
    world, device = world_from_env(device)
    try:
        return _train(config, out_dir, overrides, resume, max_steps, device, progress, world)
    finally:
        leave(world)


def _train(config, out_dir, overrides, resume, max_steps, device, progress, world: World) -> RunResult:
    if world.size > 1 and resume is None and out_dir is None:
        raise GankitError("under torchrun give the run folder with --out DIR, so every process writes to the same one")
    if resume is not None:
        paths = RunPaths(Path(resume))
        if not paths.config.is_file():
            raise GankitError(f"{paths.root} is not a run folder (no config.yaml); give the folder a previous `gankit train` wrote")
        config = from_dict(apply_overrides(read_yaml(paths.config), list(overrides)))
        last = ckpt.resolve_checkpoint(paths.root, "last")
    else:
        if not isinstance(config, Config):
            config = load_config(config, overrides)
        paths = RunPaths(Path(out_dir) if out_dir else Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        if ckpt.list_checkpoints(paths.checkpoints):
            raise GankitError(f"{paths.root} already holds a run; continue it with --resume {paths.root} or choose another --out")
        last = None
    if world.is_main:
        _prepare_folder(paths, config)
    world.barrier()
    dataset = load_dataset(config.data, config.train.seed)
    trainer = Trainer(config, dataset, resolve_device(device), world)
    if last is not None:
        trainer.restore(last)
    modes = dataset.structure.modes.centers if dataset.structure.modes else None
    log = MetricsLog(paths.metrics)
    callbacks = [
        log,
        SampleGrids(paths.samples, modes),
        LossPlot(paths.metrics, paths.loss_plot),
        ProgressBar(progress),
        HtmlReport(paths.root),
    ]
    if config.eval.every_epochs:
        callbacks.insert(1, Evaluation(RunEvaluator(config), log, paths.checkpoints / ckpt.BEST_NAME))
    first, last_callbacks = watchdog_callbacks(config, dataset, log)
    callbacks = first + callbacks + last_callbacks
    if config.train.tensorboard and world.is_main:
        callbacks.append(TensorBoardLog(paths.root / "tensorboard", paths.metrics))  # last: sees this epoch's evaluations and warnings
    if not world.is_main:
        callbacks = [c for c in callbacks if c.on_every_rank]
    trainer = _fit_with_rollbacks(trainer, paths, callbacks, max_steps, log, lambda: Trainer(config, dataset, trainer.device, world))
    return RunResult(paths.root, trainer.step, ckpt.resolve_checkpoint(paths.root), paths.samples / "final.png", paths.loss_plot)


def _prepare_folder(paths: RunPaths, config: Config) -> None:
    """Create the run folder, drop temp files of interrupted checkpoint writes, and save the resolved
    config, failing early if the folder is not writable."""
    try:
        for folder in (paths.root, paths.checkpoints, paths.samples):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GankitError(f"cannot create run folder {paths.root}: {err.strerror or err}; choose a writable --out") from None
    ckpt.remove_interrupted_writes(paths.checkpoints)
    write_atomically(paths.config, to_yaml(config).encode())


def _fit_with_rollbacks(trainer: Trainer, paths: RunPaths, callbacks: list[Callback], max_steps: int | None, log: MetricsLog, fresh: Callable[[], Trainer]) -> Trainer:
    """trainer.fit; when training diverges, roll back to the last checkpoint (`fresh()` when there is none yet),
    multiply every learning rate by train.divergence_lr_factor and go on, train.divergence_retries times at
    most, each logged. Returns the trainer that finished. A failed write to the run folder is one clear line."""
    settings = trainer.config.train
    rollbacks = 0
    while True:
        try:
            trainer.fit(paths.root, callbacks, max_steps)
            return trainer
        except TrainingDiverged as err:
            if not settings.divergence_retries:
                raise
            cause = str(err).split(";")[0]
            lr_g, lr_d = (opt.param_groups[0]["lr"] for opt in (trainer.opt_g, trainer.opt_d))
            if rollbacks == settings.divergence_retries:
                raise TrainingDiverged(
                    f"{cause}; gave up after {rollbacks} rollback(s) to the last good checkpoint, each multiplying the learning rates by "
                    f"train.divergence_lr_factor={settings.divergence_lr_factor:g} (last tried lr_g={lr_g:.3g}, lr_d={lr_d:.3g}). "
                    "The last good checkpoint is kept; add a stabilizer (stabilizers.spectral_norm=true, stabilizers.r1=10) or lower optim.lr_g/lr_d"
                ) from None
            rollbacks += 1
            trainer = _roll_back(trainer, paths, fresh, settings.divergence_lr_factor)
            message = (
                f"{cause}; rolled back to step {trainer.step} with lr_g={lr_g * settings.divergence_lr_factor:.3g}, "
                f"lr_d={lr_d * settings.divergence_lr_factor:.3g} (rollback {rollbacks} of train.divergence_retries={settings.divergence_retries})"
            )
            if trainer.world.is_main:  # every rank rolls back alike; one reports it
                warn(message)
                log.write(warning_record(trainer.step, trainer.epoch, "divergence", message, rollback=rollbacks))
        except OSError as err:
            raise GankitError(
                f"could not write {err.filename or paths.root}: {err.strerror or err}; the last checkpoint is intact: "
                f"free space or fix permissions, then continue with --resume {paths.root}"
            ) from None


def _roll_back(trainer: Trainer, paths: RunPaths, fresh: Callable[[], Trainer], lr_factor: float) -> Trainer:
    """The state of the last checkpoint (or of a fresh trainer) with the diverged trainer's learning rates times lr_factor.

    The rates are taken before restoring, so repeated rollbacks to one checkpoint compound; the
    checkpoints written afterwards carry them, so a --resume keeps them too."""
    rates = [[{key: group[key] * lr_factor for key in ("lr", "base_lr")} for group in opt.param_groups] for opt in (trainer.opt_g, trainer.opt_d)]
    found = ckpt.list_checkpoints(paths.checkpoints)
    if found:
        trainer.restore(found[-1])
    else:
        trainer = fresh()
    for opt, lowered in zip((trainer.opt_g, trainer.opt_d), rates):
        for group, lr in zip(opt.param_groups, lowered):
            group.update(lr)
    return trainer
