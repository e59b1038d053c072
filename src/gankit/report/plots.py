"""Pictures of a run: sample grids (images or 2-D scatter) and the loss curves."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from gankit.data.images import to_uint8_images  # noqa: E402
from gankit.records import of_kind, read_records  # noqa: E402


def image_grid(samples: torch.Tensor, columns: int | None = None, padding: int = 2) -> Image.Image:
    """Tile (N, C, H, W) samples in [-1, 1] into one picture, `columns` wide (default: square)."""
    images = to_uint8_images(samples)
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    canvas = np.full((rows * (height + padding) + padding, columns * (width + padding) + padding, channels), 255, np.uint8)
    for index, image in enumerate(images):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        canvas[top : top + height, left : left + width] = image
    return Image.fromarray(canvas[..., 0] if channels == 1 else canvas)


def save_scatter(points: torch.Tensor, path: Path, modes: torch.Tensor | None = None, title: str = "") -> None:
    """2-D samples as a scatter plot, with the true mode centres marked when known."""
    points = points.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.4, label="samples")
    if modes is not None:
        centres = modes.cpu().numpy()
        ax.scatter(centres[:, 0], centres[:, 1], marker="x", c="red", s=40, label="modes")
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_samples(samples: torch.Tensor, path: Path, modes: torch.Tensor | None = None, title: str = "") -> None:
    """Images as a grid PNG, 2-D points as a scatter PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if samples.dim() == 2:
        save_scatter(samples, path, modes, title)
    else:
        image_grid(samples).save(path)


def plot_losses(metrics_path: Path, out_path: Path) -> None:
    """Loss curves and D's mean outputs on real and fake data against the step."""
    records = of_kind(read_records(metrics_path), "train")
    if not records:
        return
    steps = [r["step"] for r in records]
    fig, (loss_ax, d_ax) = plt.subplots(2, 1, figsize=(8, 6), dpi=100, sharex=True)
    loss_ax.plot(steps, [r["d_loss"] for r in records], label="D loss")
    loss_ax.plot(steps, [r["g_loss"] for r in records], label="G loss")
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    d_ax.plot(steps, [r["d_real"] for r in records], label="D(x), real")
    d_ax.plot(steps, [r["d_fake"] for r in records], label="D(G(z)), fake")
    d_ax.set_xlabel("step")
    d_ax.set_ylabel("D output")
    d_ax.legend()
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
