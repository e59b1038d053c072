"""Named datasets (mnist, fashion-mnist): find them on disk or download them, and verify them.

Search order for a split's two files under their standard names (directly in each folder or in
a <name>/ subfolder): data.data_dir, $GANKIT_DATA, the user cache ($XDG_CACHE_HOME/gankit/<name>,
else ~/.cache/gankit/<name>), system folders (Debian's dataset-fashion-mnist), and then, when
data.download is on, a download from the official mirrors into the user cache.

A file found locally passes when its MD5 matches the official .gz or, where known, the
decompressed IDX payload (Debian recompresses the archives, so only the payload matches
there). A download must match the official .gz MD5 exactly. The tables below are module
level so that tests (or an in-house mirror) can point them elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import BinaryIO

import numpy as np

from gankit.data.idx import check_images_and_labels, gunzip_if_needed, parse_idx, read_bytes
from gankit.errors import DataError
from gankit.files import atomic_write


@dataclass(frozen=True)
class Checksum:
    gz: str
    payload: str | None = None


SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CHECKSUMS: dict[str, dict[str, Checksum]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": Checksum("f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train-labels-idx1-ubyte.gz": Checksum("d53e105ee54ea40749a09fcbcd1e9432"),
        "t10k-images-idx3-ubyte.gz": Checksum("9fb629c4189551a2d022fa330f9573f3"),
        "t10k-labels-idx1-ubyte.gz": Checksum("ec29112dd5afa0611ce80d1b7f02629c"),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": Checksum("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        "train-labels-idx1-ubyte.gz": Checksum("25c81989df183df01b3e8e0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
        "t10k-images-idx3-ubyte.gz": Checksum("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
        "t10k-labels-idx1-ubyte.gz": Checksum("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
    },
}
MIRRORS: dict[str, list[str]] = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
SYSTEM_DIRS: dict[str, list[Path]] = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}
INSTALL_HINTS = {"fashion-mnist": "apt-get install -y dataset-fashion-mnist"}
NAMED_DATASETS = tuple(CHECKSUMS)
DOWNLOAD_TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 20


def cache_dir(name: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "gankit" / name


def search_dirs(name: str, data_dir: str | Path | None) -> list[Path]:
    roots = [data_dir, os.environ.get("GANKIT_DATA"), cache_dir(name), *SYSTEM_DIRS.get(name, [])]
    folders = []
    for root in (Path(root).expanduser() for root in roots if root):
        folders += [root] if root.name == name else [root, root / name]
    return list(dict.fromkeys(folders))


def load_named(name: str, split: str, data_dir: str | Path | None, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 images and (N,) labels of a named dataset's split, verified."""
    files = SPLIT_FILES[split]
    folders = search_dirs(name, data_dir)
    folder = next((folder for folder in folders if all((folder / file).is_file() for file in files)), None)
    if folder is None:
        folder = _download_or_explain(name, split, folders, download)
    images_path, labels_path = (folder / file for file in files)
    images = read_verified(images_path, CHECKSUMS[name][images_path.name])
    labels = read_verified(labels_path, CHECKSUMS[name][labels_path.name])
    check_images_and_labels(images, labels, images_path, labels_path)
    return images, labels


def read_verified(path: Path, checksum: Checksum) -> np.ndarray:
    """Read an IDX file whose .gz or decompressed payload must have the official MD5."""
    raw = read_bytes(path)
    payload = gunzip_if_needed(raw, path)
    raw_md5 = _md5(raw)
    if raw_md5 == checksum.gz or (checksum.payload and _md5(payload) == checksum.payload):
        return parse_idx(payload, path)
    expected = checksum.gz + (f" (or {checksum.payload} decompressed)" if checksum.payload else "")
    raise DataError(
        f"{path}: checksum mismatch (MD5 {raw_md5}, expected {expected}); "
        f"delete the file so it is downloaded again, or load it unchecked as idx:{path.parent}"
    )


def _download_or_explain(name: str, split: str, folders: list[Path], download: bool) -> Path:
    """Download the split into the cache, or raise one error saying where we looked and what to do."""
    looked = f"{name} {split} split ({' and '.join(SPLIT_FILES[split])}) not found in {', '.join(map(str, folders))}"
    fixes = [INSTALL_HINTS.get(name), "put the files in a folder and pass --data-dir DIR (data.data_dir)", "set data.download=true"]
    if not download:
        raise DataError(f"{looked}; downloading is off. Fix: {'; or '.join(filter(None, fixes))}")
    target = cache_dir(name)
    try:
        for file in SPLIT_FILES[split]:
            if not (target / file).is_file():
                download_file(name, file, target / file)
    except DataError as err:
        raise DataError(f"{looked}; {err}. Fix: {'; or '.join(filter(None, fixes[:2]))}; or retry when online") from None
    return target


def download_file(name: str, file: str, dest: Path) -> None:
    """Try each mirror in turn; the error names every mirror's failure."""
    failures = []
    for mirror in MIRRORS[name]:
        url = mirror + file
        print(f"gankit: downloading {url}", file=sys.stderr, flush=True)
        try:
            fetch(url, dest, CHECKSUMS[name][file].gz)
            return
        except (DataError, OSError, HTTPException, ValueError) as err:
            failures.append(f"{url}: {_describe(err)}")
    raise DataError(f"download of {file} failed ({'; '.join(failures) or 'no mirrors configured'})")


def fetch(url: str, dest: Path, md5: str) -> None:
    """Stream url into dest; dest appears only once complete and verified."""
    with atomic_write(dest) as out:
        received, digest = _stream(url, out)
        if digest != md5:
            raise DataError(f"MD5 {digest} does not match the expected {md5}")
    print(f"gankit: saved {dest} ({received / 1e6:.1f} MB)", file=sys.stderr, flush=True)


def _stream(url: str, out: BinaryIO) -> tuple[int, str]:
    digest, received = hashlib.md5(usedforsecurity=False), 0
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        expected = response.headers.get("Content-Length")
        while chunk := response.read(CHUNK_BYTES):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
    if expected is not None and received != int(expected):
        raise DataError(f"truncated: received {received} of {expected} bytes")
    return received, digest.hexdigest()


def _describe(err: Exception) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
