"""Drawing from a generator: z (optionally truncated), class labels cycled or fixed, G in eval mode.

Truncation (the BigGAN trick): every z entry whose magnitude exceeds the threshold is drawn
again until none does, trading variety for typical-looking samples. Without it, z is the plain
standard normal the generator was trained on.

Jacobian truncation (Tanielian et al. 2020, "Learning disconnected manifolds: a no GAN's land"): a
continuous G maps the connected z space onto separate modes only by stretching the z regions between
them, and those regions are where ||dG/dz|| is largest. Dropping the fraction q of z with the largest
Jacobian norm removes the off-mode samples between modes. The threshold is the (1 - q) quantile of the
norm over CALIBRATION_LATENTS draws; each z above it is drawn again (with its label) until none is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from gankit.errors import GankitError

SAMPLE_BATCH = 500
BATCH_NORM_LATENTS = 512  # z draws that re-estimate BatchNorm statistics: a conv layer averages them over every position too
CALIBRATION_LATENTS = 2000
JACOBIAN_PROBES = 8  # z_dim up to this: the exact Frobenius norm from the basis directions; above: this many random ones
MAX_REDRAWS = 100


@contextmanager
def eval_mode(generator: nn.Module) -> Iterator[nn.Module]:
    """G in eval mode (batch norm uses its running statistics) for the block; its mode is restored after."""
    was_training = generator.training
    generator.eval()
    try:
        yield generator
    finally:
        generator.train(was_training)


def cycled_labels(count: int, num_classes: int | None, device: torch.device | str = "cpu") -> Tensor | None:
    """0, 1, ..., num_classes - 1, 0, 1, ... (count of them): every class equally often; None for an unconditional G."""
    return torch.arange(count, device=device) % num_classes if num_classes else None


def latents(count: int, z_dim: int, rng: torch.Generator, truncation: float | None = None) -> Tensor:
    """(count, z_dim) standard normal z on rng's device; with truncation, entries with |z| > truncation are redrawn."""
    z = torch.randn(count, z_dim, device=rng.device, generator=rng)
    if truncation is None:
        return z
    if truncation <= 0:
        raise GankitError(f"truncation must be positive (about 0.5 to 2; smaller is more typical, less varied), got {truncation}")
    while (outside := z.abs() > truncation).any():
        z[outside] = torch.randn(int(outside.sum()), device=rng.device, generator=rng)
    return z


def class_labels(generator: nn.Module, count: int, label: int | None = None) -> Tensor | None:
    """count labels for a conditional G: all `label`, or cycling through the classes; None for an unconditional G."""
    classes = generator.num_classes
    if label is None:
        return cycled_labels(count, classes)
    if not classes:
        raise GankitError("this generator is unconditional (trained without labels), so it takes no --label; drop it, or train with model.conditional=true")
    if not 0 <= label < classes:
        raise GankitError(f"label {label} is out of range: this generator knows classes 0 to {classes - 1}")
    return torch.full((count,), label, dtype=torch.long)


def sample(
    generator: nn.Module,
    n: int,
    *,
    seed: int = 0,
    labels: Tensor | None = None,
    truncation: float | None = None,
    jacobian_truncation: float = 0.0,
    batch_size: int = SAMPLE_BATCH,
) -> tuple[Tensor, Tensor | None]:
    """n samples on the CPU in G's output range, and their labels (cycled through the classes
    when G is conditional and no labels are given; None for an unconditional G)."""
    if n <= 0:
        raise GankitError(f"number of samples must be positive, got {n}")
    rng = torch.Generator(device_of(generator)).manual_seed(seed)
    labels = class_labels(generator, n) if labels is None else labels
    threshold = jacobian_threshold(generator, rng, truncation, jacobian_truncation)
    return draw(generator, n, rng, labels, truncation, batch_size, threshold), labels


def draw(
    generator: nn.Module,
    n: int,
    rng: torch.Generator,
    labels: Tensor | None = None,
    truncation: float | None = None,
    batch_size: int = SAMPLE_BATCH,
    threshold: float | None = None,
) -> Tensor:
    """n samples from noise drawn batch by batch from rng (so a caller can keep drawing from one stream);
    with a threshold (from jacobian_threshold), every z where G's Jacobian norm exceeds it is drawn again."""
    chunks = []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        chunk_labels = None if labels is None else labels[start : start + count]
        z = latents(count, generator.z_dim, rng, truncation)
        if threshold is not None:
            z = _redraw_steep(generator, z, chunk_labels, rng, truncation, threshold)
        chunks.append(render(generator, z, chunk_labels))
    return torch.cat(chunks)


