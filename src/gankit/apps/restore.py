"""Image restoration by GAN inversion: find latent codes whose images, degraded the way the
observation was, match it; then blend what G made into what was observed.

The world is modelled as y = M * (K x + s e): a Gaussian blur K, additive Gaussian noise of
std s and a mask M (1 = pixel known); any of the three may be absent. The operators
(gankit.degradations) each have the noiseless part A (what the fit compares through) and `corrupt`
(what the world does to a clean image, to simulate). docs/restore.md gives the objective.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor, nn

from gankit.data.folder import load_images
from gankit.data.forms import read_input_images
from gankit.data.npz import save_npz
from gankit.degradations import MAX_BLUR_SIGMA, Degradation, GaussianBlur, RestoreError, center_hole, psnr
from gankit.files import atomic_write
from gankit.losses import log_d
from gankit.models.sampling import eval_mode
from gankit.models.unet import paste_known, restorer_inputs
from gankit.data.images import to_uint8_images
from gankit.report.plots import image_grid
from gankit.runs import LoadedRun, open_checkpoint

MAX_CANDIDATES_PER_IMAGE = 1024  # restarts x classes tried for each image
MASK_HOLE_LEVEL = 128  # mask images: pixels at or above this grey level are missing (white = fill in)


def parse_mask(spec: str, count: int, height: int, width: int, rng: torch.Generator) -> Tensor:
    """keep (1 or count, 1, H, W) from 'center:SIZE' (a SIZE x SIZE hole in the middle),
    'random:FRACTION' (that fraction of pixels missing, drawn per image) or a mask image file
    (white = missing), read at the images' size."""
    kind, _, value = spec.partition(":")
    if kind == "center" and value:
        size = _number(value, int, spec)
        if not 1 <= size <= min(height, width):
            raise RestoreError(f"--mask center:SIZE needs 1 <= SIZE <= {min(height, width)} for {height}x{width} images, got {size}")
        return center_hole(size, height, width)
    if kind == "random" and value:
        fraction = _number(value, float, spec)
        if not 0 < fraction < 1:
            raise RestoreError(f"--mask random:FRACTION needs 0 < FRACTION < 1 (the share of pixels missing), got {fraction}")
        return (torch.rand(count, 1, height, width, generator=rng) >= fraction).float()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise RestoreError(f"--mask {spec}: not a mask image file, center:SIZE or random:FRACTION")
    pixels = torch.from_numpy(load_images([path], height, 1))
    return (pixels < MASK_HOLE_LEVEL).float()


