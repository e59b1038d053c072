"""Mode counting on Stacked MNIST: classify each channel with the MNIST evaluator, count digit triples."""

from __future__ import annotations

import torch
from torch import Tensor

from gankit.metrics.features import extract
from gankit.metrics.image import class_kl

MODES = 1000
UNSURE_BELOW = 0.9  # softmax probability under which a channel's digit counts as unsure (real MNIST: ~2% of channels)


def stacked_mnist_modes(samples: Tensor, evaluator: torch.nn.Module) -> dict[str, float | int]:
    """stacked_modes: distinct (red, green, blue) digit triples among (N, 3, 28, 28) samples in [-1, 1];
    stacked_kl: KL(triple histogram || uniform over 1000) in nats, the figure the PacGAN and VEEGAN tables report;
    stacked_digit_kl: the mean over the three channels of KL(digit histogram || uniform over 10), which tells
    a generator that favours some digits (it sums to about stacked_kl when the channels are independent)
    from one whose channels are correlated (stacked_kl far above it);
    stacked_unsure_fraction: the share of channels whose digit the evaluator reads with softmax probability below
    UNSURE_BELOW. Misread digits inflate both KLs, so a high share says the KL is limited by how legible the
    digits are rather than by which triples the generator covers."""
    if samples.dim() != 4 or samples.shape[1] != 3:
        raise ValueError(f"Stacked MNIST samples are (N, 3, 28, 28), got {tuple(samples.shape)}")
    channels = samples.transpose(0, 1).reshape(-1, 1, *samples.shape[-2:])
    _, logits = extract(evaluator, channels)
    confidence, digits = logits.softmax(1).max(1)
    digits = digits.view(3, -1)
    triples = digits[0] * 100 + digits[1] * 10 + digits[2]
    hist = torch.bincount(triples, minlength=MODES)
    digit_kl = sum(class_kl(torch.bincount(channel, minlength=10), torch.ones(10)) for channel in digits) / 3
    return {
        "stacked_modes": int((hist > 0).sum()),
        "stacked_kl": class_kl(hist, torch.ones(MODES)),
        "stacked_digit_kl": digit_kl,
        "stacked_unsure_fraction": float((confidence < UNSURE_BELOW).float().mean()),
    }
