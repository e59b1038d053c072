"""Named datasets: the local search order, checksum checks and downloads from a local HTTP server."""

from __future__ import annotations

import gzip
import hashlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from gankit.config import DataConfig
from gankit.data import Dataset, load_dataset, sources
from gankit.data.sources import Checksum
from gankit.errors import DataError

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def idx_gz(array: np.ndarray, mtime: int = 0) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return gzip.compress(header + array.tobytes(), mtime=mtime)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def archives(monkeypatch) -> dict[str, bytes]:
    """Small MNIST-shaped files whose MD5s replace the official ones for the test."""
    rng = np.random.default_rng(0)
    split_sizes = {"train": 12, "t10k": 5}
    files = {}
    for split, count in split_sizes.items():
        files[f"{split}-images-idx3-ubyte.gz"] = idx_gz(rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        files[f"{split}-labels-idx1-ubyte.gz"] = idx_gz(np.arange(count, dtype=np.uint8) % 10)
    monkeypatch.setitem(sources.CHECKSUMS, "mnist", {name: Checksum(md5(data)) for name, data in files.items()})
    return files


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty user cache and no other place to find data."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GANKIT_DATA", raising=False)
    return tmp_path / "cache" / "gankit" / "mnist"


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_length: int | None = None  # None: the body's true length
    send_length: bool = True


@dataclass
class Server:
    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def mirror(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}/"

    def serve(self, mirror: str, archives: dict[str, bytes], make_route: Callable[[bytes], Route] = lambda data: Route(body=data)) -> None:
        for name, data in archives.items():
            self.routes[f"/{mirror}/{name}"] = make_route(data)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    state = Server(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state.hits.append(self.path)
            route = state.routes.get(self.path, Route(status=404))
            self.send_response(route.status)
            if route.send_length:
                self.send_header("Content-Length", str(route.content_length or len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def load_mnist(**options) -> Dataset:
    return load_dataset(DataConfig(dataset="mnist", **options))


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/"


# --- downloads ---------------------------------------------------------------------------------


def test_download_verifies_caches_and_is_not_repeated(archives, cache, server, monkeypatch, capsys):
    server.serve("m1", archives)
    monkeypatch.setitem(sources.MIRRORS, "mnist", [server.mirror("m1")])
    dataset = load_mnist(split="test")
    assert dataset.samples.shape == (5, 1, 28, 28) and dataset.labels.tolist() == [0, 1, 2, 3, 4]
    assert dataset.name == "mnist/test"
    assert leftovers(cache) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert (cache / "t10k-images-idx3-ubyte.gz").read_bytes() == archives["t10k-images-idx3-ubyte.gz"]
    assert server.hits == ["/m1/t10k-images-idx3-ubyte.gz", "/m1/t10k-labels-idx1-ubyte.gz"]
    assert "downloading http://127.0.0.1" in capsys.readouterr().err
    assert torch.equal(load_mnist(split="test").samples, dataset.samples)
    assert len(server.hits) == 2  # the second load came from the cache


def test_only_missing_files_are_downloaded(archives, cache, server, monkeypatch):
    cache.mkdir(parents=True)
    (cache / "train-images-idx3-ubyte.gz").write_bytes(archives["train-images-idx3-ubyte.gz"])
    server.serve("m1", archives)
    monkeypatch.setitem(sources.MIRRORS, "mnist", [server.mirror("m1")])
    assert len(load_mnist()) == 12
    assert server.hits == ["/m1/train-labels-idx1-ubyte.gz"]


def cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


@pytest.mark.parametrize(
    "bad_route, failure",
    [
        (lambda data: Route(status=500, body=b"oops"), "HTTP 500"),
        (lambda data: Route(body=cut(data), content_length=len(data)), "truncated: received"),
        (lambda data: Route(body=cut(data), send_length=False), "MD5 "),
        (lambda data: Route(body=flip_last_byte(data)), "MD5 "),
    ],
    ids=["http-500", "content-length-larger-than-body", "body-cut", "wrong-checksum"],
)
def test_failed_mirror_leaves_nothing_and_next_mirror_is_used(archives, cache, server, monkeypatch, bad_route, failure):
    server.serve("bad", archives, bad_route)
    server.serve("good", archives)
    monkeypatch.setitem(sources.MIRRORS, "mnist", [server.mirror("bad"), server.mirror("good")])
    assert len(load_mnist()) == 12
    assert server.hits[:2] == ["/bad/train-images-idx3-ubyte.gz", "/good/train-images-idx3-ubyte.gz"]
    assert leftovers(cache) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]

    # with no good mirror left, the error names the failure and nothing is left behind
    monkeypatch.setitem(sources.MIRRORS, "mnist", [server.mirror("bad")])
    with pytest.raises(DataError) as caught:
        load_mnist(split="test")
    message = str(caught.value)
    assert f"{server.mirror('bad')}t10k-images-idx3-ubyte.gz: {failure}" in message
    assert "mnist test split" in message and "--data-dir" in message
    assert not any(name.startswith("t10k") or name.endswith(".part") for name in leftovers(cache))


def test_error_names_every_mirror_failure(archives, cache, server, monkeypatch):
    server.routes["/down/train-images-idx3-ubyte.gz"] = Route(status=503)
    unreachable = closed_port_url()
    monkeypatch.setitem(sources.MIRRORS, "mnist", [unreachable, server.mirror("down"), server.mirror("missing")])
    with pytest.raises(DataError) as caught:
        load_mnist()
    message = str(caught.value)
    assert f"{unreachable}train-images-idx3-ubyte.gz: " in message
    assert "HTTP 503" in message and "HTTP 404" in message
    assert str(cache) in message  # where it looked
    assert leftovers(cache) == []


def test_download_off_explains_where_it_looked_and_how_to_fix(archives, cache, server, monkeypatch, tmp_path):
    monkeypatch.setitem(sources.MIRRORS, "mnist", [server.mirror("m1")])
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "shared"))
    with pytest.raises(DataError) as caught:
        load_mnist(download=False, data_dir=str(tmp_path / "mine"))
    message = str(caught.value)
    for place in (tmp_path / "mine", tmp_path / "shared" / "mnist", cache):
        assert str(place) in message
    assert "downloading is off" in message and "data.download=true" in message and "--data-dir" in message
    assert server.hits == []


