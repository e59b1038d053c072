"""Draw samples from a trained generator and write them as a grid, single PNGs or arrays."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from gankit.data.npz import save_npz
from gankit.errors import GankitError
from gankit.report.plots import save_samples, to_uint8_images


@torch.no_grad()
def sample(generator: nn.Module, n: int, *, seed: int = 0, labels: Tensor | None = None, batch_size: int = 500) -> tuple[Tensor, Tensor | None]:
    """n samples on the CPU in G's output range, and their labels (cycled through the classes
    when G is conditional and no labels are given; None for an unconditional G)."""
    if n <= 0:
        raise GankitError(f"number of samples must be positive, got {n}")
    device = next(generator.parameters()).device
    rng = torch.Generator(device).manual_seed(seed)
    if labels is None and generator.num_classes:
        labels = torch.arange(n) % generator.num_classes
    was_training = generator.training
    generator.eval()
    chunks = []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        z = torch.randn(count, generator.z_dim, device=device, generator=rng)
        chunk_labels = labels[start : start + count].to(device) if labels is not None else None
        chunks.append(generator(z, chunk_labels).cpu())
    generator.train(was_training)
    return torch.cat(chunks), labels


def write_grid(samples: Tensor, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_samples(samples, path)
    return path


def write_pngs(samples: Tensor, directory: Path) -> list[Path]:
    """One PNG per image, named by index (sample-00000.png, ...)."""
    if samples.dim() != 4:
        raise GankitError("single PNGs need image samples; this generator makes 2-D points, use --npz or --grid")
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, pixels in enumerate(to_uint8_images(samples)):
        path = directory / f"sample-{index:05d}.png"
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)
        paths.append(path)
    return paths


def write_npz(samples: Tensor, labels: Tensor | None, path: Path) -> Path:
    """Images as uint8 arrays in the npz loader's format, so samples can be trained on again."""
    if samples.dim() != 4:
        raise GankitError("--npz writes images; this generator makes 2-D points")
    save_npz(path, to_uint8_images(samples).transpose(0, 3, 1, 2), None if labels is None else labels.numpy())
    return path

