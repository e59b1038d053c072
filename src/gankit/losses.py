"""Adversarial objectives as pure functions of the discriminator's scores.

An objective is a pair: ``d_loss(real_scores, fake_scores)`` and ``g_loss(fake_scores)``,
each returning a scalar to minimize. Scores are D's raw outputs (logits); the BCE family
also reads probabilities, for a D that ends in Sigmoid like the reference network, which is
how the reference preset reproduces the original networks exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    verdict: Callable[[Tensor], Tensor] | None = None
    """Maps scores to a margin whose sign is D's call (positive: real), in logit space for the BCE family;
    ADA steers by it. None where the scores have no fixed zero (a Wasserstein critic's offset is free)."""


@dataclass(frozen=True)
class Loss:
    """A registry entry: how to build the objective from (score space, real target), and what it needs.

    score_spaces: what D's outputs may be (a Sigmoid D gives probabilities); label_smoothing: whether a
    real target below 1 means anything; implied: stabilizer settings the objective is defined with,
    written into the config when left unset (config.py)."""

    build: Callable[[ScoreSpace, float], Objective]
    score_spaces: tuple[ScoreSpace, ...] = ("logits",)
    label_smoothing: bool = False
    implied: dict[str, float] = field(default_factory=dict)

    @property
    def gives_verdicts(self) -> bool:
        """Whether the sign of D's scores says real or fake (the objective has a `verdict`)."""
        return self.build(self.score_spaces[0], 1.0).verdict is not None


def _identity(scores: Tensor) -> Tensor:
    return scores


def _bce(g_loss: Callable[[Tensor, ScoreSpace], Tensor]) -> Callable[[ScoreSpace, float], Objective]:
    def build(space: ScoreSpace, real_target: float) -> Objective:
        read_out, verdict = (torch.sigmoid, _identity) if space == "logits" else (_identity, torch.logit)
        return Objective(lambda real, fake: bce_d_loss(real, fake, space, real_target), lambda fake: g_loss(fake, space), read_out, verdict)

    return build


def _critic(d_loss: Callable[[Tensor, Tensor], Tensor], verdict: Callable[[Tensor], Tensor] | None = None) -> Callable[[ScoreSpace, float], Objective]:
    return lambda space, real_target: Objective(d_loss, wasserstein_g_loss, _identity, verdict)


def _lsgan(space: ScoreSpace, real_target: float) -> Objective:
    """The 0-1 coding: D calls a sample real above the midpoint of its targets."""
    return Objective(lambda real, fake: lsgan_d_loss(real, fake, real_target), lsgan_g_loss, _identity, lambda scores: scores - real_target / 2)


BOTH_SPACES = ("logits", "probabilities")
LOSSES: dict[str, Loss] = {
    "minimax": Loss(_bce(minimax_g_loss), BOTH_SPACES, label_smoothing=True),
    "non-saturating": Loss(_bce(non_saturating_g_loss), BOTH_SPACES, label_smoothing=True),
    "lsgan": Loss(_lsgan, label_smoothing=True),
    "wgan": Loss(_critic(wasserstein_d_loss), implied={"weight_clip": 0.01}),
    "wgan-gp": Loss(_critic(wasserstein_d_loss), implied={"gradient_penalty": 10.0}),
    "hinge": Loss(_critic(hinge_d_loss, _identity)),
}


def losses_that(accept: Callable[[Loss], bool]) -> list[str]:
    """Names of the registered losses an entry test accepts (for messages that say what would work)."""
    return [name for name, loss in LOSSES.items() if accept(loss)]


def build_objective(name: str, score_space: ScoreSpace = "logits", label_smoothing: float = 0.0) -> Objective:
    """The objective called `name`, reading scores in `score_space` ("logits" or "probabilities")."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}")
    loss = LOSSES[name]
    if score_space not in loss.score_spaces:
        suited = " and ".join(losses_that(lambda entry: score_space in entry.score_spaces))
        raise ValueError(f"loss {name} needs raw scores; a D that ends in Sigmoid only suits {suited}")
    return loss.build(score_space, 1.0 - label_smoothing)