def test_fashion_error_suggests_the_debian_package(cache, monkeypatch):
    monkeypatch.setitem(sources.SYSTEM_DIRS, "fashion-mnist", [])
    with pytest.raises(DataError, match="apt-get install -y dataset-fashion-mnist"):
        load_dataset(DataConfig(dataset="fashion-mnist", download=False))


# --- the local search --------------------------------------------------------------------------


def place(folder: Path, archives: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in archives.items():
        (folder / name).write_bytes(data)
    return folder


def test_search_order_data_dir_then_env_then_cache(archives, cache, tmp_path, monkeypatch):
    train_only = {name: data for name, data in archives.items() if name.startswith("train")}
    place(tmp_path / "mine" / "mnist", train_only)  # a <name>/ subfolder counts too
    place(tmp_path / "shared", archives)
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "shared"))
    assert len(load_mnist(download=False, data_dir=str(tmp_path / "mine"))) == 12
    assert len(load_mnist(download=False, split="test", data_dir=str(tmp_path / "mine"))) == 5  # only in $GANKIT_DATA

    (tmp_path / "shared" / "train-images-idx3-ubyte.gz").write_bytes(b"not checked unless used")
    assert len(load_mnist(download=False, data_dir=str(tmp_path / "mine"))) == 12  # data_dir wins
    with pytest.raises(DataError, match="checksum mismatch"):
        load_mnist(download=False)


def test_local_checksum_mismatch_says_how_to_proceed(archives, cache, tmp_path, monkeypatch):
    other = dict(archives, **{"train-images-idx3-ubyte.gz": idx_gz(np.ones((12, 28, 28), np.uint8))})
    folder = place(tmp_path / "data", other)
    with pytest.raises(DataError) as caught:
        load_mnist(download=False, data_dir=str(folder))
    message = str(caught.value)
    assert str(folder / "train-images-idx3-ubyte.gz") in message and "checksum mismatch" in message
    assert "delete the file" in message and f"idx:{folder}" in message


def test_recompressed_file_passes_by_payload_checksum(archives, cache, tmp_path, monkeypatch):
    """Debian's archives differ from the official .gz but hold the same IDX bytes."""
    name = "train-images-idx3-ubyte.gz"
    payload = gzip.decompress(archives[name])
    recompressed = gzip.compress(payload, compresslevel=1, mtime=12345)
    assert recompressed != archives[name]
    folder = place(tmp_path / "data", dict(archives, **{name: recompressed}))
    monkeypatch.setitem(sources.CHECKSUMS["mnist"], name, Checksum(md5(archives[name]), md5(payload)))
    assert len(load_mnist(download=False, data_dir=str(folder))) == 12

    monkeypatch.setitem(sources.CHECKSUMS["mnist"], name, Checksum(md5(archives[name])))  # no payload MD5 known
    with pytest.raises(DataError, match="checksum mismatch"):
        load_mnist(download=False, data_dir=str(folder))


def test_official_checksum_tables_cover_every_file():
    for name in sources.NAMED_DATASETS:
        assert set(sources.CHECKSUMS[name]) == set(FILES)
        assert all(len(checksum.gz) == 32 for checksum in sources.CHECKSUMS[name].values())
        assert sources.MIRRORS[name]
    assert sources.CHECKSUMS["fashion-mnist"]["train-images-idx3-ubyte.gz"].payload == "f4a8712d7a061bf5bd6d2ca38dc4d50a"
