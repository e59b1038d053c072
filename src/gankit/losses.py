"""Adversarial objectives as pure functions of the discriminator's scores.

An objective is a pair: ``d_loss(real_scores, fake_scores)`` and ``g_loss(fake_scores)``,
each returning a scalar to minimize. Scores are D's raw outputs (logits); the BCE family
also reads probabilities, for a D that ends in Sigmoid like the reference network, which is
how the reference preset reproduces the original networks exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

ScoreSpace = str  # "logits" | "probabilities"


def log_d(scores: Tensor, space: ScoreSpace) -> Tensor:
    """log D(x). Probabilities go through nn.BCELoss's kernel: its log is clamped at -100 and its
    gradient stays finite when D outputs exactly 0 or 1, where log(p).clamp() would give NaN."""
    if space == "logits":
        return F.logsigmoid(scores)
    return -F.binary_cross_entropy(scores, torch.ones_like(scores), reduction="none")


def log_one_minus_d(scores: Tensor, space: ScoreSpace) -> Tensor:
    """log(1 - D(x)), computed without forming 1 - sigmoid (which rounds to 0) for logits."""
    if space == "logits":
        return F.logsigmoid(-scores)
    return -F.binary_cross_entropy(scores, torch.zeros_like(scores), reduction="none")


def bce_d_loss(real: Tensor, fake: Tensor, space: ScoreSpace = "logits", real_target: float = 1.0) -> Tensor:
    """-E[t log D(x) + (1-t) log(1-D(x))] - E[log(1-D(G(z)))]: D's side of V(D, G); t < 1 is one-sided label smoothing."""
    real_term = real_target * log_d(real, space) + (1 - real_target) * log_one_minus_d(real, space)
    return -real_term.mean() - log_one_minus_d(fake, space).mean()


def minimax_g_loss(fake: Tensor, space: ScoreSpace = "logits") -> Tensor:
    """E[log(1 - D(G(z)))]: the literal (saturating) minimax objective for G."""
    return log_one_minus_d(fake, space).mean()


def non_saturating_g_loss(fake: Tensor, space: ScoreSpace = "logits") -> Tensor:
    """-E[log D(G(z))]: same fixed point as minimax, but strong gradients while D wins."""
    return -log_d(fake, space).mean()


def lsgan_d_loss(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """1/2 E[(D(x) - a)^2] + 1/2 E[D(G(z))^2] with the 0-1 coding of Mao et al. (a = 1 unless smoothed)."""
    return 0.5 * (real - real_target).pow(2).mean() + 0.5 * fake.pow(2).mean()


def lsgan_g_loss(fake: Tensor) -> Tensor:
    return 0.5 * (fake - 1).pow(2).mean()


def wasserstein_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """E[D(G(z))] - E[D(x)]: minus the critic's estimate of the Wasserstein-1 distance."""
    return fake.mean() - real.mean()


def wasserstein_g_loss(fake: Tensor) -> Tensor:
    return -fake.mean()


def hinge_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]: the SNGAN/BigGAN margin loss."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


@dataclass(frozen=True)
class Objective:
    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[[Tensor], Tensor]
    read_out: Callable[[Tensor], Tensor]
    """Maps scores to what is logged as D(x): a probability for the BCE family, the raw score otherwise."""


def build_objective(name: str, score_space: ScoreSpace = "logits", label_smoothing: float = 0.0) -> Objective:
    """The objective called `name`, reading scores in `score_space` ("logits" or "probabilities")."""
    real_target = 1.0 - label_smoothing
    identity = lambda scores: scores  # noqa: E731
    if name in ("minimax", "non-saturating"):
        g_loss = minimax_g_loss if name == "minimax" else non_saturating_g_loss
        return Objective(
            d_loss=lambda real, fake: bce_d_loss(real, fake, score_space, real_target),
            g_loss=lambda fake: g_loss(fake, score_space),
            read_out=torch.sigmoid if score_space == "logits" else identity,
        )
    if score_space != "logits":
        raise ValueError(f"loss {name} needs raw scores; a D that ends in Sigmoid only suits minimax and non-saturating")
    if name == "lsgan":
        return Objective(lambda real, fake: lsgan_d_loss(real, fake, real_target), lsgan_g_loss, identity)
    if name in ("wgan", "wgan-gp"):
        return Objective(wasserstein_d_loss, wasserstein_g_loss, identity)
    if name == "hinge":
        return Objective(hinge_d_loss, wasserstein_g_loss, identity)
    raise ValueError(f"unknown loss {name!r}")
