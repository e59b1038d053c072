"""The IDX format of MNIST-style datasets: a 4-byte magic, big-endian int32 dimensions, raw data.

Files may be gzip-compressed; compression is detected from the content (magic 1f 8b), not the
name, because renamed and recompressed copies (Debian's, for one) are common. Every check is
strict so that a damaged download fails here with the file named, not later as bad images.
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from pathlib import Path

import numpy as np

from gankit.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IMAGES_SUFFIX = "-images-idx3-ubyte"
LABELS_SUFFIX = "-labels-idx1-ubyte"
SPLIT_PREFIXES = {"train": ("train-",), "test": ("t10k-", "test-")}


def gunzip_if_needed(raw: bytes, source: Path | str) -> bytes:
    """The IDX payload of a file's bytes, decompressed when they start with the gzip magic."""
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{source}: corrupt gzip data ({err}); delete the file and get it again") from None


def parse_idx(payload: bytes, source: Path | str) -> np.ndarray:
    """Decode an uncompressed IDX payload into a native-endian array of the declared shape."""
    if len(payload) < 4 or payload[:2] != b"\0\0" or payload[2] not in DTYPES or payload[3] == 0:
        raise DataError(
            f"{source}: not an IDX file (magic bytes {payload[:4].hex(' ') or 'missing'}; "
            f"expected 00 00, a type code in {', '.join(f'{code:02x}' for code in DTYPES)}, then the number of dimensions)"
        )
    dtype, ndim = DTYPES[payload[2]], payload[3]
    header_size = 4 + 4 * ndim
    if len(payload) < header_size:
        raise DataError(f"{source}: truncated IDX header ({len(payload)} bytes, {header_size} needed for {ndim} dimensions)")
    shape = tuple(int(size) for size in np.frombuffer(payload, dtype=">u4", count=ndim, offset=4))
    data_size = math.prod(shape) * dtype.itemsize  # Python ints: four 32-bit dimensions overflow int64
    actual = len(payload) - header_size
    if actual < data_size:
        raise DataError(f"{source}: truncated: dimensions {shape} need {data_size} data bytes, the file has {actual}")
    if actual > data_size:
        raise DataError(f"{source}: {actual - data_size} unexpected trailing bytes after the {shape} data")
    try:
        array = np.frombuffer(payload, dtype=dtype, offset=header_size).reshape(shape)
    except ValueError:  # an empty array whose other dimensions are too large for numpy
        raise DataError(f"{source}: dimensions {shape} describe no data that numpy can hold; not a usable IDX file") from None
    return array.astype(dtype.newbyteorder("="))


def read_bytes(path: Path | str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None


def read_idx(path: Path | str) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw."""
    return parse_idx(gunzip_if_needed(read_bytes(path), path), path)


def check_images_and_labels(images: np.ndarray, labels: np.ndarray | None, images_path: Path, labels_path: Path | None) -> None:
    """Datasets need (N, H, W) uint8 images and, when present, N labels."""
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}")
    if labels is not None:
        check_labels(labels, len(images), str(labels_path))


def check_labels(labels: np.ndarray, count: int, source: str) -> None:
    """Labels are class indices: non-negative integers, one per image."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{source}: expected integer labels of shape (N,), got {labels.dtype} {labels.shape}")
    if len(labels) != count:
        raise DataError(f"{source}: {len(labels)} labels for {count} images; labels and images must come from the same split")
    if count and labels.min() < 0:
        raise DataError(f"{source}: labels must be non-negative class indices, found {labels.min()}")


def find_split_files(folder: Path, split: str) -> tuple[Path, Path | None]:
    """The images file of a split in a folder and its labels file when there is one.

    A file belongs to the train split when its name starts with train-, to the test split with
    t10k- or test-; the labels file shares its images file's prefix. An uncompressed file wins
    over its .gz twin (as in a folder where the archives were unpacked next to themselves).
    """
    if not folder.is_dir():
        raise DataError(f"idx dataset folder {folder} does not exist; give idx:DIR with a folder holding *{IMAGES_SUFFIX}[.gz] files")
    pattern = re.compile(rf"(.+){IMAGES_SUFFIX}(\.gz)?")
    candidates = sorted(
        (path for path in folder.iterdir() if pattern.fullmatch(path.name) and path.name.startswith(SPLIT_PREFIXES[split])),
        key=lambda path: (path.suffix == ".gz", path.name),
    )
    if not candidates:
        present = sorted(path.name for path in folder.iterdir() if "ubyte" in path.name) or ["no IDX files"]
        raise DataError(
            f"no {split} split in {folder}: need a {' or '.join(f'{prefix}*' for prefix in SPLIT_PREFIXES[split])} file ending in {IMAGES_SUFFIX}[.gz]; "
            f"the folder has {', '.join(present)}"
        )
    images = candidates[0]
    prefix = pattern.fullmatch(images.name).group(1)
    labels = [folder / f"{prefix}{LABELS_SUFFIX}{ext}" for ext in ("", ".gz")]
    return images, next((path for path in labels if path.is_file()), None)


def load_idx_folder(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, H, W) uint8 images and (N,) labels or None, from a folder of IDX files."""
    images_path, labels_path = find_split_files(folder, split)
    images = read_idx(images_path)
    labels = read_idx(labels_path) if labels_path else None
    check_images_and_labels(images, labels, images_path, labels_path)
    return images, labels
