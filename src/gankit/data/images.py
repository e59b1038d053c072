"""Conversions between the uint8 pixels datasets and image files hold and the [-1, 1] floats the models use."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CHUNK = 4096
LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's RGB -> L


def to_model_range(batch: torch.Tensor) -> torch.Tensor:
    """uint8 pixels [0, 255] -> float32 [-1, 1] (the generator's tanh range); float input is taken as already scaled."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(127.5).sub_(1.0)
    if batch.is_floating_point():
        return batch.float()
    raise TypeError(f"to_model_range expects uint8 images or floats, got {batch.dtype}")


def to_uint8_images(samples: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8, the layout image files and npz use."""
    pixels = ((samples.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


def fit_images(images: torch.Tensor, size: int | None, channels: int | None) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) to size x size and convert to the requested channel count."""
    if size is not None and tuple(images.shape[-2:]) != (size, size):
        images = torch.cat([resize_square(chunk, size) for chunk in images.split(CHUNK)])
    if channels == 3 and images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    elif channels == 1 and images.shape[1] == 3:
        weights = torch.tensor(LUMINANCE).view(1, 3, 1, 1)
        images = torch.cat([round_to_uint8((chunk * weights).sum(1, keepdim=True)) for chunk in images.split(CHUNK)])
    return images


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side to size (antialiased bilinear), then the central size x size crop."""
    height, width = images.shape[-2:]
    scale = size / min(height, width)
    new_height, new_width = max(size, round(height * scale)), max(size, round(width * scale))
    resized = F.interpolate(images.float(), size=(new_height, new_width), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_height - size) // 2, (new_width - size) // 2
    return round_to_uint8(resized[..., top : top + size, left : left + size])


def round_to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.round().clamp_(0, 255).to(torch.uint8)
