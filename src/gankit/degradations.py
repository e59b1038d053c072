"""What the world does to an image, y = M * (K x + s e), as small operators; and a seeded sampler that
draws a different degradation for every image, to make (degraded, clean) training pairs on the fly.

Both `gankit restore` (apps/restore.py: inversion and the trained restorer) and paired training
(training/paired.py) use them, so they live below both. Images are (N, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from gankit.errors import GankitError

MAX_BLUR_SIGMA = 10.0
MAX_NOISE_SIGMA = 2.0
MASK_SHAPES = ("center", "box", "pixels", "strokes")
STROKE_VERTICES = 4  # a stroke is a polyline of this many points
STROKE_SAMPLES_PER_SEGMENT = 8  # brush positions stamped along each segment


class RestoreError(GankitError):
    """Restoration inputs or settings that cannot work together."""


class Mask:
    """Keeps the known pixels and zeroes the rest; keep is (N or 1, 1, H, W), 1 = known."""

    def __init__(self, keep: Tensor) -> None:
        self.keep = keep.float()

    def __call__(self, images: Tensor) -> Tensor:
        return images * _align(self.keep, images)

    def corrupt(self, images: Tensor, rng: torch.Generator) -> Tensor:
        return self(images)


class GaussianBlur:
    """Convolution with a normalized Gaussian of std `sigma` px, truncated at 4 sigma like
    scipy.ndimage.gaussian_filter; borders repeat the edge pixel. `sigma` is one number, or an
    (N,) tensor of one per image (0 leaves that image as it is)."""

    def __init__(self, sigma: float | Tensor) -> None:
        self.sigma = sigma
        sigmas = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
        radius = max(1, math.ceil(4.0 * float(sigmas.max())))
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
        own_radius = torch.ceil(4.0 * sigmas).clamp_min(1)[:, None]
        taps = torch.exp(-0.5 * (offsets / sigmas.clamp_min(1e-12)[:, None]) ** 2) * (offsets.abs() <= own_radius)
        taps = (taps / taps.sum(1, keepdim=True)).float()
        self.taps = taps if torch.is_tensor(sigma) and sigma.dim() else taps[0]  # (2 * radius + 1,), or (N, ...) per image

    @property
    def kernel(self) -> Tensor:
        """The 2-D point-spread function (it sums to 1) of a single sigma, for deconvolution baselines."""
        return torch.outer(self.taps, self.taps)

    def __call__(self, images: Tensor) -> Tensor:
        """Images (N, ..., H, W); with one sigma per image, N must match."""
        *lead, height, width = images.shape
        flat = images.reshape(1, -1, height, width)  # every plane its own group: per-image taps need no loop
        rows = self.taps.to(images).view(-1, self.taps.shape[-1])
        taps = rows.repeat_interleave(flat.shape[1] // len(rows), 0)
        radius, planes = taps.shape[1] // 2, flat.shape[1]
        flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), taps.view(planes, 1, 1, -1), groups=planes)
        flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), taps.view(planes, 1, -1, 1), groups=planes)
        return flat.view(*lead, height, width)

    def corrupt(self, images: Tensor, rng: torch.Generator) -> Tensor:
        return self(images)


class GaussianNoise:
    """Additive N(0, sigma^2) noise (sigma one number or (N,) per image). Its noiseless part is the
    identity: sigma only weighs the inversion's fit."""

    def __init__(self, sigma: float | Tensor) -> None:
        self.sigma = sigma

    def __call__(self, images: Tensor) -> Tensor:
        return images

    def corrupt(self, images: Tensor, rng: torch.Generator) -> Tensor:
        noise = torch.randn(images.shape, generator=rng, dtype=images.dtype, device=rng.device).to(images.device)
        sigma = torch.as_tensor(self.sigma, dtype=images.dtype, device=images.device).reshape(-1, *([1] * (images.dim() - 1)))
        return images + sigma * noise


