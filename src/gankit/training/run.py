"""Start or resume a training run in its folder: the one function behind `gankit train`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from gankit.config import Config, apply_overrides, from_dict, load_config, read_yaml, to_yaml
from gankit.data import load_dataset
from gankit.data.toy import toy_modes
from gankit.errors import GankitError
from gankit.runs import RunPaths
from gankit.training import checkpoint as ckpt
from gankit.apps.evaluate import RunEvaluator
from gankit.training.callbacks import Evaluation, LossPlot, MetricsLog, ProgressBar, SampleGrids
from gankit.training.trainer import Trainer, resolve_device


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
    `progress` None shows a bar only on a terminal.
    """
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
    _prepare_folder(paths, config)
    dataset = load_dataset(config.data, config.train.seed)
    trainer = Trainer(config, dataset, resolve_device(device))
    if last is not None:
        trainer.restore(last)
    modes = toy_modes(config.data.dataset.removeprefix("toy:"))[0] if config.data.dataset.startswith("toy:") else None
    log = MetricsLog(paths.metrics)
    callbacks = [
        log,
        SampleGrids(paths.samples, modes),
        LossPlot(paths.metrics, paths.loss_plot),
        ProgressBar(progress),
    ]
    if config.eval.every_epochs:
        callbacks.insert(1, Evaluation(RunEvaluator(config), log, paths.checkpoints / ckpt.BEST_NAME))
    trainer.fit(paths.root, callbacks, max_steps)
    return RunResult(paths.root, trainer.step, ckpt.resolve_checkpoint(paths.root), paths.samples / "final.png", paths.loss_plot)


def _prepare_folder(paths: RunPaths, config: Config) -> None:
    """Create the run folder and save the resolved config, failing early if it is not writable."""
    try:
        for folder in (paths.root, paths.checkpoints, paths.samples):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GankitError(f"cannot create run folder {paths.root}: {err.strerror or err}; choose a writable --out") from None
    ckpt.write_atomically(paths.config, to_yaml(config).encode())
