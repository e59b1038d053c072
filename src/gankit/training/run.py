"""Start or resume a training run in its folder: the one function behind `gankit train`."""

from __future__ import annotations

import fcntl
import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gankit.config import DATA_HANDLING_KEYS, Config, DataConfig, LossConfig, ModelConfig, OptimConfig, apply_overrides, from_dict, load_config, read_yaml, to_yaml
from gankit.data import load_dataset
from gankit.errors import CheckpointError, ConfigError, GankitError, TrainingDiverged
from gankit.files import RunPaths, write_atomically
from gankit.metrics.suite import RunEvaluator
from gankit.records import warning_record
from gankit.training import checkpoint as ckpt
from gankit.training.callbacks import Evaluation, HtmlReport, LossPlot, MetricsLog, ProgressBar, SampleGrids, TensorBoardLog
from gankit.training.distributed import World, leave, world_from_env
from gankit.training.hooks import Callback
from gankit.training.tasks import TRAINERS
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
    checkpoint: str | None = None,
    max_steps: int | None = None,
    device: str = "auto",
    progress: bool | None = None,
) -> RunResult:
    """Train from a config (object, YAML path or preset name), or continue the run in `resume`.

    `checkpoint` (with `resume`: a step number or path) continues from an earlier checkpoint than the newest;
    `max_steps` stops after that many steps in all (the run can be resumed later);
    `progress` None shows a bar only on a terminal. Under torchrun every process calls this and
    trains its shard; rank 0 alone writes the run folder.
    """
    world, device = world_from_env(device)
    try:
        return _train(config, out_dir, overrides, resume, max_steps, device, progress, world, checkpoint)
    finally:
        leave(world)


def _train(config, out_dir, overrides, resume, max_steps, device, progress, world: World, checkpoint=None) -> RunResult:
    if world.size > 1 and resume is None and out_dir is None:
        raise GankitError("under torchrun give the run folder with --out DIR, so every process writes to the same one")
    if checkpoint is not None and resume is None:
        raise GankitError("--checkpoint picks where a resumed run continues from; give it with --resume RUN_DIR")
    saved = None
    if resume is not None:
        paths, saved, config = _resumed_config(Path(resume), overrides)
    else:
        if not isinstance(config, Config):
            config = load_config(config, overrides)
        paths = RunPaths(Path(out_dir) if out_dir else Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    with _locked_run_folder(paths.root, world):
        start = _resume_checkpoint(paths.root, checkpoint) if saved else None
        if saved is None and ckpt.list_checkpoints(paths.checkpoints):
            raise GankitError(f"{paths.root} already holds a run; continue it with --resume {paths.root} or choose another --out")
        dataset = load_dataset(config.data, config.train.seed)
        trainer = TRAINERS[config.task](config, dataset, resolve_device(device), world)
        if start is not None:
            trainer.restore(start)
            _apply_optimizer_changes(trainer, saved.optim)
        if world.is_main:
            _prepare_folder(paths, config, start)
        world.barrier()
        return _fit_run(trainer, paths, dataset, max_steps, progress)


def _resumed_config(run_dir: Path, overrides: list[str]) -> tuple[RunPaths, Config, Config]:
    """The run's paths, its saved config, and that config with the overrides applied (refused if they cannot apply)."""
    paths = RunPaths(run_dir)
    if not paths.config.is_file():
        raise GankitError(f"{paths.root} is not a run folder (no config.yaml); give the folder a previous `gankit train` wrote")
    saved = from_dict(read_yaml(paths.config))
    config = from_dict(apply_overrides(read_yaml(paths.config), list(overrides)))
    _refuse_fixed_changes(saved, config, paths.root)
    return paths, saved, config


def _fit_run(trainer: Trainer, paths: RunPaths, dataset, max_steps: int | None, progress: bool | None) -> RunResult:
    config, world = trainer.config, trainer.world
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
    trainer = _fit_with_rollbacks(trainer, paths, callbacks, max_steps, log, lambda: TRAINERS[config.task](config, dataset, trainer.device, world))
    return RunResult(paths.root, trainer.step, ckpt.resolve_checkpoint(paths.root), paths.samples / "final.png", paths.loss_plot)


FIXED_ON_RESUME = (
    "task",
    *(f"model.{key}" for key in ModelConfig.model_fields),
    *(f"loss.{key}" for key in LossConfig.model_fields),
    *(f"data.{key}" for key in DataConfig.model_fields if key not in DATA_HANDLING_KEYS),
    "optim.optimizer", "stabilizers.spectral_norm", "stabilizers.ema_decay", "stabilizers.pack", "train.batch_size",
)


def _refuse_fixed_changes(saved: Config, wanted: Config, run_dir: Path) -> None:
    """A resumed run continues the checkpoint's models, data and optimizer kind; an override that would change
    them cannot apply (the weights would not load, or would load into something else), so it is refused up front."""
    before, after = saved.model_dump(mode="json"), wanted.model_dump(mode="json")
    for key in FIXED_ON_RESUME:
        old, new = (functools.reduce(dict.__getitem__, key.split("."), dump) for dump in (before, after))
        if old != new:
            raise ConfigError(
                f"{key} cannot change when resuming (the checkpoint was trained with {key}={old}); "
                f"start a new run instead: gankit train --config {run_dir}/config.yaml {key}={new} --out NEW_DIR"
            )


def _apply_optimizer_changes(trainer: Trainer, saved: OptimConfig) -> None:
    """Learning rates and betas given as overrides on --resume replace those restored from the checkpoint;
    unchanged ones keep the checkpoint's (which may have been lowered by divergence rollbacks)."""
    wanted = trainer.config.optim
    for optimizer, key in ((trainer.opt_g, "lr_g"), (trainer.opt_d, "lr_d")):
        if getattr(wanted, key) != getattr(saved, key):
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] = getattr(wanted, key)
    if (wanted.beta1, wanted.beta2) != (saved.beta1, saved.beta2):
        for group in (*trainer.opt_g.param_groups, *trainer.opt_d.param_groups):
            group["betas"] = (wanted.beta1, wanted.beta2)