def _number(text: str, kind: type, spec: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise RestoreError(f"--mask {spec}: '{text}' is not a{'n integer' if kind is int else ' number'}") from None


class InversionSettings(BaseModel):
    """How hard and how to search z. Defaults are tuned on Fashion-MNIST DCGAN runs (docs/restore.md)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(300, gt=0, le=100_000, description="Adam steps on z")
    restarts: int = Field(4, gt=0, le=256, description="random starts per image (per class for a conditional G); the best fit wins")
    lr: float = Field(0.05, gt=0, le=10, description="Adam learning rate on z, cosine-decayed to 0")
    prior_weight: float = Field(1.0, ge=0, description="weight of the chi prior on |z| (1 = the true prior)")
    adv_weight: float = Field(10.0, ge=0, description="weight of D's realism term -log D(G(z)) (the data term is hundreds of times larger; see docs/restore.md)")
    model_error: float = Field(0.1, gt=0, le=2, description="std of what G cannot reproduce, added to the noise std in the data weight")
    feather: float = Field(0.0, ge=0, le=MAX_BLUR_SIGMA, description="blur (px) of the mask's edge when pasting known pixels; 0 = a hard edge")
    batch_size: int = Field(64, gt=0, description="images per optimization batch (each with restarts x classes rows)")

    @classmethod
    def create(cls, **values: object) -> InversionSettings:
        """Validated settings; a bad value is a one-line RestoreError naming it."""
        try:
            return cls(**values)
        except ValidationError as err:
            first = err.errors()[0]
            raise RestoreError(f"restore setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


@dataclass
class Restoration:
    """All (N, ...) on the CPU. images: the blended result in [-1, 1]; generated: G(z) of the best
    restart; data_error: mean squared residual per observed value at the best start and the end."""

    images: Tensor
    generated: Tensor
    latents: Tensor
    labels: Tensor | None
    start_error: Tensor
    data_error: Tensor

    @classmethod
    def concat(cls, parts: list[Restoration]) -> Restoration:
        def joined(name: str) -> Tensor | None:
            values = [getattr(part, name) for part in parts]
            return None if values[0] is None else torch.cat(values)

        return cls(**{field.name: joined(field.name) for field in fields(cls)})


def restore(
    generator: nn.Module,
    observed: Tensor,
    degradation: Degradation,
    settings: InversionSettings | None = None,
    *,
    discriminator: nn.Module | None = None,
    labels: Tensor | None = None,
    seed: int = 0,
) -> Restoration:
    """Restore observed (N, C, H, W) images in [-1, 1] (unknown pixels anything) through G.

    A conditional G fits every class (restarts each) unless `labels` (N,) gives them. Without
    `discriminator`, or with a packed one (it judges groups, not images), there is no realism term.
    """
    settings = settings or InversionSettings()
    _check_inputs(generator, observed, degradation, labels)
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    critic = discriminator if discriminator is not None and getattr(discriminator, "pack", 1) == 1 and settings.adv_weight > 0 else None
    models = [m for m in (generator, critic) if m is not None]
    modes = [m.training for m in models]
    for model in models:
        model.eval()
    try:
        parts = []
        for start in range(0, len(observed), settings.batch_size):
            chunk = slice(start, start + settings.batch_size)
            chunk_labels = None if labels is None else labels[chunk]
            parts.append(_invert(generator, critic, observed[chunk].to(device), degradation.rows(chunk), settings, chunk_labels, rng))
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)
    return Restoration.concat(parts)


def _check_inputs(generator: nn.Module, observed: Tensor, degradation: Degradation, labels: Tensor | None) -> None:
    shape = tuple(getattr(generator, "sample_shape", ()))
    if len(shape) != 3:
        raise RestoreError(f"this generator makes samples of shape {shape}, not images; restore needs an image GAN")
    if observed.dim() != 4 or not observed.is_floating_point():
        raise RestoreError(f"images must be a float (N, C, H, W) tensor in [-1, 1], got {observed.dtype} {tuple(observed.shape)}")
    if observed.shape[1] != shape[0]:
        raise RestoreError(f"the images have {observed.shape[1]} channels but the generator makes {shape[0]}; convert them ({'grayscale' if shape[0] == 1 else 'RGB'})")
    if tuple(observed.shape[2:]) != shape[1:]:
        raise RestoreError(f"the images are {observed.shape[2]}x{observed.shape[3]} but the generator makes {shape[1]}x{shape[2]}; resize them to {shape[1]}x{shape[2]}")
    degradation.check_fits(observed)
    classes = generator.num_classes
    if labels is not None:
        if not classes:
            raise RestoreError("labels were given but this generator is unconditional; leave them out")
        if labels.shape != (len(observed),) or labels.min() < 0 or labels.max() >= classes:
            raise RestoreError(f"labels must be {len(observed)} class indices in [0, {classes})")


def _invert(
    generator: nn.Module,
    critic: nn.Module | None,
    observed: Tensor,
    degradation: Degradation,
    settings: InversionSettings,
    labels: Tensor | None,
    rng: torch.Generator,
) -> Restoration:
    """One batch: every image's candidates (restarts x classes) optimized together by Adam."""
    count, device = len(observed), observed.device
    candidate_labels = _candidate_labels(generator.num_classes, settings.restarts, labels, count)
    per_image = settings.restarts if candidate_labels is None else candidate_labels.shape[1]
    row_labels = None if candidate_labels is None else candidate_labels.reshape(-1).to(device)
    z = torch.randn(count * per_image, generator.z_dim, generator=rng).to(device).requires_grad_(True)
    target = observed * degradation.known(observed)  # unknown pixels zeroed, as A(G(z)) has them
    known_values = (degradation.known(observed).expand(count, observed.shape[1], -1, -1)).flatten(1).sum(1)
    data_weight = 0.5 / (degradation.noise_sigma**2 + settings.model_error**2)

    def data_term(images: Tensor) -> Tensor:
        fitted = degradation.forward(images.view(count, per_image, *images.shape[1:]))
        return (fitted - target[:, None]).pow(2).flatten(2).sum(2)  # (count, per_image)

    optimizer = torch.optim.Adam([z], lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps)
    with torch.no_grad():
        start_error = (data_term(generator(z, row_labels)).min(1).values / known_values).cpu()
    for _ in range(settings.steps):
        images = generator(z, row_labels)
        loss = data_weight * data_term(images).sum() + settings.prior_weight * chi_prior(z).sum()
        if critic is not None:
            loss = loss + settings.adv_weight * (-log_d(critic(images, row_labels), critic.score_space)).sum()
        (z.grad,) = torch.autograd.grad(loss, [z])
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        images = generator(z, row_labels)
        errors = data_term(images)
        best = errors.argmin(1) + torch.arange(count, device=device) * per_image
        generated = images[best]
        blended = blend(generated, observed, degradation, settings.feather)
        data_error = (errors.min(1).values / known_values).cpu()
        best_labels = None if row_labels is None else row_labels[best].cpu()
    return Restoration(blended.cpu(), generated.cpu(), z.detach()[best].cpu(), best_labels, start_error, data_error)


def _candidate_labels(classes: int | None, restarts: int, labels: Tensor | None, count: int) -> Tensor | None:
    """(count, candidates) labels of each image's rows, or None for an unconditional G."""
    if not classes:
        return None
    if labels is not None:
        return labels.cpu().view(count, 1).repeat(1, restarts)
    if classes * restarts > MAX_CANDIDATES_PER_IMAGE:
        raise RestoreError(
            f"this conditional generator has {classes} classes; trying each with {restarts} restarts is {classes * restarts} fits per image. "
            "Give the class (--label) or fewer restarts"
        )
    return torch.arange(classes).repeat(restarts).expand(count, -1)


def chi_prior(z: Tensor) -> Tensor:
    """-log chi_d(|z|) up to a constant, per row: |z|^2 / 2 - (d - 1) log |z|.

    z ~ N(0, I) lies on a shell of radius ~sqrt(d); this holds |z| there (the minimum is at
    sqrt(d - 1)) without pulling z towards 0 as the Gaussian log-density ||z||^2 / 2 would.
    """
    radius = z.norm(dim=1).clamp_min(1e-6)
    return 0.5 * radius**2 - (z.shape[1] - 1) * radius.log()


def blend(generated: Tensor, observed: Tensor, degradation: Degradation, feather: float = 0.0) -> Tensor:
    """Put the observation back where it can be trusted pixel by pixel.

    Blur mixes pixels, so a blurred observation is not pasted: the result is G(z). Otherwise
    known pixels move from G(z) towards y by w = t^2 / (t^2 + s^2), with s the noise std and t^2
    the per-image variance of G's own error (mean squared residual minus s^2): w = 1 (paste y)
    without noise, the MMSE weight of two Gaussian estimates with it. `feather` > 0 blurs the
    mask's edge so known pixels next to a hole blend into G's content.
    """
    if degradation.blur_sigma:
        return generated.clamp(-1, 1)
    known = degradation.known(observed)
    residual = (observed - generated) * known
    if degradation.noise_sigma:
        observed_count = (known.expand_as(observed)).flatten(1).sum(1)
        model_variance = (residual.pow(2).flatten(1).sum(1) / observed_count - degradation.noise_sigma**2).clamp_min(0)
        weight = (model_variance / (model_variance + degradation.noise_sigma**2)).view(-1, 1, 1, 1)
    else:
        weight = torch.ones(len(observed), 1, 1, 1, device=observed.device)
    trust = known * GaussianBlur(feather)(known) if feather else known
    return torch.lerp(generated, observed, trust * weight).clamp(-1, 1)  # exact y where the weight is 1


def write_outputs(
    out: Path, observed: Tensor, images: Tensor, labels: Tensor | None = None, truth: Tensor | None = None, strips: int = 16, summary: dict[str, object] | None = None
) -> dict[str, object]:
    """restored.npz, restored.png (grid), strips.png (observed | restored [| ground truth] per row)
    and summary.json (`summary`, the image count, and PSNR before and after when the ground truth is known), all written atomically."""
    save_npz(out / "restored.npz", to_uint8_images(images).transpose(0, 3, 1, 2), labels)
    write_png(out / "restored.png", image_grid(images))
    shown = slice(0, strips)
    columns = [observed[shown], images[shown]] + ([truth[shown]] if truth is not None else [])
    write_png(out / "strips.png", image_grid(torch.stack(columns, 1).flatten(0, 1), columns=len(columns)))
    summary = {"images": len(images), **(summary or {})}
    if truth is not None:
        summary |= {"psnr_observed": psnr(observed, truth).mean().item(), "psnr_restored": psnr(images, truth).mean().item()}
    with atomic_write(out / "summary.json") as file:
        file.write((json.dumps(summary, indent=2) + "\n").encode())
    return summary


def write_png(path: Path, picture: Image.Image) -> None:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    with atomic_write(path) as file:
        file.write(buffer.getvalue())


def restore_forward(restorer: nn.Module, observed: Tensor, degradation: Degradation, paste: bool = True, batch_size: int = 500) -> Tensor:
    """Restore observed (N, C, H, W) images in [-1, 1] with a trained restorer (task=restore's U-Net), one
    forward pass per batch; where `paste` and the observation is exact (a mask alone), known pixels are kept."""
    _check_inputs(restorer, observed, degradation, None)
    device = next(restorer.parameters()).device
    exact = torch.full((batch_size,), paste and degradation.exact, device=device)
    parts = []
    with torch.no_grad(), eval_mode(restorer):
        for start in range(0, len(observed), batch_size):
            chunk = slice(start, start + batch_size)
            inputs = restorer_inputs(observed[chunk].to(device), degradation.rows(chunk).known(observed))
            parts.append(paste_known(restorer(inputs), inputs, exact[: len(inputs)]).clamp(-1, 1).cpu())
    return torch.cat(parts)


@dataclass(frozen=True)
class Request:
    """What `gankit restore` was asked beyond the images: the inversion's settings and labels (None when not given)."""

    settings: InversionSettings | None
    labels: Tensor | None
    seed: int


def _by_inversion(loaded: LoadedRun, observed: Tensor, degradation: Degradation, request: Request) -> tuple[Tensor, Tensor | None, dict[str, object]]:
    result = restore(loaded.generator, observed, degradation, request.settings, discriminator=loaded.discriminator, labels=request.labels, seed=request.seed)
    return result.images, result.labels, {"method": "invert", "data_error_start": result.start_error.mean().item(), "data_error_end": result.data_error.mean().item()}


def _by_restorer(loaded: LoadedRun, observed: Tensor, degradation: Degradation, request: Request) -> tuple[Tensor, Tensor | None, dict[str, object]]:
    if request.settings is not None or request.labels is not None:
        raise RestoreError("search settings (--steps, --restarts, ...) and --label belong to --method invert; a restorer run needs none of them")
    start = time.perf_counter()
    images = restore_forward(loaded.generator, observed, degradation, loaded.config.restore.paste_known)
    return images, None, {"method": "forward", "images_per_s": len(images) / max(time.perf_counter() - start, 1e-9)}


METHODS = {"invert": _by_inversion, "forward": _by_restorer}  # how `gankit restore` restores, by --method
TASK_METHODS = {"generate": ("invert",), "restore": ("forward",)}  # what each kind of run can do; the first is its default


def restore_run(
    run_dir: str | Path,
    input_path: str | Path,
    out: str | Path,
    *,
    method: str | None = None,
    mask: str | None = None,
    noise: float = 0.0,
    blur: float = 0.0,
    degraded: bool = False,
    label: int | None = None,
    settings: InversionSettings | None = None,
    seed: int = 0,
    checkpoint: str = "last",
    device: str = "cpu",
    trust: bool = False,
    strips: int = 16,
) -> dict[str, object]:
    """`gankit restore`: read images, degrade them (unless `degraded`: they already are, and the mask marks
    what is missing), restore them (a generator run by inversion, a restorer run in one forward pass; `method`
    None picks the run's) and write_outputs to `out`."""
    loaded = open_checkpoint(run_dir, checkpoint, device=device, trust=trust, task=None)
    task = loaded.config.task
    method = method or TASK_METHODS[task][0]
    if method not in TASK_METHODS[task]:
        raise RestoreError(f"--method {method} does not apply to {run_dir}, a task={task} run; use --method {' or '.join(TASK_METHODS[task])} (or leave --method out)")
    shape = tuple(loaded.generator.sample_shape)
    if len(shape) != 3:
        raise RestoreError(f"{run_dir} is a GAN of 2-D points, not images; restore needs an image run")
    images, _ = read_input_images(Path(input_path), shape)
    rng = torch.Generator().manual_seed(seed)
    keep = parse_mask(mask, len(images), images.shape[2], images.shape[3], rng) if mask else None
    degradation = Degradation(keep, blur, noise)
    degradation.check_fits(images)
    observed = images * degradation.known(images) if degraded else degradation.corrupt(images, rng)
    labels = None if label is None else torch.full((len(images),), label)
    restored, restored_labels, summary = METHODS[method](loaded, observed, degradation, Request(settings, labels, seed))
    return write_outputs(Path(out), observed, restored, restored_labels, None if degraded else images, strips, summary)
