"""2-D Gaussian mixtures: the classic mode-collapse tests, where every mode can be counted.

ring8: 8 modes on the unit circle at angles 2*pi*k/8, std 0.01.
grid25: 25 modes at (x, y) for x, y in -4, -2, 0, 2, 4, std 0.05.
"""

from __future__ import annotations

import math

import torch

from gankit.errors import DataError

TOY_STDS = {"ring8": 0.01, "grid25": 0.05}


def toy_modes(name: str) -> tuple[torch.Tensor, float]:
    """The (K, 2) float32 mode centers and the per-axis std of a toy mixture."""
    if name == "ring8":
        # k/8 for k < 8, not linspace(0, 2*pi, 8), whose last angle repeats the first
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        centers = torch.stack([angles.cos(), angles.sin()], dim=1)
    elif name == "grid25":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0], dtype=torch.float64)
        centers = torch.cartesian_prod(axis, axis)
    else:
        raise DataError(f"unknown toy dataset toy:{name}; known: {', '.join(f'toy:{known}' for known in TOY_STDS)}")
    return centers.float(), TOY_STDS[name]


def sample_toy(name: str, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, 2) float32 points and their (count,) int64 mode indices; modes drawn uniformly.

    The same seed gives the same points on every machine (a CPU generator).
    """
    centers, std = toy_modes(name)
    generator = torch.Generator().manual_seed(seed)
    modes = torch.randint(len(centers), (count,), generator=generator)
    noise = torch.randn(count, 2, generator=generator)
    return centers[modes] + std * noise, modes