class Operator(Protocol):
    def __call__(self, images: Tensor) -> Tensor: ...

    def corrupt(self, images: Tensor, rng: torch.Generator) -> Tensor: ...


def corrupt_through(operators: list[Operator], clean: Tensor, rng: torch.Generator) -> Tensor:
    """Blur, then noise, then mask (the order y = M * (K x + s e) has), each as the world does it."""
    for op in operators:
        clean = op.corrupt(clean, rng)
    return clean


@dataclass(frozen=True)
class Degradation:
    """One blur and noise level for all images: y = M * (K x + s e). `keep` is None when every pixel is known."""

    keep: Tensor | None = None
    blur_sigma: float = 0.0
    noise_sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.keep is None and self.blur_sigma == 0 and self.noise_sigma == 0:
            raise RestoreError("nothing to restore: give a mask (--mask), --noise SIGMA and/or --blur SIGMA")
        if not 0 <= self.blur_sigma <= MAX_BLUR_SIGMA:
            raise RestoreError(f"blur sigma must be in (0, {MAX_BLUR_SIGMA}] pixels, got {self.blur_sigma}")
        if not 0 <= self.noise_sigma <= MAX_NOISE_SIGMA:
            raise RestoreError(f"noise sigma is on the [-1, 1] pixel scale and must be in (0, {MAX_NOISE_SIGMA}], got {self.noise_sigma}")
        if self.keep is not None and (self.keep.dim() != 4 or self.keep.shape[1] != 1):
            raise RestoreError(f"a mask must have shape (N or 1, 1, H, W), got {tuple(self.keep.shape)}")

    @property
    def operators(self) -> list[Mask | GaussianBlur | GaussianNoise]:
        ops: list[Mask | GaussianBlur | GaussianNoise] = []
        if self.blur_sigma:
            ops.append(GaussianBlur(self.blur_sigma))
        if self.noise_sigma:
            ops.append(GaussianNoise(self.noise_sigma))
        if self.keep is not None:
            ops.append(Mask(self.keep))
        return ops

    @property
    def exact(self) -> bool:
        """Whether the known pixels are the true ones (no blur, no noise), so they may be pasted back."""
        return not (self.blur_sigma or self.noise_sigma)

    def forward(self, images: Tensor) -> Tensor:
        """A(x): the noiseless degradation that G(z) is compared through."""
        for op in self.operators:
            images = op(images)
        return images

    def corrupt(self, clean: Tensor, rng: torch.Generator) -> Tensor:
        """Simulate an observation of clean images (noise drawn from rng)."""
        return corrupt_through(self.operators, clean, rng)

    def known(self, like: Tensor) -> Tensor:
        """(N or 1, 1, H, W): 1 where a pixel was observed."""
        return torch.ones(1, 1, *like.shape[-2:], device=like.device) if self.keep is None else self.keep.to(like.device)

    def rows(self, chunk: slice) -> Degradation:
        """The degradation of a slice of the images (per-image masks sliced, shared ones kept)."""
        if self.keep is None or len(self.keep) == 1:
            return self
        return Degradation(self.keep[chunk], self.blur_sigma, self.noise_sigma)

    def check_fits(self, observed: Tensor) -> None:
        if self.keep is not None:
            if self.keep.shape[-2:] != observed.shape[-2:]:
                raise RestoreError(f"the mask is {tuple(self.keep.shape[-2:])} pixels but the images are {tuple(observed.shape[-2:])}; give a mask of the images' size")
            if len(self.keep) not in (1, len(observed)):
                raise RestoreError(f"{len(self.keep)} masks for {len(observed)} images; give one mask, or one per image")


def center_hole(size: int, height: int, width: int) -> Tensor:
    """keep (1, 1, H, W) with a size x size hole in the middle."""
    keep = torch.ones(1, 1, height, width)
    top, left = (height - size) // 2, (width - size) // 2
    keep[..., top : top + size, left : left + size] = 0
    return keep


