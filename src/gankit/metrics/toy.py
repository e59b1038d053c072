"""Mode counting for 2-D Gaussian mixtures (toy:ring8, toy:grid25), the standard definitions.

A sample is high-quality (HQ) when it lies within HQ_STDS (3) standard deviations, in
Euclidean distance, of its nearest mode center; for an isotropic 2-D Gaussian that holds
for 1 - exp(-9/2) = 98.9% of true samples. A mode is captured when at least one HQ sample
has it as its nearest mode. The project reports these on 2,500 samples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gankit.metrics.image import class_kl

HQ_STDS = 3.0


def toy_metrics(samples: Tensor, centers: Tensor, std: float) -> dict[str, float | int]:
    """Mode coverage of (N, 2) samples against (K, 2) mode centers of per-axis std `std`.

    modes_captured (of modes_total): modes nearest to at least one HQ sample.
    high_quality_fraction: fraction of all samples that are HQ.
    reverse_kl: KL(p_fake || uniform over the K modes) in nats, p_fake the histogram of the
    HQ samples' nearest modes (class_kl against equal counts). In this direction a missing
    mode needs no smoothing (0 log 0 = 0): the value stays finite and reaches log K when all
    HQ samples sit on one mode. With no HQ sample at all p_fake is undefined; it is reported
    as log K, the worst value, so a run can never look better by producing nothing usable.
    """
    return histogram_metrics(high_quality_histogram(samples, centers, std), len(samples))


def histogram_metrics(hist: Tensor, num_samples: int) -> dict[str, float | int]:
    """toy_metrics from the HQ histogram of `num_samples` samples (for callers that need the histogram too)."""
    reverse_kl = class_kl(hist, torch.ones(len(hist))) if hist.sum() else math.log(len(hist))
    return {
        "modes_captured": int((hist > 0).sum()),
        "modes_total": len(hist),
        "high_quality_fraction": float(hist.sum()) / num_samples,
        "reverse_kl": reverse_kl,
    }


def high_quality_histogram(samples: Tensor, centers: Tensor, std: float) -> Tensor:
    """(K,) count of HQ samples (within HQ_STDS std of their nearest center) per nearest mode."""
    distances = torch.cdist(samples.detach().cpu().double(), centers.cpu().double())
    nearest_distance, nearest_mode = distances.min(1)
    return torch.bincount(nearest_mode[nearest_distance <= HQ_STDS * std], minlength=len(centers))
