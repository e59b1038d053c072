"""Turns a run folder (or one checkpoint file) back into models,
without the dataset: a checkpoint carries its config, sample shape and class count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gankit.config import Config, from_dict
from gankit.errors import CheckpointError
from gankit.files import RunPaths, is_pickle, load_trusted_state_dict
from gankit.training import checkpoint as ckpt
from gankit.training.ema import calibrate
from gankit.training.tasks import TRAINERS


def _checkpoint_file(run_or_checkpoint: str | Path, which: str) -> Path:
    path = Path(run_or_checkpoint)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path} is neither a run folder nor a checkpoint file")
    return ckpt.resolve_checkpoint(path, which)


@dataclass
class LoadedRun:
    """What a checkpoint holds, rebuilt: the config, the models and the training state."""

    path: Path
    config: Config
    state: dict[str, Any]
    generator: nn.Module
    discriminator: nn.Module
    has_ema: bool


TASK_USES = {
    "generate": "sample, evaluate, export, augment or restore (by inversion) with it",
    "restore": "restore images with it: gankit restore RUN --input ...",
    "classify": "classify images with it: gankit classify RUN --input ..., and gankit eval RUN for its test accuracy",
}


def open_checkpoint(
    run_or_checkpoint: str | Path,
    checkpoint: str = "last",
    device: str | torch.device = "cpu",
    ema: bool = True,
    trust: bool = False,
    task: str | None = "generate",
) -> LoadedRun:
    """Rebuild G (the EMA weights when present and `ema`) and D from a run folder or checkpoint file.

    `task` refuses a run of another config task (a restorer where a GAN from noise is needed); None takes any.

    A pickled `checkpoint` (.pt/.pth from elsewhere) is refused unless `trust`; then it is read
    with torch.load(weights_only=True) as G weights for the run folder's architecture.
    """
    path = _checkpoint_file(run_or_checkpoint, checkpoint)
    if is_pickle(path):
        if not trust:
            raise CheckpointError(
                f"{path} is a pickle (torch.save) file; loading one can run code hidden in it. "
                "Use a gankit safetensors checkpoint, or pass --trust if you made it (it is then read with weights_only=True)"
            )
        return _with_trusted_generator(run_or_checkpoint, path, device)
    tensors, state = ckpt.load_checkpoint(path, device)
    if "config" not in state or "sample_shape" not in state:
        raise CheckpointError(f"{path} lacks the gankit state (config, sample shape); it was not written by gankit train")
    config = from_dict(state["config"])
    if task is not None and config.task != task:
        raise CheckpointError(f"{path} is a task={config.task} run, and this needs a task={task} run; {TASK_USES[config.task]}")
    generator, discriminator = TRAINERS[config.task].build_networks(config, tuple(state["sample_shape"]), state.get("num_classes"))
    has_ema = any(name.startswith("G_ema.") for name in tensors)
    g_prefix = "G_ema." if ema and has_ema else "G."
    try:
        generator.load_state_dict({k[len(g_prefix) :]: v for k, v in tensors.items() if k.startswith(g_prefix)})
        discriminator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("D.")})
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model in its own config ({str(err).splitlines()[0]})") from None
    if g_prefix == "G_ema." and not state.get("ema_batchnorm_calibrated"):
        calibrate(generator, config.train.seed)  # written before the EMA measured its own BatchNorm statistics
    return LoadedRun(path, config, state, generator.to(device).eval(), discriminator.to(device).eval(), has_ema)


def _with_trusted_generator(run_dir: str | Path, path: Path, device: str | torch.device) -> LoadedRun:
    """The run's models, with G's weights replaced by a user's pickled state dict (tensors only)."""
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"a pickled checkpoint needs a run folder for its architecture: gankit sample RUN_DIR --checkpoint {path} --trust")
    base = open_checkpoint(run_dir, "last", device, task=None)
    weights = load_trusted_state_dict(path, "G's weights")
    weights = {name.removeprefix("G."): value for name, value in weights.items() if not name.startswith(("D.", "G_ema."))}
    try:
        base.generator.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit this run's generator ({str(err).splitlines()[0]})") from None
    base.path = path
    return base


def load(run_or_checkpoint: str | Path, checkpoint: str = "last", device: str | torch.device = "cpu", ema: bool = True) -> nn.Module:
    """The trained generator, in eval mode: G(z[, labels]) -> samples in [-1, 1]; of a restorer run (task=restore)
    its U-Net, G(models.unet.restorer_inputs(observed, keep)) -> restored images in [-1, 1]."""
    return open_checkpoint(run_or_checkpoint, checkpoint, device, ema, task=None).generator


def info(run_dir: str | Path) -> dict[str, Any]:
    """A summary of a run folder: model, data, progress and its checkpoints."""
    paths = RunPaths(Path(run_dir))
    loaded = open_checkpoint(paths.root, task=None)
    config, state = loaded.config, loaded.state
    return {
        "run": str(paths.root),
        "name": config.name,
        "task": config.task,
        "model": config.model.name + (" (conditional)" if config.model.conditional else ""),
        "networks": f"{type(loaded.generator).__name__} + {type(loaded.discriminator).__name__}",  # a restorer's are not model.name's
        "loss": config.loss.name,
        "dataset": config.data.dataset,
        "sample_shape": state["sample_shape"],
        "num_classes": state.get("num_classes"),
        "step": state["step"],
        "epoch": state["epoch"],
        "epochs_planned": config.train.epochs,
        "ema": loaded.has_ema,
        "precision": f"{state.get('precision', 'fp32')} (asked: {config.train.precision})",
        "g_parameters": sum(p.numel() for p in loaded.generator.parameters()),
        "d_parameters": sum(p.numel() for p in loaded.discriminator.parameters()),
        "checkpoints": [p.name for p in ckpt.list_checkpoints(paths.checkpoints)],
        "last_checkpoint": str(loaded.path),
    }
