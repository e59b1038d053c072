"""A folder of PNG/JPEG images, searched recursively, decoded once (in worker processes) into one
uint8 array that is cached on disk (data/folder_cache.py), so later runs skip the decoding.

Each image is flattened onto data.background where it has transparency (alpha, a palette or colour
key: otherwise the colours hidden under transparent pixels would show), then fitted to a square:
crop scales the shorter side to the size and centre-crops (photos fill the frame undistorted), pad
scales the longer side and fills the rest with the background, stretch scales each axis.

Channels: forced by data.channels, else 1 when every image is grayscale (and stays so on the
background), else 3. Labels: when every image lies under a first-level subfolder, the sorted names
of those subfolders are the classes (deeper folders count for their first-level folder). A single
image directly in the root makes the whole folder unlabelled. Hidden files and folders (names
starting with '.') are skipped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from gankit.data import folder_cache
from gankit.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GRAYSCALE_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N")
WHITE = (255, 255, 255)
CHUNK_IMAGES = 256  # images per task a worker decodes: big enough to amortize the hand-over, small enough to stream
PROGRESS_MIN_IMAGES = 2_000  # fewer decode in a few seconds: no bar


@dataclass(frozen=True)
class Decoding:
    """What each image file becomes; the cache digest covers all of it. channels None: found from the files."""

    size: int
    channels: int | None = None
    background: tuple[int, int, int] = WHITE
    fit: str = "crop"


def load_folder(
    root: Path, decoding: Decoding, workers: int, cache_dir: Path | None, map_above_bytes: int
) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """(N, C, size, size) uint8 images, (N,) labels or None, and the class names or None. From the cache
    when it holds this folder as it is now (memory-mapped read-only when larger than map_above_bytes),
    else decoded and cached; cache_dir None decodes into memory."""
    files = image_files(root)
    class_names, labels = _classes(files)
    cache = cache_dir and folder_cache.writable(cache_dir)
    cached = cache and folder_cache.cache_file(cache, [(file.name, file.size, file.mtime_ns) for file in files], asdict(decoding))
    channels = (decoding.channels,) if decoding.channels else (1, 3)
    images = cached and folder_cache.read(cached, len(files), channels, decoding.size, map_above_bytes)
    if images is None:
        paths = [root / file.name for file in files]  # only decoding needs them: pathlib takes seconds per 100k
        if cached and folder_cache.write(cached, *_decoded_chunks(paths, decoding, workers)):
            images = folder_cache.read(cached, len(files), channels, decoding.size, map_above_bytes)
        else:
            images = decode_images(paths, decoding, workers)
    return images, labels, class_names


def load_images(paths: list[Path], image_size: int, channels: int | None) -> np.ndarray:
    """(N, C, image_size, image_size) uint8 from image files, decoded here as described above (no cache)."""
    return decode_images(paths, Decoding(image_size, channels), workers=1)


def decode_images(paths: Sequence[Path], decoding: Decoding, workers: int) -> np.ndarray:
    """(N, C, size, size) uint8 in memory."""
    shape, chunks = _decoded_chunks(paths, decoding, workers)
    images = np.empty(shape, np.uint8)
    start = 0
    for chunk in chunks:
        images[start : start + len(chunk)] = chunk
        start += len(chunk)
    return images


def _decoded_chunks(paths: Sequence[Path], decoding: Decoding, workers: int) -> tuple[tuple[int, ...], Iterator[np.ndarray]]:
    """The array's shape, and its (n, C, size, size) chunks in path order, decoded by `workers` processes
    (1: here) as they are consumed, behind a progress bar when there are enough to matter."""
    tasks = [paths[start : start + CHUNK_IMAGES] for start in range(0, len(paths), CHUNK_IMAGES)]
    if decoding.channels is None:
        grayscale = _parallel_map(partial(_all_grayscale, background=decoding.background), tasks, workers)
        decoding = replace(decoding, channels=1 if all(grayscale) else 3)
    shape = (len(paths), decoding.channels, decoding.size, decoding.size)
    return shape, _with_progress(_parallel_map(partial(_decode_chunk, decoding=decoding), tasks, workers), len(paths))


def _with_progress(chunks: Iterator[np.ndarray], total: int) -> Iterator[np.ndarray]:
    quiet = total < PROGRESS_MIN_IMAGES or None  # None: tqdm shows the bar only on a terminal
    with tqdm(total=total, desc="decoding images", unit="img", file=sys.stderr, disable=quiet, dynamic_ncols=True) as bar:
        for chunk in chunks:
            bar.update(len(chunk))
            yield chunk


def _parallel_map(function: Callable[[Any], Any], tasks: list, workers: int) -> Iterator[Any]:
    """function over tasks, in order; in `workers` processes when there is more than one task. A worker's
    DataError comes back as the same one line (no remote traceback attached)."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(function, tasks)
        return
    pool = ProcessPoolExecutor(min(workers, len(tasks)))
    try:
        yield from pool.map(function, tasks)
    except DataError as err:
        raise DataError(str(err)) from None
    except BrokenProcessPool:
        raise DataError("a process decoding images died (out of memory?); decode in this process with data.workers=1") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _all_grayscale(paths: Sequence[Path], background: tuple[int, int, int]) -> bool:
    """Whether every image stays gray once flattened onto the background (headers only, no decoding)."""
    return all(_is_grayscale(path, background) for path in paths)