class DegradationRanges(Protocol):
    """What the sampler reads of the config's restore.degradations section (config.DegradationConfig)."""

    mask_probability: float
    masks: list[str]
    hole_size: tuple[float, float]
    missing_pixels: tuple[float, float]
    strokes: tuple[int, int]
    stroke_width: tuple[float, float]
    noise_probability: float
    noise_sigma: tuple[float, float]
    blur_probability: float
    blur_sigma: tuple[float, float]


@dataclass(frozen=True)
class DegradationDraw:
    """One degradation per image: keep (N, 1, H, W), blur_sigma and noise_sigma (N,), 0 where absent."""

    keep: Tensor
    blur_sigma: Tensor
    noise_sigma: Tensor

    @property
    def exact(self) -> Tensor:
        """(N,) bool: the known pixels are the true ones (no blur, no noise), so they may be pasted back."""
        return (self.blur_sigma == 0) & (self.noise_sigma == 0)

    def corrupt(self, clean: Tensor, rng: torch.Generator) -> Tensor:
        """y = M * (K x + s e) with each image's own parameters; unknown pixels are 0."""
        return corrupt_through([GaussianBlur(self.blur_sigma.cpu()), GaussianNoise(self.noise_sigma), Mask(self.keep)], clean, rng)


class DegradationSampler:
    """Draws a degradation per image: each of mask, noise and blur independently with its probability
    (an image that drew none gets one of them, picked uniformly), then its parameters uniformly from
    the ranges; the mask shape uniformly from `masks`. All randomness comes from the caller's generator."""

    def __init__(self, ranges: DegradationRanges) -> None:
        self.ranges = ranges

    def __call__(self, count: int, height: int, width: int, rng: torch.Generator) -> DegradationDraw:
        ranges, device = self.ranges, rng.device
        chance = torch.tensor([ranges.mask_probability, ranges.noise_probability, ranges.blur_probability], device=device)
        chosen = torch.rand(count, 3, generator=rng, device=device) < chance
        fallback = torch.multinomial((chance > 0).float().expand(count, 3), 1, generator=rng).squeeze(1)
        chosen[torch.arange(count, device=device), fallback] |= ~chosen.any(1)
        use_mask, use_noise, use_blur = chosen.unbind(1)
        keep = torch.where(use_mask.view(-1, 1, 1, 1), self._masks(count, height, width, rng), torch.ones((), device=device))
        noise = torch.where(use_noise, _uniform(ranges.noise_sigma, count, rng), torch.zeros((), device=device))
        blur = torch.where(use_blur, _uniform(ranges.blur_sigma, count, rng), torch.zeros((), device=device))
        return DegradationDraw(keep, blur, noise)

    def _masks(self, count: int, height: int, width: int, rng: torch.Generator) -> Tensor:
        """(count, 1, H, W) keep masks, each of a shape drawn from `masks` (all shapes are drawn, so draws stay aligned)."""
        makers = {"center": self._center, "box": self._box, "pixels": self._pixels, "strokes": self._strokes}
        made = torch.stack([makers[shape](count, height, width, rng) for shape in self.ranges.masks])
        shape = torch.randint(len(self.ranges.masks), (count,), generator=rng, device=rng.device)
        return made[shape, torch.arange(count, device=rng.device)]

    def _center(self, count: int, height: int, width: int, rng: torch.Generator) -> Tensor:
        fraction = _uniform(self.ranges.hole_size, count, rng)
        tall, wide = _side(fraction, height), _side(fraction, width)
        return _box_keep(((height - tall) / 2).floor(), ((width - wide) / 2).floor(), tall, wide, height, width)

    def _box(self, count: int, height: int, width: int, rng: torch.Generator) -> Tensor:
        tall, wide = _side(_uniform(self.ranges.hole_size, count, rng), height), _side(_uniform(self.ranges.hole_size, count, rng), width)
        top = (torch.rand(count, generator=rng, device=rng.device) * (height - tall + 1)).floor()
        left = (torch.rand(count, generator=rng, device=rng.device) * (width - wide + 1)).floor()
        return _box_keep(top, left, tall, wide, height, width)

    def _pixels(self, count: int, height: int, width: int, rng: torch.Generator) -> Tensor:
        missing = _uniform(self.ranges.missing_pixels, count, rng).view(-1, 1, 1, 1)
        return (torch.rand(count, 1, height, width, generator=rng, device=rng.device) >= missing).float()

    def _strokes(self, count: int, height: int, width: int, rng: torch.Generator) -> Tensor:
        """Free-form brush strokes: polylines of random direction and length, stamped with a round brush."""
        low, high = self.ranges.strokes
        device = rng.device
        strokes = torch.randint(low, high + 1, (count,), generator=rng, device=device)
        side = min(height, width)
        start = torch.rand(count, high, 1, 2, generator=rng, device=device) * torch.tensor([height, width], device=device)
        angle = torch.rand(count, high, 1, generator=rng, device=device) * 2 * math.pi
        angle = angle + torch.cumsum(torch.randn(count, high, STROKE_VERTICES - 1, generator=rng, device=device), 2)
        length = side * (0.1 + 0.25 * torch.rand(count, high, STROKE_VERTICES - 1, generator=rng, device=device))
        steps = torch.stack([angle.sin(), angle.cos()], -1) * length[..., None]
        vertices = torch.cat([start, start + torch.cumsum(steps, 2)], 2)  # (count, strokes, vertices, 2)
        along = torch.linspace(0, 1, STROKE_SAMPLES_PER_SEGMENT, device=device).view(1, 1, 1, -1, 1)
        points = (vertices[:, :, :-1, None] + along * (vertices[:, :, 1:, None] - vertices[:, :, :-1, None])).flatten(2, 3)
        points = torch.where((torch.arange(high, device=device) < strokes[:, None]).view(count, high, 1, 1), points, torch.full((), -1e6, device=device))
        rows, cols = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
        grid = torch.stack([rows, cols], -1).view(1, -1, 2).float()
        distance = torch.cdist(grid.expand(count, -1, -1), points.flatten(1, 2)).min(2).values
        radius = _uniform(self.ranges.stroke_width, count, rng)[:, None] * side / 2
        return (distance > radius).float().view(count, 1, height, width)


