"""Drawing from a generator: z (optionally truncated), class labels cycled or fixed, G in eval mode.

Truncation (the BigGAN trick): every z entry whose magnitude exceeds the threshold is drawn
again until none does, trading variety for typical-looking samples. Without it, z is the plain
standard normal the generator was trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from gankit.errors import GankitError

SAMPLE_BATCH = 500


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
    batch_size: int = SAMPLE_BATCH,
) -> tuple[Tensor, Tensor | None]:
    """n samples on the CPU in G's output range, and their labels (cycled through the classes
    when G is conditional and no labels are given; None for an unconditional G)."""
    if n <= 0:
        raise GankitError(f"number of samples must be positive, got {n}")
    rng = torch.Generator(device_of(generator)).manual_seed(seed)
    labels = class_labels(generator, n) if labels is None else labels
    return draw(generator, n, rng, labels, truncation, batch_size), labels


@torch.no_grad()
def draw(
    generator: nn.Module, n: int, rng: torch.Generator, labels: Tensor | None = None, truncation: float | None = None, batch_size: int = SAMPLE_BATCH
) -> Tensor:
    """n samples from noise drawn batch by batch from rng (so a caller can keep drawing from one stream)."""
    chunks = []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        z = latents(count, generator.z_dim, rng, truncation)
        chunks.append(render(generator, z, None if labels is None else labels[start : start + count]))
    return torch.cat(chunks)


@torch.no_grad()
def render(generator: nn.Module, z: Tensor, labels: Tensor | None = None, batch_size: int = SAMPLE_BATCH) -> Tensor:
    """G(z, labels) in eval mode, batch by batch, on the CPU; G's train/eval mode is restored."""
    device = device_of(generator)
    with eval_mode(generator):
        return torch.cat([
            generator(z[start : start + batch_size].to(device), None if labels is None else labels[start : start + batch_size].to(device)).cpu()
            for start in range(0, len(z), batch_size)
        ])


def device_of(generator: nn.Module) -> torch.device:
    return next(generator.parameters()).device