def _is_grayscale(path: Path, background: tuple[int, int, int]) -> bool:
    with _opened(path) as image:
        return image.mode in GRAYSCALE_MODES and (len(set(background)) == 1 or not _has_transparency(image))


def _decode_chunk(paths: Sequence[Path], decoding: Decoding) -> np.ndarray:
    return np.stack([decode_image(path, decoding) for path in paths])


def decode_image(path: Path, decoding: Decoding) -> np.ndarray:
    """(C, size, size) uint8 of one file, decoding.channels set."""
    with _opened(path) as opened:
        try:
            image = _flattened(ImageOps.exif_transpose(opened), decoding.background)
            image = _fitted(image.convert("L" if decoding.channels == 1 else "RGB"), decoding)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise _unreadable(path, err) from None
    array = np.asarray(image)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _opened(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise _unreadable(path, err) from None


def _unreadable(path: Path, err: Exception) -> DataError:
    return DataError(f"{path}: cannot read this image ({err}); fix or delete the file")


def _has_transparency(image: Image.Image) -> bool:
    return "A" in image.getbands() or "transparency" in image.info  # alpha, or a palette's / colour key's transparent entry


def _flattened(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """An L or RGB image: 16-bit gray keeps its high byte (PIL's convert would clip at 255), and
    transparency of any kind is composited onto the background: out = (a * colour + (255 - a) * background) / 255,
    rounded (integers: at most 255 * 255, so uint16 holds it)."""
    if image.mode.startswith("I"):
        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    if not _has_transparency(image):
        return image
    gray = image.mode in GRAYSCALE_MODES and len(set(background)) == 1
    pixels = np.asarray(image.convert("LA" if gray else "RGBA")).astype(np.uint16)
    alpha = pixels[..., -1:]
    backdrop = np.array(background[:1] if gray else background, dtype=np.uint16)
    flat = ((pixels[..., :-1] * alpha + backdrop * (255 - alpha) + 127) // 255).astype(np.uint8)
    return Image.fromarray(flat[..., 0] if gray else flat)


def _fitted(image: Image.Image, decoding: Decoding) -> Image.Image:
    square = (decoding.size, decoding.size)
    if decoding.fit == "pad":
        fill = Image.new("RGB", (1, 1), decoding.background).convert(image.mode).getpixel((0, 0))
        return ImageOps.pad(image, square, Image.Resampling.BICUBIC, color=fill)
    if decoding.fit == "stretch":
        return image.resize(square, Image.Resampling.BICUBIC)
    return ImageOps.fit(image, square, Image.Resampling.BICUBIC)


def image_paths(root: Path) -> list[Path]:
    return [root / file.name for file in image_files(root)]


@dataclass(frozen=True)
class ImageFile:
    """A file of the folder as the cache digest sees it: its '/'-separated path below the folder, size and mtime."""

    name: str
    size: int
    mtime_ns: int


def image_files(root: Path) -> list[ImageFile]:
    """The image files below root, hidden files and folders skipped, in path order (folder by folder, as
    pathlib sorts). Strings and one stat per file, not pathlib: a 100k-image folder lists in about a second."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; give folder:DIR with PNG or JPEG files inside")
    found, folders = [], [""]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(root / folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    name = f"{folder}/{entry.name}" if folder else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(name)
                    elif entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                        stat = entry.stat()
                        found.append(ImageFile(name, stat.st_size, stat.st_mtime_ns))
        except OSError as err:
            raise DataError(f"cannot read image folder {err.filename}: {err.strerror}; fix its permissions (chmod -R a+rX)") from None
    if not found:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}; check the path")
    return sorted(found, key=lambda file: file.name.split("/"))


def _classes(files: list[ImageFile]) -> tuple[list[str] | None, np.ndarray | None]:
    first_folders = [file.name.split("/", 1)[0] if "/" in file.name else None for file in files]
    if None in first_folders:
        return None, None
    names = sorted(set(first_folders))
    index = {name: i for i, name in enumerate(names)}
    return names, np.array([index[name] for name in first_folders], dtype=np.int64)
