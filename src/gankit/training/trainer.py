"""The training loop: D steps then a G step, repeated; logging, samples and plots hang off callbacks.

The trainer knows the objective only through `d_loss`/`g_loss` and the models only through
their contracts (G: z[, y] -> samples; D: samples[, y] -> scores). All randomness flows from
`train.seed` through generators whose state is checkpointed, and the data order of an epoch is
a function of (seed, epoch), so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gankit._version import __version__
from gankit.config import Config, OptimConfig
from gankit.data import Dataset, to_model_range
from gankit.data.dataset import POINTS_EVALUATION_SIZE
from gankit.diffaugment import AdaptiveProbability, diff_augment
from gankit.errors import CheckpointError, ConfigError, DataError, GankitError, TrainingDiverged, TrainingInterrupted
from gankit.files import RunPaths
from gankit.losses import build_objective
from gankit.records import ADA_FIELDS
from gankit.models import build_models
from gankit.models.sampling import cycled_labels, eval_mode
from gankit.regularizers import add_instance_noise, clip_weights, gradient_penalty, instance_noise_std, path_length_penalty, r1_penalty
from gankit.training import checkpoint as ckpt
from gankit.training.distributed import SINGLE, World, average, broadcast_module
from gankit.training.ema import EMA
from gankit.training.hooks import Callback
from gankit.training.precision import NetworkUpdate, autocast, effective_precision

STAT_NAMES = ("d_loss", "g_loss", "d_real", "d_fake")
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"  # one of the two settings NVIDIA documents as reproducible


def build_optimizer(params, lr: float, config: Config) -> torch.optim.Optimizer:
    """Adam (fused: one kernel per tensor instead of a dozen) or RMSprop (foreach).

    Each group keeps its undecayed rate as "base_lr" (saved with the checkpoint) for the decay schedule."""
    if config.optim.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(params, lr=lr, foreach=True)
    else:
        optimizer = torch.optim.Adam(params, lr=lr, betas=(config.optim.beta1, config.optim.beta2), fused=True)
    for group in optimizer.param_groups:
        group["base_lr"] = lr
    return optimizer


def lr_decay_factor(optim: OptimConfig, step: int, total_steps: int) -> float:
    """The multiplier of the base learning rates for update `step` (0-based): 1 until lr_decay_start, lr_decay_to at the last."""
    begin = optim.lr_decay_start * (total_steps - 1)
    if optim.lr_decay == "none" or step <= begin:
        return 1.0
    progress = min(1.0, (step - begin) / (total_steps - 1 - begin))
    shape = progress if optim.lr_decay == "linear" else (1 - math.cos(math.pi * progress)) / 2
    return 1.0 - (1.0 - optim.lr_decay_to) * shape


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not re.fullmatch(r"cuda:\d+", name):
        raise GankitError(f"unknown device {name[:40]!r}; use cpu, cuda, cuda:N or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GankitError(f"--device {name} was asked for but this torch build sees no CUDA device; use --device cpu or install the CUDA build (README)")
    return torch.device(name)


def use_deterministic_algorithms(enabled: bool, device: torch.device) -> None:
    """torch's deterministic mode. On CUDA, cuBLAS is deterministic only with a fixed workspace,
    which it reads from the environment when its first handle is made (torch raises otherwise), so
    it is set here, before the trainer's first matrix product on the device."""
    if enabled and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
    torch.use_deterministic_algorithms(enabled)


@dataclass
class _Window:
    """Running sums since the last log line, kept on the device so no step waits for the host."""

    sums: Tensor
    steps: int = 0
    images: int = 0
    started: float = field(default_factory=time.perf_counter)


