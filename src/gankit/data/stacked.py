"""Stacked MNIST: three random digits as the R, G and B channels, so 1000 modes (digit triples).

The mode-collapse benchmark of Metz et al. (Unrolled GAN), VEEGAN and PacGAN: a generator
that covers the data produces all 1000 triples about equally often.
"""

from __future__ import annotations

import torch


def stack_digits(images: torch.Tensor, labels: torch.Tensor, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, 3, H, W) uint8 stacks of three independently drawn images of (N, 1, H, W), and
    their (count,) labels 100 * d_red + 10 * d_green + d_blue."""
    picks = torch.randint(len(images), (count, 3), generator=torch.Generator().manual_seed(seed))
    stacks = images[picks.flatten(), 0].view(count, 3, *images.shape[-2:])
    digits = labels[picks]
    return stacks, digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]
