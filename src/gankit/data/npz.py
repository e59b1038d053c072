"""Image arrays in .npz archives: how numpy users bring data, and what `gankit augment` writes.

The archive holds `images`, uint8, in one of these layouts:
  (N, H, W)                 grayscale
  (N, H, W, C), C in 1, 3   channel-last, the numpy/PIL convention (what save_npz writes)
  (N, C, H, W), C in 1, 3   channel-first, recognised only when the last axis is not 1 or 3
and optionally `labels`, non-negative integers of shape (N,). Archives are opened with
allow_pickle=False: a file from elsewhere must never be able to run code.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from gankit.data.idx import check_labels
from gankit.errors import DataError
from gankit.files import atomic_write

# What a damaged zip member raises on reading: bad deflate data, a flipped compression method or encryption flag.
DAMAGED_ARCHIVE = (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)
EXPECTED = "expected key 'images' (uint8, (N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3) and optional 'labels' (integers, (N,))"


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, C, H, W) uint8 images and (N,) labels or None."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, *DAMAGED_ARCHIVE) as err:
        raise DataError(f"cannot read {path} as an .npz archive ({err}); {EXPECTED}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds a single array, not an .npz archive; {EXPECTED}, as written by np.savez")
    with archive:
        if "images" not in archive.files:
            raise DataError(f"{path} has keys {archive.files} but no 'images'; {EXPECTED}")
        images = _array(archive, "images", path)
        labels = _array(archive, "labels", path) if "labels" in archive.files else None
    images = _channel_first(images, path)
    if labels is not None:
        check_labels(labels, len(images), f"{path} key 'labels'")
    return images, labels


def save_npz(path: Path | str, images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray | None = None) -> None:
    """Write uint8 (N, C, H, W) images (a Dataset's layout) and labels so that load_npz reads them back.

    Images are stored channel-last, the layout other numpy tools expect.
    """
    path = Path(path)
    images = np.asarray(images.cpu() if isinstance(images, torch.Tensor) else images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DataError(f"save_npz needs uint8 images of shape (N, C, H, W) with C 1 or 3, got {images.dtype} {images.shape}")
    arrays = {"images": images.transpose(0, 2, 3, 1)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
        check_labels(arrays["labels"], len(images), "save_npz labels")
    with atomic_write(path) as out:
        np.savez_compressed(out, **arrays)


def _array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise DataError(f"{path} key '{key}' holds pickled Python objects, which gankit never loads; store a plain numeric array") from None
        raise DataError(f"{path} key '{key}' is unreadable ({err})") from None
    except DAMAGED_ARCHIVE as err:
        raise DataError(f"{path} key '{key}' is unreadable ({err}); the archive is damaged") from None


def _channel_first(images: np.ndarray, path: Path) -> np.ndarray:
    if images.dtype != np.uint8:
        raise DataError(f"{path} key 'images' is {images.dtype}; {EXPECTED}. Scale to 0..255 and cast with .astype(np.uint8)")
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4 and images.shape[3] in (1, 3):
        return images.transpose(0, 3, 1, 2)
    if images.ndim == 4 and images.shape[1] in (1, 3):
        return images
    raise DataError(f"{path} key 'images' has shape {images.shape}; {EXPECTED}")
