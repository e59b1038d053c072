"""Write a generator's samples as a grid, single PNGs or arrays; walk its latent space between two
points and write the walk as a strip and a GIF. Drawing the samples is models.sampling's job."""

from __future__ import annotations

import io
import math
import os
import resource
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from gankit.data.images import to_uint8_images
from gankit.data.npz import save_npz
from gankit.errors import GankitError
from gankit.files import atomic_write
from gankit.models.sampling import class_labels, device_of, latents, render
from gankit.report.plots import image_grid, save_samples

GIF_FRAME_MS = 80


def slerp(start: Tensor, end: Tensor, fractions: Tensor) -> Tensor:
    """Spherical interpolation: (P, Z) start and end, (S,) fractions in [0, 1] -> (P, S, Z).

    A straight line between two Gaussian z's passes through the low-norm middle that G rarely saw
    in training; the great-circle path keeps a typical norm. Fraction 0 gives start and 1 gives end
    exactly; nearly parallel endpoints fall back to the straight line.
    """
    a, b, t = start.double()[:, None], end.double()[:, None], fractions.double().to(start.device)[None, :, None]
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)[..., None].clamp(-1, 1)
    angle = torch.arccos(cosine)
    sine = torch.sin(angle)
    parallel = sine.abs() < 1e-6
    safe_sine = torch.where(parallel, torch.ones_like(sine), sine)
    curved = (torch.sin((1 - t) * angle) * a + torch.sin(t * angle) * b) / safe_sine
    straight = (1 - t) * a + t * b
    return torch.where(parallel, straight, curved).to(start.dtype)


def interpolate(generator: nn.Module, start: Tensor, end: Tensor, steps: int, labels: Tensor | None = None) -> Tensor:
    """(P, steps, *sample_shape): row p walks from G(start[p]) to G(end[p]) with label labels[p] throughout."""
    if steps < 2:
        raise GankitError(f"an interpolation needs at least 2 steps (its two ends), got {steps}")
    path = slerp(start, end, torch.linspace(0, 1, steps))
    row_labels = None if labels is None else labels.repeat_interleave(steps)
    frames = render(generator, path.flatten(0, 1), row_labels)
    return frames.view(len(start), steps, *frames.shape[1:])


def interpolation(
    generator: nn.Module, rows: int, steps: int, *, seed: int = 0, label: int | None = None, truncation: float | None = None
) -> Tensor:
    """rows random walks: the ends are the first 2 * rows latents of the seed (starts, then ends);
    row p has label `label`, or class p mod num_classes when G is conditional."""
    rng = torch.Generator(device_of(generator)).manual_seed(seed)
    ends = latents(2 * rows, generator.z_dim, rng, truncation)
    return interpolate(generator, ends[:rows], ends[rows:], steps, class_labels(generator, rows, label))


def interpolation_paths(grid: str | None, out_dir: str | None) -> tuple[Path, Path]:
    """Where --interpolate writes its strip and GIF: --grid FILE.png and FILE.gif beside it, else
    DIR/interpolation.png and DIR/interpolation.gif for --out-dir DIR."""
    if grid:
        strip = Path(grid)
        return strip, strip.with_suffix(".gif")
    if out_dir:
        return Path(out_dir) / "interpolation.png", Path(out_dir) / "interpolation.gif"
    raise GankitError("say where to write the interpolation: --grid FILE.png (and FILE.gif) or --out-dir DIR")


def write_strip(frames: Tensor, path: Path) -> Path:
    """(P, S, C, H, W) walks as one PNG: a row per walk, its S steps left to right."""
    _check_images(frames.flatten(0, 1), "an interpolation strip (--interpolate)")
    picture = image_grid(frames.flatten(0, 1), columns=frames.shape[1])
    return _save_image(picture, path, "PNG")


def write_gif(frames: Tensor, path: Path, frame_ms: int = GIF_FRAME_MS) -> Path:
    """(P, S, C, H, W) walks as a looping GIF: frame s shows step s of every walk side by side,
    played forward then back so the loop has no jump."""
    _check_images(frames.flatten(0, 1), "an interpolation GIF (--interpolate)")
    order = [*range(frames.shape[1]), *range(frames.shape[1] - 2, 0, -1)]
    pictures = [image_grid(frames[:, step], columns=frames.shape[0]) for step in order]
    return _save_image(pictures[0], path, "GIF", save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)


def write_grid(samples: Tensor, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_samples(samples, path)
    return path


def write_pngs(samples: Tensor, directory: Path) -> list[Path]:
    """One PNG per image, named by index (sample-00000.png, ...)."""
    _check_images(samples, "single PNGs (--out-dir)")
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, pixels in enumerate(to_uint8_images(samples)):
        path = directory / f"sample-{index:05d}.png"
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)
        paths.append(path)
    return paths


def write_npz(samples: Tensor, labels: Tensor | None, path: Path) -> Path:
    """Images as uint8 arrays in the npz loader's format, so samples can be trained on again;
    2-D points as float32 array `points` (N, 2)."""
    if samples.dim() == 2:
        buffer = io.BytesIO()
        np.savez(buffer, points=samples.numpy().astype(np.float32))
        with atomic_write(path) as out:
            out.write(buffer.getvalue())
        return path
    save_npz(path, to_uint8_images(samples).transpose(0, 3, 1, 2), None if labels is None else labels.numpy())
    return path


def check_output_paths(grid: str | None, out_dir: str | None, npz: str | None) -> None:
    """Refuse output paths that cannot be written before any sample is drawn."""
    for option, path in (("--grid", grid), ("--npz", npz)):
        if path and (path.endswith(os.sep) or Path(path).is_dir()):
            raise GankitError(f"{option} {path} is a folder; give a file name in it, e.g. {Path(path) / ('grid.png' if option == '--grid' else 'samples.npz')}")
    if grid and Path(grid).suffix.lower() not in Image.registered_extensions():
        raise GankitError(f"--grid {grid}: unknown image type {Path(grid).suffix or '(no extension)'}; end the name in .png")
    if out_dir and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise GankitError(f"--out-dir {out_dir} is a file, not a folder; give a new or existing folder")


def check_memory(n: int, sample_shape: list[int]) -> None:
    """Refuse -n whose samples (held at once, in float32, and copied once) would not fit in free memory."""
    needed = 8 * n * math.prod(sample_shape)
    free = available_memory()
    if needed > free:
        raise GankitError(
            f"-n {n} samples of shape {tuple(sample_shape)} need about {needed / 2**30:.1f} GiB of memory, but about {free / 2**30:.1f} GiB is free; "
            "ask for fewer (several calls with different --seed give more)"
        )


def available_memory() -> int:
    """Bytes this process can still allocate: the kernel's MemAvailable (free memory plus reclaimable cache),
    or less under an address-space limit (ulimit -v)."""
    free = _meminfo_available() or os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return free
    with open("/proc/self/statm") as statm:
        used = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    return min(free, limit - used)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def _check_images(samples: Tensor, what: str) -> None:
    if samples.dim() != 4:
        raise GankitError(f"{what} can only show images, and this generator makes 2-D points; use --npz or --grid")


def _save_image(picture: Image.Image, path: Path, image_format: str, **options) -> Path:
    buffer = io.BytesIO()
    picture.save(buffer, format=image_format, **options)
    with atomic_write(path) as out:
        out.write(buffer.getvalue())
    return path
