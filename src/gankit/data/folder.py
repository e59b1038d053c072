"""A folder of PNG/JPEG images, searched recursively, decoded once into one array.

Each image is scaled so its shorter side is the target size, then center-cropped to a square,
so that photos of any aspect ratio fill the frame without distortion.

Channels: forced by data.channels, else 1 when every image is grayscale, else 3.
Labels: when every image lies under a first-level subfolder, the sorted names of those
subfolders are the classes (deeper folders count for their first-level folder). A single
image directly in the root makes the whole folder unlabelled. Hidden files and folders
(names starting with '.') are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from gankit.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N")


def load_folder(root: Path, image_size: int, channels: int | None) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """(N, C, image_size, image_size) uint8 images, (N,) labels or None, and the class names or None."""
    paths = image_paths(root)
    class_names, labels = _classes(root, paths)
    return load_images(paths, image_size, channels), labels, class_names


def load_images(paths: list[Path], image_size: int, channels: int | None) -> np.ndarray:
    """(N, C, image_size, image_size) uint8 from image files, each fitted as described above."""
    images = [_load_image(path, image_size, channels) for path in paths]
    if channels is None and any(image.shape[2] == 3 for image in images):
        images = [np.broadcast_to(image, (image_size, image_size, 3)) for image in images]
    return np.stack(images).transpose(0, 3, 1, 2)


def image_paths(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; give folder:DIR with PNG or JPEG files inside")
    paths = sorted(
        path
        for path in _files_under(root)
        if path.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
        and path.is_file()
    )
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}; check the path")
    return paths


def _files_under(root: Path) -> list[Path]:
    """Every file below root; a folder that cannot be listed is an error naming it (rglob would skip it silently)."""

    def unreadable(err: OSError) -> None:
        raise DataError(f"cannot read image folder {err.filename}: {err.strerror}; fix its permissions (chmod -R a+rX)")

    return [Path(folder, name) for folder, _, names in os.walk(root, onerror=unreadable) for name in names]


def _classes(root: Path, paths: list[Path]) -> tuple[list[str] | None, np.ndarray | None]:
    first_folders = [path.relative_to(root).parts[0] if path.parent != root else None for path in paths]
    if None in first_folders:
        return None, None
    names = sorted(set(first_folders))
    index = {name: i for i, name in enumerate(names)}
    return names, np.array([index[name] for name in first_folders], dtype=np.int64)


def _load_image(path: Path, size: int, channels: int | None) -> np.ndarray:
    """(size, size, 1 or 3) uint8."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            grayscale = image.mode in GRAYSCALE_MODES
            if image.mode.startswith("I"):  # 16-bit gray: keep the high byte (PIL's convert would clip at 255)
                image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
            mode = {1: "L", 3: "RGB", None: "L" if grayscale else "RGB"}[channels]
            image = ImageOps.fit(image.convert(mode), (size, size), Image.Resampling.BICUBIC)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read this image ({err}); fix or delete the file") from None
    array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array