def jacobian_norms(generator: nn.Module, z: Tensor, labels: Tensor | None, rng: torch.Generator) -> Tensor:
    """(N,) Frobenius norm of dG/dz at each z, by forward-mode derivatives along directions v:
    sum over the basis (exact) when z_dim <= JACOBIAN_PROBES, else the mean of ||J v||^2 over that many
    standard normal v (an unbiased estimate of ||J||_F^2)."""
    device = device_of(generator)
    z = z.to(device)
    labels = None if labels is None else labels.to(device)
    dim = z.shape[1]
    if dim <= JACOBIAN_PROBES:
        directions, scale = torch.eye(dim, device=device), 1.0
    else:
        directions, scale = torch.randn(JACOBIAN_PROBES, dim, device=rng.device, generator=rng).to(device), 1.0 / JACOBIAN_PROBES
    squared = torch.zeros(len(z), device=device)
    with eval_mode(generator), torch.no_grad():  # forward-mode derivatives need no backward graph
        for direction in directions:
            _, tangent = torch.func.jvp(lambda latent: generator(latent, labels), (z,), (direction.expand_as(z),))
            squared += tangent.flatten(1).pow(2).sum(1)
    return (squared * scale).sqrt().cpu()


def jacobian_threshold(generator: nn.Module, rng: torch.Generator, truncation: float | None, fraction: float) -> float | None:
    """The Jacobian norm above which `fraction` of z lies (the (1 - fraction) quantile over CALIBRATION_LATENTS
    draws from rng), measured once per generator so that every batch drawn after it drops the same z; None for 0."""
    if not 0 <= fraction < 0.5:
        raise GankitError(f"jacobian truncation is the fraction of z dropped, in [0, 0.5) (e.g. 0.05), got {fraction}")
    if not fraction:
        return None
    z = latents(CALIBRATION_LATENTS, generator.z_dim, rng, truncation)
    norms = torch.cat([
        jacobian_norms(generator, z[start : start + SAMPLE_BATCH], cycled_labels(min(SAMPLE_BATCH, CALIBRATION_LATENTS - start), generator.num_classes), rng)
        for start in range(0, CALIBRATION_LATENTS, SAMPLE_BATCH)
    ])
    return float(torch.quantile(norms.double(), 1 - fraction))


def _redraw_steep(generator: nn.Module, z: Tensor, labels: Tensor | None, rng: torch.Generator, truncation: float | None, threshold: float) -> Tensor:
    """z with every entry whose Jacobian norm exceeds threshold drawn again (keeping its label) until none does."""
    steep = torch.arange(len(z))
    for _ in range(MAX_REDRAWS):
        norms = jacobian_norms(generator, z[steep], None if labels is None else labels[steep], rng)
        steep = steep[norms > threshold]
        if len(steep) == 0:
            return z
        z[steep] = latents(len(steep), generator.z_dim, rng, truncation).to(z.device)
    raise GankitError(f"jacobian truncation: {len(steep)} latents still above the threshold after {MAX_REDRAWS} redraws; use a smaller fraction")


@torch.no_grad()
def render(generator: nn.Module, z: Tensor, labels: Tensor | None = None, batch_size: int = SAMPLE_BATCH) -> Tensor:
    """G(z, labels) in eval mode, batch by batch, on the CPU; G's train/eval mode is restored."""
    device = device_of(generator)
    with eval_mode(generator):
        return torch.cat([
            generator(z[start : start + batch_size].to(device), None if labels is None else labels[start : start + batch_size].to(device)).cpu()
            for start in range(0, len(z), batch_size)
        ])


@torch.no_grad()
def recalibrate_batch_norm(generator: nn.Module, rng: torch.Generator, count: int = BATCH_NORM_LATENTS, batch_size: int = 64) -> None:
    """Re-estimate G's BatchNorm running statistics from `count` draws of z (classes in turn), in place.

    Weights averaged over training (EMA) need this: the running statistics were gathered from the
    live weights' activations, and sampling the average with them shifts and rescales every layer.
    """
    norms = [module for module in generator.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    settings = [(module.momentum, module.training) for module in norms]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # a plain average over the batches below
        module.train()
    try:
        for start in range(0, count, batch_size):
            size = min(batch_size, count - start)
            generator(latents(size, generator.z_dim, rng), cycled_labels(size, generator.num_classes, rng.device))
    finally:
        for module, (momentum, training) in zip(norms, settings):
            module.momentum = momentum
            module.train(training)


def device_of(generator: nn.Module) -> torch.device:
    return next(generator.parameters()).device