class Trainer:
    """The training state and loop. With a `world` of several ranks (torchrun), this process trains
    on its shard of every batch and gradients are averaged across ranks (training/distributed.py)."""

    stop_requested = False  # set (by a SIGINT handler) to save a checkpoint after the current step and stop
    stat_names = STAT_NAMES  # what each log line averages; a subclass may log more

    def __init__(self, config: Config, dataset: Dataset, device: torch.device, world: World = SINGLE):
        self.config = config
        self.device = device
        self.world = world
        train, stab = config.train, config.stabilizers
        if train.batch_size % (world.size * stab.pack):
            raise GankitError(
                f"train.batch_size={train.batch_size} is the global batch: it must split evenly over {world.size} processes"
                + (f" in packs of {stab.pack}" if stab.pack > 1 else "")
            )
        self.local_batch = train.batch_size // world.size
        if stab.diffaugment and dataset.structure.kind == "points":
            raise ConfigError(f"stabilizers.diffaugment transforms images, and {dataset.name} holds 2-D points; unset stabilizers.diffaugment")
        if train.class_balance and dataset.labels is None:
            raise ConfigError(f"train.class_balance draws batches by class, and {dataset.name} has no labels; unset train.class_balance")
        use_deterministic_algorithms(train.deterministic, device)
        torch.manual_seed(train.seed)
        self.data = dataset.to(device)
        self.batches_per_epoch = len(dataset) // train.batch_size
        if self.batches_per_epoch == 0:
            raise DataError(f"dataset {dataset.name} has {len(dataset)} samples, fewer than train.batch_size={train.batch_size}; lower the batch size")
        self.total_steps = max(1, train.epochs * self.batches_per_epoch // stab.n_critic)
        self.G, self.D = (model.to(device) for model in self.build_networks(config, dataset.sample_shape, dataset.num_classes))
        broadcast_module(self.G, world)
        broadcast_module(self.D, world)
        self.objective = build_objective(config.loss.name, self.D.score_space, stab.label_smoothing)
        self.opt_g = build_optimizer(self.G.parameters(), config.optim.lr_g, config)
        self.opt_d = build_optimizer(self.D.parameters(), config.optim.lr_d, config)
        self.precision = effective_precision(train.precision, device, train.precision_fallback)
        self.update_g = NetworkUpdate(self.G, self.opt_g, self.precision, device, world)
        self.update_d = NetworkUpdate(self.D, self.opt_d, self.precision, device, world)
        # Real and fake go through D as one batch unless batch statistics would mix them.
        self.joint_d_pass = not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.D.modules())
        self.ema = EMA(self.G, stab.ema_decay, train.seed) if stab.ema_decay > 0 else None
        self.ada = None
        if stab.ada_target is not None:
            p_step = train.batch_size * stab.ada_interval / stab.ada_speed_images
            self.ada = AdaptiveProbability(stab.ada_target, stab.ada_interval, p_step, device)
        self.noise = torch.Generator(device).manual_seed(train.seed + 1)  # z: the same on every rank, each takes its slice
        self.perturb = self.noise if world.size == 1 else torch.Generator(device)  # instance noise, GP mixing: per rank
        self.step = 0
        self._seed_rank_streams()
        self.end_step = self.total_steps
        self._epoch_order: tuple[int, Tensor] | None = None
        self.fixed_z, self.fixed_labels = self._fixed_inputs()
        self._window = self._new_window()

    @staticmethod
    def build_networks(config: Config, sample_shape: tuple[int, ...], num_classes: int | None) -> tuple[nn.Module, nn.Module]:
        """(G, D) of this kind of training; runs.open_checkpoint rebuilds a checkpoint's networks through it too."""
        return build_models(config.model, config.stabilizers, sample_shape, num_classes)

    # --- what the callbacks read -------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """Completed passes over the data (in D batches)."""
        return self.step * self.config.stabilizers.n_critic // self.batches_per_epoch

    @property
    def sampler(self) -> nn.Module:
        """The generator to draw samples from: the EMA copy when there is one."""
        return self.ema.calibrated() if self.ema else self.G

    @torch.no_grad()
    def fixed_samples(self) -> Tensor:
        """Samples from the fixed noise, so pictures at different epochs are comparable."""
        self.update_g.sync_master_buffers()
        with eval_mode(self.sampler) as sampler:
            return sampler(self.fixed_z, self.fixed_labels)

    # --- one step ---------------------------------------------------------------------------
    def train_step(self) -> None:
        """n_critic D steps, then a G update on the last D step's fakes and g_steps - 1 more on fresh noise."""
        n_critic = self.config.stabilizers.n_critic
        if self.config.optim.lr_decay != "none":
            self._decay_learning_rates()
        for repeat in range(n_critic):
            batch_index = self.step * n_critic + repeat
            real, labels = self._real_batch(batch_index)
            last = repeat == n_critic - 1
            with torch.set_grad_enabled(last):
                fake = self._generate(real.shape[0], labels)
            d_loss, d_real, d_fake = self._d_step(real, fake.detach(), labels, batch_index)
        g_loss = self._g_step(fake, labels, regularize=self.step % self.config.stabilizers.path_length_every == 0)
        for _ in range(1, self.config.stabilizers.g_steps):
            g_loss = self._g_step(self._generate(real.shape[0], labels), labels)
        self._end_step([d_loss, g_loss, d_real, d_fake], n_critic * self.config.train.batch_size)  # images: global, all ranks

    def _end_step(self, stats: list[Tensor], images: int) -> None:
        """Count the step and add its stats (in `stat_names` order) and global image count to the log window."""
        self.step += 1
        self._window.sums += torch.stack(stats)
        self._window.steps += 1
        self._window.images += images

    def _decay_learning_rates(self) -> None:
        factor = lr_decay_factor(self.config.optim, self.step, self.total_steps)
        for optimizer in (self.opt_g, self.opt_d):
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor

    def _noise_std(self) -> float:
        stab = self.config.stabilizers
        return instance_noise_std(stab.instance_noise, stab.instance_noise_anneal_steps, self.step)

    def _critic(self, labels: Tensor | None):
        """D's scores as float32 under the step's precision, for the losses and input-gradient penalties."""

        def critic(x: Tensor) -> Tensor:
            with autocast(self.precision, self.device):
                return self.update_d(x, labels).float()

        return critic

    def _d_input(self, x: Tensor) -> Tensor:
        """What D sees of a batch, real or fake: DiffAugment (each op with ADA's probability p), then instance noise.

        Fakes go through the same differentiable ops in G's step, so G learns through them."""
        x = diff_augment(x, self.config.stabilizers.diffaugment, self.perturb, self.ada.p if self.ada else None)
        return add_instance_noise(x, self._noise_std(), self.perturb)

    def _d_step(self, real: Tensor, fake: Tensor, labels: Tensor | None, batch_index: int) -> tuple[Tensor, Tensor, Tensor]:
        """One D update on augmented inputs; GP and R1 see D's inputs as they are (augmented), as in StyleGAN2-ADA."""
        stab = self.config.stabilizers
        real_in, fake_in = self._d_input(real), self._d_input(fake)
        critic = self._critic(labels)
        if self.joint_d_pass:
            joint_labels = None if labels is None else torch.cat([labels, labels])
            real_scores, fake_scores = self._critic(joint_labels)(torch.cat([real_in, fake_in])).chunk(2)
        else:
            real_scores, fake_scores = critic(real_in), critic(fake_in)
        loss = self.objective.d_loss(real_scores, fake_scores)
        total = loss
        scale = self.update_d.loss_scale
        if stab.gradient_penalty:
            total = total + stab.gradient_penalty * gradient_penalty(critic, real_in, fake_in, self.perturb, scale)
        if stab.r1 and batch_index % stab.r1_every == 0:
            total = total + 0.5 * stab.r1 * stab.r1_every * r1_penalty(critic, real_in, scale)
        self.update_d.step(total)
        if self.ada:
            self._steer_augmentation(real_scores, batch_index)
        if stab.weight_clip:
            clip_weights(self.D, stab.weight_clip)
            self.update_d.sync_compute()
        read_out = self.objective.read_out
        return loss.detach(), read_out(real_scores.detach()).mean(), read_out(fake_scores.detach()).mean()

    def _steer_augmentation(self, real_scores: Tensor, batch_index: int) -> None:
        """ADA: count D's verdicts on the reals; every ada_interval D steps, move p (all ranks alike)."""
        self.ada.observe(self.objective.verdict(real_scores.detach()))
        if (batch_index + 1) % self.ada.interval == 0:
            self.ada.adjust(lambda sums: average(sums, self.world))

    def _g_step(self, fake: Tensor, labels: Tensor | None, regularize: bool = False) -> Tensor:
        """One G update; `regularize`: this is a lazy-regularization step for G's penalties."""
        stab = self.config.stabilizers
        self.update_d.compute.requires_grad_(False)
        loss = self.objective.g_loss(self._critic(labels)(self._d_input(fake)))
        loss = self._generator_objective(loss, fake)
        total = loss
        if regularize and stab.path_length:
            total = total + stab.path_length * stab.path_length_every * self._path_length_penalty(len(fake), labels)
        self._update_generator(total)
        return loss.detach()

    def _update_generator(self, loss: Tensor) -> None:
        """G's optimizer step on `loss`, computed with D frozen; then D is unfrozen and the EMA follows G."""
        self.update_g.step(loss)
        self.update_d.compute.requires_grad_(True)
        if self.ema:
            self.update_g.sync_master_buffers()
            self.ema.update(self.G, self.step)

    def _path_length_penalty(self, count: int, labels: Tensor | None) -> Tensor:
        """The path-length penalty on fresh noise; G (its registry entry declares a mapping network) keeps the running mean."""
        generator = self.update_g.compute
        with autocast(self.precision, self.device):
            w = generator.map(self._sample_z(count).to(self.update_g.input_dtype), labels)
            penalty, mean = path_length_penalty(generator.synthesize, w, generator.path_length_mean.value, generator=self.perturb)
        generator.path_length_mean.value.copy_(mean)
        return penalty

    def _generator_objective(self, adversarial: Tensor, fake: Tensor) -> Tensor:
        """G's loss from the adversarial term on `fake`: the term itself here; a subclass may weigh it and add more."""
        return adversarial

    def _generate(self, count: int, labels: Tensor | None) -> Tensor:
        """`count` fakes from fresh noise under the step's precision (with G's graph unless grad is off)."""
        with autocast(self.precision, self.device):
            return self.update_g(self._sample_z(count), labels)

    def _sample_z(self, count: int) -> Tensor:
        """z for this rank: its slice of what one process would draw for the whole batch."""
        z = torch.randn(count * self.world.size, self.G.z_dim, device=self.device, generator=self.noise)
        return z[self.world.rank * count : (self.world.rank + 1) * count]

    def _seed_rank_streams(self) -> None:
        """Under torchrun, dropout and perturbations differ by rank and continue from the step."""
        if self.world.size > 1:
            seed = (self.config.train.seed * 1_000_003 + self.step) * 4099 + self.world.rank
            torch.manual_seed(seed)
            self.perturb.manual_seed(seed + 1)

    def _real_batch(self, batch_index: int) -> tuple[Tensor, Tensor | None]:
        """Batch `batch_index` of the run: slice `position` of epoch `epoch`'s fixed order (a permutation, or a class-balanced draw)."""
        epoch, position = divmod(batch_index, self.batches_per_epoch)
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            order_rng = torch.Generator().manual_seed(self.config.train.seed * 1_000_003 + epoch)
            order = self.data.balanced_order if self.config.train.class_balance else self.data.permutation
            self._epoch_order = (epoch, order(order_rng))
        start = position * self.config.train.batch_size + self.world.rank * self.local_batch
        samples, labels = self.data.batch(self._epoch_order[1][start : start + self.local_batch], self.device)
        return to_model_range(samples), labels if self.G.num_classes else None

    def _fixed_inputs(self) -> tuple[Tensor, Tensor | None]:
        count = POINTS_EVALUATION_SIZE if self.data.structure.kind == "points" else self.config.train.sample_grid
        rng = torch.Generator(self.device).manual_seed(self.config.train.seed + 2)
        z = torch.randn(count, self.G.z_dim, device=self.device, generator=rng)
        return z, cycled_labels(count, self.G.num_classes, self.device)

    # --- the loop ----------------------------------------------------------------------------
    def fit(self, run_dir: Path, callbacks: list[Callback], max_steps: int | None = None) -> None:
        """Train until the configured epochs (or `max_steps` in all) are done, checkpointing on the way."""
        train = self.config.train
        self.end_step = end = self.total_steps if max_steps is None else min(self.total_steps, max_steps)
        for callback in callbacks:
            callback.on_train_start(self)
        self._window = self._new_window()
        while self.step < end:
            epoch_before = self.epoch
            self.train_step()
            epoch_done = self.epoch != epoch_before
            save_due = (train.checkpoint_every and self.step % train.checkpoint_every == 0) or (not train.checkpoint_every and epoch_done)
            finished = self.step == end
            if self.step % train.log_every == 0 or epoch_done or save_due or finished:
                record = self._close_window()
                for callback in callbacks:
                    callback.on_log(self, record)
            if epoch_done:
                for callback in callbacks:
                    callback.on_epoch_end(self)
            if save_due or finished or self.stop_requested:
                saved = self.save(RunPaths(run_dir).checkpoints)
            if self.stop_requested:
                raise TrainingInterrupted(f"interrupted at step {self.step}; saved {saved}; continue with: gankit train --resume {run_dir}")
        for callback in callbacks:
            callback.on_train_end(self)

    def _new_window(self) -> _Window:
        return _Window(sums=torch.zeros(len(self.stat_names), device=self.device))

    def _close_window(self) -> dict[str, Any]:
        """Average the window's stats (one host sync), refuse NaN/Inf, start a new window."""
        window = self._window
        means = average(window.sums / max(window.steps, 1), self.world)
        readings = [means, torch.stack([self.ada.p, self.ada.rt])] if self.ada else [means]
        values = torch.cat(readings).tolist()
        elapsed = time.perf_counter() - window.started
        record: dict[str, Any] = {"step": self.step, "epoch": self.epoch, **dict(zip(self.stat_names + ADA_FIELDS, values))}
        record["g_grad_norm"] = _grad_norm(self.G)
        record["d_grad_norm"] = _grad_norm(self.D)
        record["images_per_s"] = window.images / elapsed if elapsed > 0 else 0.0
        record["seconds"] = elapsed
        self._window = self._new_window()
        if not all(map(math.isfinite, values)):
            raise TrainingDiverged(
                f"training diverged by step {self.step}: d_loss={values[0]}, g_loss={values[1]}; the last good checkpoint is kept. "
                "Lower optim.lr_g/lr_d or add a stabilizer (stabilizers.spectral_norm=true, stabilizers.r1=10)"
            )
        return record

    # --- checkpoints -------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        """A step checkpoint in `directory`, keeping the newest train.keep_checkpoints."""
        path = ckpt.step_path(directory, self.step)
        if self.world.is_main:
            self.save_to(path)
            ckpt.prune_checkpoints(directory, self.config.train.keep_checkpoints)
        self.world.barrier()
        return path

    def save_to(self, path: Path, **extra_state: Any) -> None:
        """The full training state in one file; `extra_state` joins its JSON part."""
        path.parent.mkdir(parents=True, exist_ok=True)
        for name, module in (("G", self.G), ("D", self.D)):
            if not all(torch.isfinite(p).all() for p in module.parameters()):
                raise TrainingDiverged(f"{name}'s weights hold NaN/Inf at step {self.step}; not saving them, the last good checkpoint is kept")
        tensors, state = self._state()
        ckpt.save_checkpoint(path, tensors, state | extra_state)

    def _state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        self.update_g.sync_master_buffers()
        self.update_d.sync_master_buffers()
        tensors = {f"G.{k}": v for k, v in self.G.state_dict().items()}
        tensors |= {f"D.{k}": v for k, v in self.D.state_dict().items()}
        if self.ema:
            tensors |= {f"G_ema.{k}": v for k, v in self.ema.calibrated().state_dict().items()}
        opt_g_tensors, opt_g_groups = ckpt.flatten_optimizer("opt_g", self.opt_g)
        opt_d_tensors, opt_d_groups = ckpt.flatten_optimizer("opt_d", self.opt_d)
        tensors |= opt_g_tensors | opt_d_tensors
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.noise"] = self.noise.get_state()
        if self.ada:
            tensors |= {f"ada.{k}": v for k, v in self.ada.state().items()}
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "sample_shape": list(self.data.sample_shape),
            "num_classes": self.data.num_classes,
            "class_names": self.data.class_names,
            "config": self.config.model_dump(mode="json"),
            "opt_g_groups": opt_g_groups,
            "opt_d_groups": opt_d_groups,
            "precision": self.precision,
            "ema_batchnorm_calibrated": self.ema is not None,
            "gankit_version": __version__,
            "torch_version": torch.__version__,
        }
        return tensors, state

    def restore(self, path: Path) -> None:
        """Continue from a checkpoint: weights, EMA, optimizer moments, RNG states and the step."""
        tensors, state = ckpt.load_checkpoint(path, self.device)
        if list(state.get("sample_shape", [])) != list(self.data.sample_shape):
            raise CheckpointError(f"{path} was trained on samples of shape {state.get('sample_shape')}, but the data now has {list(self.data.sample_shape)}")
        try:
            self.G.load_state_dict(_section(tensors, "G"))
            self.D.load_state_dict(_section(tensors, "D"))
            if self.ema:
                self.ema.load_state_dict(_section(tensors, "G_ema"))
            ckpt.restore_optimizer("opt_g", self.opt_g, tensors, state["opt_g_groups"])
            ckpt.restore_optimizer("opt_d", self.opt_d, tensors, state["opt_d_groups"])
            for group in (*self.opt_g.param_groups, *self.opt_d.param_groups):
                group.setdefault("base_lr", group["lr"])  # checkpoints written before the decay schedule existed
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(f"{path} does not fit the configured models: {str(err).splitlines()[0]}") from None
        self.update_g.sync_compute(buffers=True)
        self.update_d.sync_compute(buffers=True)
        torch.set_rng_state(tensors["rng.torch"].cpu())
        self.noise.set_state(tensors["rng.noise"].cpu())
        if self.ada and "ada.p" in tensors:  # without it (ADA switched on at resume) p starts from 0
            self.ada.load_state(_section(tensors, "ada"))
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"].cpu(), self.device)
        self.step = int(state["step"])
        self._seed_rank_streams()


def _section(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    start = prefix + "."
    return {k[len(start) :]: v for k, v in tensors.items() if k.startswith(start)}


def _grad_norm(module: nn.Module) -> float:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