def _uniform(bounds: tuple[float, float], count: int, rng: torch.Generator) -> Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(count, generator=rng, device=rng.device)


def _side(fraction: Tensor, length: int) -> Tensor:
    return (fraction * length).round().clamp(1, length)


def _box_keep(top: Tensor, left: Tensor, tall: Tensor, wide: Tensor, height: int, width: int) -> Tensor:
    """(N, 1, H, W) keep masks with one hole each: rows [top, top + tall) x columns [left, left + wide)."""
    rows = torch.arange(height, device=top.device).view(1, -1, 1)
    cols = torch.arange(width, device=top.device).view(1, 1, -1)
    inside_rows = (rows >= top.view(-1, 1, 1)) & (rows < (top + tall).view(-1, 1, 1))
    inside_cols = (cols >= left.view(-1, 1, 1)) & (cols < (left + wide).view(-1, 1, 1))
    return (~(inside_rows & inside_cols)).float().unsqueeze(1)


def _align(mask: Tensor, images: Tensor) -> Tensor:
    """(N, 1, H, W) mask viewed to broadcast over (N, ..., C, H, W) images."""
    return mask.to(images.device).view(mask.shape[0], *([1] * (images.dim() - 4)), *mask.shape[1:])


def psnr(images: Tensor, reference: Tensor) -> Tensor:
    """(N,) PSNR in dB of images against reference, both in [-1, 1] (the same as on [0, 1])."""
    mse = (images - reference).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(4.0 / mse)
