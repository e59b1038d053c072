"""DiffAugment (Zhao et al. 2020) and ADA's adaptive probability (Karras et al. 2020): augment what D sees.

With little data D memorizes the reals. Augmenting only the reals would teach G to make augmented
images; DiffAugment instead augments real and fake alike on every D call, G's step included, with
differentiable ops so G's gradient flows back through them. ADA applies each op to a sample only
with probability p, and steers p by how sure D is of the reals.

Images are (N, C, H, W) in [-1, 1]. Every random draw comes from the caller's generator, so a
seeded run (and a resumed one) augments exactly the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

TRANSLATION_FRACTION = 1 / 8  # the largest shift, as a fraction of the side (DiffAugment's setting)
CUTOUT_FRACTION = 1 / 2  # the cut square's side, as a fraction of the image's

Op = Callable[[Tensor, torch.Generator | None], Tensor]


def _per_sample(x: Tensor, generator: torch.Generator | None, low: float, high: float) -> Tensor:
    """One uniform draw in [low, high) per sample, shaped (N, 1, 1, 1) to broadcast over the image."""
    u = torch.rand((x.shape[0], 1, 1, 1), device=x.device, generator=generator)
    return (low + (high - low) * u).to(x.dtype)


def random_brightness(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Add one offset in [-0.5, 0.5) per image."""
    return x + _per_sample(x, generator, -0.5, 0.5)


def random_saturation(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Scale each pixel's distance from its channel mean by a factor in [0, 2); grayscale is unchanged."""
    grey = x.mean(dim=1, keepdim=True)
    return grey + (x - grey) * _per_sample(x, generator, 0.0, 2.0)


def random_contrast(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Scale each image's distance from its mean by a factor in [0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * _per_sample(x, generator, 0.5, 1.5)


def shift(x: Tensor, down: Tensor, right: Tensor) -> Tensor:
    """Move image i by down[i] rows and right[i] columns (integer tensors, (N,)), filling with zeros.

    A gather from a zero-padded copy, so the gradient reaches every pixel that stays in view."""
    n, _, height, width = x.shape
    rows = (torch.arange(height, device=x.device).view(1, height, 1) - down.view(n, 1, 1)).clamp(-1, height) + 1
    cols = (torch.arange(width, device=x.device).view(1, 1, width) - right.view(n, 1, 1)).clamp(-1, width) + 1
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    return padded[torch.arange(n, device=x.device).view(n, 1, 1), :, rows, cols].permute(0, 3, 1, 2)


def random_translation(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Shift each image by up to 1/8 of its height and width either way (integers, uniformly)."""
    n, _, height, width = x.shape
    reach_y, reach_x = round(height * TRANSLATION_FRACTION), round(width * TRANSLATION_FRACTION)
    down = torch.randint(-reach_y, reach_y + 1, (n,), device=x.device, generator=generator)
    right = torch.randint(-reach_x, reach_x + 1, (n,), device=x.device, generator=generator)
    return shift(x, down, right)


def cut(x: Tensor, top: Tensor, left: Tensor, size: tuple[int, int]) -> Tensor:
    """Zero a `size` (height, width) rectangle at (top[i], left[i]) in image i; the part outside the image is dropped."""
    n, _, height, width = x.shape
    rows = torch.arange(height, device=x.device).view(1, height, 1) - top.view(n, 1, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, width) - left.view(n, 1, 1)
    inside = (rows >= 0) & (rows < size[0]) & (cols >= 0) & (cols < size[1])
    return x * (~inside).unsqueeze(1).to(x.dtype)


def random_cutout(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Zero a square half the image's side in each image, centred on a uniformly drawn pixel."""
    n, _, height, width = x.shape
    size = (round(height * CUTOUT_FRACTION), round(width * CUTOUT_FRACTION))
    top = torch.randint(0, height, (n,), device=x.device, generator=generator) - size[0] // 2
    left = torch.randint(0, width, (n,), device=x.device, generator=generator) - size[1] // 2
    return cut(x, top, left, size)


POLICIES: dict[str, tuple[Op, ...]] = {
    "color": (random_brightness, random_saturation, random_contrast),
    "translation": (random_translation,),
    "cutout": (random_cutout,),
}


def diff_augment(x: Tensor, policies: Sequence[str], generator: torch.Generator | None = None, p: Tensor | None = None) -> Tensor:
    """Each op of each named policy (POLICIES), in order. With `p` (a scalar tensor: ADA), each op
    reaches each image only with probability p; without it, every op reaches every image."""
    for name in policies:
        for op in POLICIES[name]:
            if p is None:
                x = op(x, generator)
            else:
                chosen = torch.rand((x.shape[0], 1, 1, 1), device=x.device, generator=generator) < p
                x = torch.where(chosen, op(x, generator), x)
    return x


class AdaptiveProbability:
    """ADA's controller: p rises while D is surer of the reals than `target` says it should be, and falls otherwise.

    The signs of D's verdicts on reals (logits: positive means "real") are summed on the device as
    they come; every `interval` D steps r_t = E[sign(verdict)] (0.6: 80% called real) moves p by
    `step`, up if r_t > target, down otherwise, within [0, 1]. p = 1 is plain DiffAugment, which does not leak
    augmentations into G because G's images are augmented too."""

    def __init__(self, target: float, interval: int, step: float, device: torch.device):
        self.target = target
        self.interval = interval
        self.step = step
        self.p = torch.zeros((), device=device)
        self.rt = torch.zeros((), device=device)
        self.signs = torch.zeros(2, device=device)  # (sum of signs, count) since the last adjustment

    def observe(self, verdicts: Tensor) -> None:
        """Count one D step's verdicts on reals (logits, positive = real)."""
        verdicts = verdicts.detach().float()
        self.signs += torch.stack([verdicts.sign().sum(), verdicts.new_full((), verdicts.numel())])

    def adjust(self, gather: Callable[[Tensor], Tensor] = lambda sums: sums) -> None:
        """Move p by one step by the sign of r_t - target; `gather` combines the sums of several processes."""
        total, count = gather(self.signs).unbind()
        self.rt = total / count
        self.p = (self.p + torch.sign(self.rt - self.target) * self.step).clamp(0.0, 1.0)
        self.signs = torch.zeros_like(self.signs)

    def state(self) -> dict[str, Tensor]:
        """What a checkpoint keeps, so a resumed run adjusts p exactly as an uninterrupted one."""
        return {"p": self.p, "rt": self.rt, "signs": self.signs}

    def load_state(self, tensors: dict[str, Tensor]) -> None:
        self.p, self.rt, self.signs = (tensors[name].to(self.p.device).clone() for name in ("p", "rt", "signs"))