def _resume_checkpoint(run_dir: Path, which: str | None) -> Path:
    """The checkpoint a resume starts from: the newest, a step number, or a path."""
    if which is not None and which.isdigit():
        path = ckpt.step_path(run_dir / "checkpoints", int(which))
        if not path.is_file():
            steps = ", ".join(str(int(p.name[5:13])) for p in ckpt.list_checkpoints(run_dir / "checkpoints")) or "none"
            raise CheckpointError(f"{run_dir} has no checkpoint of step {which}; its checkpoints are at steps: {steps}")
        return path
    return ckpt.resolve_checkpoint(run_dir, which or "last")


@contextmanager
def _locked_run_folder(root: Path, world: World) -> Iterator[None]:
    """Hold an exclusive lock on the run folder while training, so a second `gankit train` (or a --resume) on it
    stops instead of writing a second timeline beside the first. Folders made here and still empty when
    training fails to start are removed again."""
    if not world.is_main:
        yield
        return
    made = [folder for folder in (root, *root.parents) if not folder.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = os.open(root, os.O_RDONLY)
    except OSError as err:
        raise GankitError(f"cannot create run folder {root}: {err.strerror or err}; choose a writable --out") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GankitError(f"{root} is in use by another `gankit train` (its folder is locked); wait for it to end or stop it, or choose another --out") from None
        yield
    except BaseException:
        _remove_empty(made)
        raise
    finally:
        os.close(handle)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _prepare_folder(paths: RunPaths, config: Config, start: Path | None) -> None:
    """Create the run's subfolders, drop temp files of interrupted checkpoint writes, set aside checkpoints newer
    than the one a resume starts from, and save the resolved config, failing early if the folder is not writable."""
    try:
        for folder in (paths.checkpoints, paths.samples):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GankitError(f"cannot create run folder {paths.root}: {err.strerror or err}; choose a writable --out") from None
    ckpt.remove_interrupted_writes(paths.checkpoints)
    if start is not None:
        _set_aside_later_checkpoints(paths, start)
    write_atomically(paths.config, to_yaml(config).encode())


def _set_aside_later_checkpoints(paths: RunPaths, start: Path) -> None:
    """Checkpoints after the one a resume starts from belong to the abandoned timeline: they move to
    checkpoints/superseded/ (kept, never listed), so the resumed run's checkpoints are the newest again."""
    later = [path for path in ckpt.list_checkpoints(paths.checkpoints) if path.name > start.name]
    if later:
        (paths.checkpoints / "superseded").mkdir(exist_ok=True)
    for path in later:
        path.replace(paths.checkpoints / "superseded" / path.name)


def _fit_with_rollbacks(trainer: Trainer, paths: RunPaths, callbacks: list[Callback], max_steps: int | None, log: MetricsLog, fresh: Callable[[], Trainer]) -> Trainer:
    """trainer.fit; when training diverges, roll back to the last checkpoint (`fresh()` when there is none yet),
    multiply every learning rate by train.divergence_lr_factor and go on, train.divergence_retries times at
    most, each logged. Returns the trainer that finished. A failed write to the run folder is one clear line."""
    settings = trainer.config.train
    rollbacks = 0
    while True:
        try:
            with _checkpoint_on_interrupt(trainer):
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
            kept = "the last checkpoint is intact" if ckpt.list_checkpoints(paths.checkpoints) else "no checkpoint had been saved yet"
            raise GankitError(
                f"could not write {err.filename or paths.root}: {err.strerror or err}; {kept}: "
                f"free space or fix permissions, then continue with --resume {paths.root}"
            ) from None


@contextmanager
def _checkpoint_on_interrupt(trainer: Trainer) -> Iterator[None]:
    """While training in one process, Ctrl-C (SIGINT) asks the trainer to save a checkpoint after the current step
    and stop; a second Ctrl-C interrupts at once."""
    if trainer.world.size > 1 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum, frame) -> None:
        trainer.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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
