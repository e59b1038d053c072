"""Regularizers and input perturbations (D's, and G's path length), each a small function the trainer composes."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

Critic = Callable[[Tensor], Tensor]


def _input_gradients(critic: Critic, inputs: Tensor, loss_scale: float = 1.0) -> Tensor:
    """d sum(D(x)) / dx per sample as float32, flattened to (N, -1), kept in the graph so the penalty
    trains D. Under fp16 loss scaling the scores are scaled before differentiating (small input
    gradients would underflow in float16) and the result is unscaled."""
    inputs = inputs.detach().requires_grad_(True)
    (grads,) = torch.autograd.grad(critic(inputs).sum() * loss_scale, inputs, create_graph=True)
    return grads.flatten(1).float() / loss_scale


def gradient_penalty(critic: Critic, real: Tensor, fake: Tensor, generator: torch.Generator | None = None, loss_scale: float = 1.0) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(|grad D(x_hat)| - 1)^2] on random interpolates of real and fake."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, device=real.device, generator=generator).to(real.dtype)
    interpolates = alpha * real.detach() + (1 - alpha) * fake.detach()
    return (_input_gradients(critic, interpolates, loss_scale).norm(dim=1) - 1).pow(2).mean()


def r1_penalty(critic: Critic, real: Tensor, loss_scale: float = 1.0) -> Tensor:
    """R1 (Mescheder et al. 2018): E[|grad D(x)|^2] on real data; the caller scales it by gamma / 2."""
    return _input_gradients(critic, real, loss_scale).pow(2).sum(dim=1).mean()


def path_length_penalty(
    synthesize: Callable[[Tensor], Tensor], w: Tensor, running_mean: Tensor, decay: float = 0.01, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """StyleGAN2's path-length regularization (Karras et al. 2020) of G's w -> image map.

    For y ~ N(0, I) / sqrt(H * W), each sample's length is |J_w^T y| (J the Jacobian of its image in
    its w); the penalty is E[(length - a)^2], a the running mean of lengths, so a fixed-size step in w
    moves the image by a fixed amount whatever the direction. Returns (penalty, updated mean): the
    mean moves by `decay` toward this batch's mean length; the caller keeps it. `w` must require grad
    (G's mapping output does: the penalty then trains the mapping network too)."""
    images = synthesize(w)
    noise = torch.randn(images.shape, device=images.device, generator=generator).to(images.dtype) / math.sqrt(images.shape[2] * images.shape[3])
    (grads,) = torch.autograd.grad((images * noise).sum(), w, create_graph=True)
    lengths = grads.float().square().sum(dim=1).sqrt()
    mean = running_mean.float().lerp(lengths.detach().mean(), decay)
    return (lengths - mean).square().mean(), mean


def instance_noise_std(initial_std: float, anneal_steps: int, step: int) -> float:
    """Noise std at `step`: constant when anneal_steps is 0, else falling linearly to 0."""
    if anneal_steps == 0:
        return initial_std
    return initial_std * max(0.0, 1.0 - step / anneal_steps)


def add_instance_noise(x: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """Blur the supports of real and fake so D cannot separate them perfectly (Sonderby et al. 2016)."""
    if std == 0:
        return x
    return x + std * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)


@torch.no_grad()
def clip_weights(module: nn.Module, limit: float) -> None:
    """The original WGAN's crude Lipschitz constraint: every parameter of D into [-limit, limit]."""
    for param in module.parameters():
        param.clamp_(-limit, limit)
