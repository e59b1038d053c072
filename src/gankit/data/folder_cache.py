"""A decoded image folder kept as one .npy file, so that a second run on the same folder skips decoding
and a large one can be memory-mapped instead of read into memory.

The file is <cache dir>/<digest>.npy; the digest covers the sorted file list (paths relative to the
folder, sizes, modification times), the decoding settings (size, channels, background, fit) and
CACHE_FORMAT, so a changed folder or setting names another file. A file is only used when its .npy
header says uint8 of the expected shape and its size matches the header exactly; anything else is
decoded again and replaced. Writing goes through files.atomic_write, so a killed decode leaves no
partial cache (at most a hidden .part file). The cache dir is data.cache_dir, else $GANKIT_CACHE_DIR,
else ~/.cache/gankit/folders (or $XDG_CACHE_HOME/gankit/folders); deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gankit.data.sources import cache_dir as default_cache_dir
from gankit.files import atomic_write

CACHE_FORMAT = 1  # bump when decoding changes what the same settings produce
_warned: set[Path] = set()


def location(enabled: bool, cache_dir: str | None) -> Path | None:
    """Where decoded folders are cached (None: caching is off)."""
    if not enabled:
        return None
    return Path(cache_dir or os.environ.get("GANKIT_CACHE_DIR") or default_cache_dir("folders")).expanduser()


def writable(folder: Path) -> Path | None:
    """folder, created if needed; None (and one warning per folder) when it cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"{folder} is not writable")
    except OSError as err:
        _warn_once(folder, err)
        return None
    return folder


def cache_file(folder: Path, files: Sequence[tuple[str, int, int]], decoding: dict[str, Any]) -> Path:
    """folder/<digest>.npy for the files (path below the folder, size, mtime in ns) decoded with these settings."""
    digest = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, **decoding}, sort_keys=True).encode())
    for name, size, mtime_ns in files:
        digest.update(f"{name}\0{size}\0{mtime_ns}\n".encode())
    return folder / f"{digest.hexdigest()[:32]}.npy"


def read(path: Path, count: int, channels: Sequence[int], size: int, map_above_bytes: int) -> np.ndarray | None:
    """The cached (count, C, size, size) uint8 array, C one of channels: memory-mapped read-only when
    larger than map_above_bytes, else in memory. None when there is no usable file (a damaged one is reported)."""
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            if version != (1, 0):
                return _damaged(path, f".npy format {version}, not the (1, 0) gankit writes")
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
            expected_bytes = file.tell() + math.prod(shape)
            actual_bytes = os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        return _damaged(path, str(err))
    wanted = f"uint8 ({count}, {'|'.join(map(str, channels))}, {size}, {size})"
    if dtype != np.uint8 or fortran_order or len(shape) != 4 or shape[0] != count or shape[1] not in channels or shape[2:] != (size, size):
        return _damaged(path, f"it holds {dtype} {shape}, not {wanted}")
    if actual_bytes != expected_bytes:
        return _damaged(path, f"{actual_bytes} bytes where its header implies {expected_bytes}")
    try:
        return np.load(path, mmap_mode="r" if math.prod(shape) > map_above_bytes else None, allow_pickle=False)
    except (OSError, ValueError) as err:
        return _damaged(path, str(err))


def write(path: Path, shape: tuple[int, ...], chunks: Iterable[np.ndarray]) -> bool:
    """Stream the uint8 chunks (along the first axis) into path as one .npy; False (and a warning) if it cannot be written."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
    try:
        with atomic_write(path) as out:
            np.lib.format.write_array_header_1_0(out, header)
            for chunk in chunks:
                out.write(np.ascontiguousarray(chunk, dtype=np.uint8).data)
    except OSError as err:
        _warn_once(path.parent, err)
        return False
    return True


def _damaged(path: Path, reason: str) -> None:
    print(f"gankit: {path} is not a usable image cache ({reason}); decoding the folder again", file=sys.stderr, flush=True)


def _warn_once(folder: Path, err: OSError) -> None:
    if folder not in _warned:
        _warned.add(folder)
        print(
            f"gankit: cannot cache decoded images in {folder} ({err.strerror or err}); decoding without a cache. "
            "Set data.cache_dir (or $GANKIT_CACHE_DIR) to a writable folder, or data.cache=false",
            file=sys.stderr,
            flush=True,
        )
