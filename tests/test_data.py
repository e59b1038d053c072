"""Data loading: the IDX reader, idx:/npz:/folder:/toy: sources, resizing and the model range."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.config import DataConfig
from gankit.data import Dataset, load_dataset, read_idx, save_npz, to_model_range, toy_modes
from gankit.data import npz as npz_module
from gankit.errors import DataError

FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")
DTYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array as IDX (big-endian, as the format requires)."""
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    header = bytes([0, 0, DTYPE_CODES[dtype], array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + array.astype(dtype).tobytes()


def write(path: Path, data: bytes, compress: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def load(dataset: str, **options) -> Dataset:
    return load_dataset(DataConfig(dataset=dataset, **options))


def random_images(count: int, height: int = 28, width: int = 28, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width), dtype=np.uint8)


# --- IDX reader -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_decodes_every_dtype_gzip_or_raw(tmp_path, dtype, compress):
    array = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    # no .gz suffix even when compressed: the reader must go by the magic bytes
    result = read_idx(write(tmp_path / "data.idx", idx_bytes(array), compress))
    assert result.shape == (2, 3, 5)
    assert result.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(result, array)


def _good_payload() -> bytes:
    return idx_bytes(random_images(4, 5, 5))


@pytest.mark.parametrize(
    "broken, message",
    [
        (lambda: b"\x08\x03" + _good_payload()[2:], "not an IDX file"),
        (lambda: b"\0\0\x07" + _good_payload()[3:], "not an IDX file"),
        (lambda: b"\0\0\x08\x00", "not an IDX file"),
        (lambda: b"", "not an IDX file"),
        (lambda: _good_payload()[:-7], "truncated: dimensions (4, 5, 5) need 100 data bytes, the file has 93"),
        (lambda: _good_payload()[:10], "truncated IDX header"),
        (lambda: _good_payload() + b"xyz", "3 unexpected trailing bytes"),
        (lambda: bytes([0, 0, 8, 3]) + np.array([5, 5, 5], ">u4").tobytes() + bytes(100), "dimensions (5, 5, 5) need 125"),
    ],
    ids=["magic", "dtype-code", "zero-dims", "empty", "truncated", "short-header", "trailing", "wrong-dims"],
)
@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_rejects_broken_files_naming_file_and_problem(tmp_path, broken, message, compress):
    path = write(tmp_path / "broken-idx3-ubyte.gz", broken(), compress)
    with pytest.raises(DataError, match="broken-idx3-ubyte") as caught:
        read_idx(path)
    assert message in str(caught.value)


@pytest.mark.parametrize("damage", [lambda gz: gz[:-20], lambda gz: gz[:30] + bytes(40) + gz[70:]], ids=["cut", "garbled"])
def test_read_idx_rejects_corrupt_gzip(tmp_path, damage):
    path = tmp_path / "images.gz"
    path.write_bytes(damage(gzip.compress(idx_bytes(random_images(20)))))
    with pytest.raises(DataError, match=r"images\.gz: corrupt gzip data"):
        read_idx(path)


def test_read_idx_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read .*nothing-here"):
        read_idx(tmp_path / "nothing-here")


# --- idx:DIR -----------------------------------------------------------------------------------


def make_idx_folder(folder: Path, prefix: str, count: int, label_count: int | None = None, compress: bool = True) -> np.ndarray:
    images = random_images(count, seed=count)
    suffix = ".gz" if compress else ""
    write(folder / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images), compress)
    if label_count is not None:
        write(folder / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes((np.arange(label_count) % 10).astype(np.uint8)), compress)
    return images


@pytest.mark.parametrize("prefix", ["t10k", "test"])
def test_idx_folder_selects_split_by_prefix(tmp_path, prefix):
    train = make_idx_folder(tmp_path, "train", 6, 6)
    test = make_idx_folder(tmp_path, prefix, 4, 4, compress=False)
    loaded_train, loaded_test = load(f"idx:{tmp_path}"), load(f"idx:{tmp_path}", split="test")
    assert torch.equal(loaded_train.samples[:, 0], torch.from_numpy(train))
    assert torch.equal(loaded_test.samples[:, 0], torch.from_numpy(test))
    assert loaded_test.labels.tolist() == [0, 1, 2, 3] and loaded_test.labels.dtype == torch.int64
    assert loaded_test.num_classes == 4


def test_idx_folder_without_labels_has_none(tmp_path):
    make_idx_folder(tmp_path, "train", 3)
    dataset = load(f"idx:{tmp_path}")
    assert dataset.labels is None and dataset.num_classes is None and len(dataset) == 3


def test_idx_folder_missing_split_lists_what_is_there(tmp_path):
    make_idx_folder(tmp_path, "train", 3, 3)
    with pytest.raises(DataError, match="no test split") as caught:
        load(f"idx:{tmp_path}", split="test")
    assert "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz" in str(caught.value)


def test_idx_folder_label_count_must_match(tmp_path):
    make_idx_folder(tmp_path, "train", 5, 4)
    with pytest.raises(DataError, match="4 labels for 5 images"):
        load(f"idx:{tmp_path}")


def test_idx_folder_rejects_images_that_are_not_3d(tmp_path):
    write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros(10, np.uint8)))
    with pytest.raises(DataError, match=r"expected uint8 images of shape \(N, H, W\)"):
        load(f"idx:{tmp_path}")


def test_idx_folder_that_does_not_exist(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load(f"idx:{tmp_path / 'missing'}")


def test_shared_mnist_10k_loads(mnist_10k):
    dataset = load(f"idx:{mnist_10k}")
    assert dataset.samples.shape == (10_000, 1, 28, 28) and dataset.samples.dtype == torch.uint8
    assert sorted(dataset.labels.unique().tolist()) == list(range(10)) and dataset.num_classes == 10
    assert dataset.sample_shape == (1, 28, 28) and dataset.name == f"idx:{mnist_10k}"
    assert 20 < dataset.samples.float().mean() < 60  # digits: mostly black background


@pytest.mark.skipif(not FASHION_SYSTEM.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_package_passes_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("GANKIT_DATA", raising=False)
    train, test = load("fashion-mnist", download=False), load("fashion-mnist", split="test", download=False)
    assert train.samples.shape == (60_000, 1, 28, 28) and test.samples.shape == (10_000, 1, 28, 28)
    assert train.name == "fashion-mnist/train" and test.num_classes == 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10


# --- resizing and channels ---------------------------------------------------------------------


def test_image_size_resizes_with_antialiasing_and_channels_3_replicates(tmp_path):
    images = np.zeros((2, 28, 28), np.uint8)
    images[0] = 200
    images[1, :, ::2] = 255  # stripes average to gray when antialiased
    write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(images))
    dataset = load(f"idx:{tmp_path}", image_size=14, channels=3)
    assert dataset.samples.shape == (2, 3, 14, 14) and dataset.samples.dtype == torch.uint8
    assert (dataset.samples[0] == 200).all()
    assert 100 < dataset.samples[1].float().mean() < 155 and dataset.samples[1].float().std() < 20
    assert torch.equal(dataset.samples[:, 0], dataset.samples[:, 2])


def test_non_square_arrays_are_scaled_by_shorter_side_and_center_cropped(tmp_path):
    images = np.zeros((1, 20, 40), np.uint8)
    images[:, :, 10:30] = 255  # the central square is white, the sides black
    np.savez(tmp_path / "wide.npz", images=images)
    dataset = load(f"npz:{tmp_path / 'wide.npz'}", image_size=10)
    assert dataset.samples.shape == (1, 1, 10, 10)
    assert (dataset.samples[0, 0, :, 1:-1] == 255).all()


def test_channels_1_converts_rgb_to_luminance(tmp_path):
    images = np.zeros((1, 4, 4, 3), np.uint8)
    images[..., 0] = 255
    np.savez(tmp_path / "red.npz", images=images)
    assert load(f"npz:{tmp_path / 'red.npz'}", channels=1).samples.unique().tolist() == [76]


# --- npz:FILE ----------------------------------------------------------------------------------


def test_save_npz_round_trips_through_load(tmp_path):
    images = torch.randint(0, 256, (5, 3, 8, 6), dtype=torch.uint8)
    labels = torch.tensor([0, 2, 1, 2, 0])
    path = tmp_path / "out" / "augmented.npz"
    save_npz(path, images, labels)
    assert [p.name for p in path.parent.iterdir()] == ["augmented.npz"]
    assert np.load(path)["images"].shape == (5, 8, 6, 3)  # stored channel-last for numpy users
    dataset = load(f"npz:{path}")
    assert torch.equal(dataset.samples, images) and torch.equal(dataset.labels, labels)
    assert dataset.num_classes == 3


def test_save_npz_failure_leaves_no_file(tmp_path, monkeypatch):
    def fail_midway(out, **arrays):
        out.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(npz_module.np, "savez_compressed", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        save_npz(tmp_path / "x.npz", torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", [(3, 5, 7), (3, 5, 7, 1), (3, 1, 5, 7)])
def test_npz_grayscale_layouts(tmp_path, shape):
    images = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    np.savez(tmp_path / "gray.npz", images=images)
    dataset = load(f"npz:{tmp_path / 'gray.npz'}")
    assert dataset.samples.shape == (3, 1, 5, 7) and dataset.labels is None
    assert torch.equal(dataset.samples.flatten(), torch.from_numpy(images).flatten())


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"pixels": np.zeros((2, 4, 4), np.uint8)}, "no 'images'"),
        ({"images": np.zeros((2, 4, 4), np.float32)}, "is float32"),
        ({"images": np.zeros((2, 5, 4, 4), np.uint8)}, r"has shape \(2, 5, 4, 4\)"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(3, np.int64)}, "3 labels for 2 images"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(2, np.float32)}, "expected integer labels"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, -1])}, "non-negative"),
        ({"images": np.array([{"x": 1}, None], dtype=object)}, "pickled Python objects"),
    ],
    ids=["missing-key", "dtype", "shape", "label-count", "label-dtype", "negative-label", "pickle"],
)
def test_npz_bad_inputs_say_what_was_expected(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load(f"npz:{tmp_path / 'bad.npz'}")


@pytest.mark.parametrize("content", [b"garbage", None], ids=["not-npz", "npy"])
def test_npz_file_that_is_not_an_archive(tmp_path, content):
    path = tmp_path / "data.npz"
    if content is None:
        with open(path, "wb") as out:
            np.save(out, np.zeros((2, 4, 4), np.uint8))
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match="data.npz"):
        load(f"npz:{path}")


# --- folder:DIR --------------------------------------------------------------------------------


def save_image(path: Path, size: tuple[int, int], color, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_folder_with_class_subfolders(tmp_path):
    save_image(tmp_path / "cats" / "a.png", (40, 20), (255, 0, 0))
    save_image(tmp_path / "cats" / "deeper" / "b.JPG", (30, 30), (0, 255, 0))
    save_image(tmp_path / "dogs" / "c.jpeg", (50, 60), 128, mode="L")
    save_image(tmp_path / ".hidden" / "d.png", (8, 8), (0, 0, 0))
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    dataset = load(f"folder:{tmp_path}", image_size=16)
    assert dataset.samples.shape == (3, 3, 16, 16) and dataset.samples.dtype == torch.uint8
    assert dataset.labels.tolist() == [0, 0, 1] and dataset.class_names == ["cats", "dogs"] and dataset.num_classes == 2
    assert dataset.samples[0, :, 8, 8].tolist() == [255, 0, 0]
    assert (dataset.samples[2] == 128).all()  # grayscale replicated into RGB
    assert load(f"folder:{tmp_path}").sample_shape == (3, 64, 64)


def test_folder_center_crops_after_scaling_shorter_side(tmp_path):
    image = Image.new("RGB", (60, 20), (0, 0, 255))
    image.paste((255, 0, 0), (20, 0, 40, 20))  # the central square is red
    image.save(tmp_path / "wide.png")
    dataset = load(f"folder:{tmp_path}", image_size=10)
    assert dataset.labels is None and dataset.class_names is None
    assert (dataset.samples[0, 0, :, 1:-1] == 255).all() and (dataset.samples[0, 2, :, 1:-1] == 0).all()


def test_folder_grayscale_detection_and_forced_channels(tmp_path):
    save_image(tmp_path / "a.png", (8, 8), 10, mode="L")
    save_image(tmp_path / "b.png", (8, 8), (10, 200), mode="LA")
    assert load(f"folder:{tmp_path}").sample_shape == (1, 64, 64)
    assert load(f"folder:{tmp_path}", channels=3, image_size=8).sample_shape == (3, 8, 8)
    save_image(tmp_path / "sub" / "c.png", (8, 8), (0, 255, 0))  # root images mixed with a subfolder: no labels
    rgb = load(f"folder:{tmp_path}", image_size=8)
    assert rgb.sample_shape == (3, 8, 8) and rgb.labels is None
    assert load(f"folder:{tmp_path}", channels=1, image_size=8).samples[2].unique().tolist() == [150]


def test_folder_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(tmp_path / "deep.png")
    assert load(f"folder:{tmp_path}", image_size=8).samples.unique().tolist() == [128]


def test_folder_unreadable_image_names_the_file(tmp_path):
    save_image(tmp_path / "good.png", (8, 8), 0, mode="L")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"broken\.png: cannot read this image"):
        load(f"folder:{tmp_path}")


def test_folder_empty_or_missing(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no images"):
        load(f"folder:{tmp_path}")
    with pytest.raises(DataError, match="does not exist"):
        load(f"folder:{tmp_path / 'nope'}")


# --- toy:NAME ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, modes, std", [("ring8", 8, 0.01), ("grid25", 25, 0.05)])
def test_toy_mixture_modes_and_samples(name, modes, std):
    centers, mode_std = toy_modes(name)
    assert centers.shape == (modes, 2) and mode_std == std
    assert len(torch.unique(centers.round(decimals=3), dim=0)) == modes
    dataset = load_dataset(DataConfig(dataset=f"toy:{name}", generated_samples=5000), seed=3)
    assert dataset.samples.shape == (5000, 2) and dataset.samples.dtype == torch.float32
    assert dataset.num_classes == modes and dataset.labels.dtype == torch.int64
    nearest = torch.cdist(dataset.samples, centers).argmin(dim=1)
    assert torch.equal(nearest, dataset.labels)
    assert (dataset.samples - centers[dataset.labels]).abs().max() < 6 * std
    counts = torch.bincount(dataset.labels, minlength=modes)
    assert counts.min() > 0.6 * 5000 / modes  # components chosen uniformly


def test_ring8_is_evenly_spaced_on_the_unit_circle():
    centers, _ = toy_modes("ring8")
    assert torch.allclose(centers.norm(dim=1), torch.ones(8))
    angles = torch.atan2(centers[:, 1], centers[:, 0]).remainder(2 * torch.pi).sort().values
    assert torch.allclose(angles.diff(), torch.full((7,), torch.pi / 4), atol=1e-5)


def test_generated_samples_are_reproducible_from_the_seed():
    config = DataConfig(dataset="toy:grid25", generated_samples=100)
    assert torch.equal(load_dataset(config, seed=1).samples, load_dataset(config, seed=1).samples)
    assert not torch.equal(load_dataset(config, seed=1).samples, load_dataset(config, seed=2).samples)


def test_unknown_toy_lists_the_known_ones():
    with pytest.raises(DataError, match="toy:ring8, toy:grid25"):
        load("toy:spiral")


# --- the rest of the API -----------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["cifar10", "idx:", "csv:/tmp/x.csv", "toy:"])
def test_unknown_dataset_lists_accepted_forms(spec):
    with pytest.raises(DataError, match="use one of mnist, fashion-mnist, idx:DIR, folder:DIR, npz:FILE, toy:ring8"):
        load(spec)


def test_to_model_range():
    assert to_model_range(torch.tensor([0, 255, 51], dtype=torch.uint8)).tolist() == pytest.approx([-1.0, 1.0, -0.6])
    assert to_model_range(torch.tensor([0, 255], dtype=torch.uint8)).dtype == torch.float32
    floats = torch.tensor([0.25, -3.0], dtype=torch.float64)
    assert to_model_range(floats).dtype == torch.float32 and to_model_range(floats).tolist() == [0.25, -3.0]


def test_dataset_to_device_keeps_everything_else():
    dataset = Dataset(torch.zeros(4, 2), torch.arange(4), 4, "toy:x", ["a"])
    moved = dataset.to("cpu")
    assert moved.name == "toy:x" and moved.class_names == ["a"] and len(moved) == 4 and moved.sample_shape == (2,)
    with pytest.raises(ValueError, match="3 labels for 4 samples"):
        Dataset(torch.zeros(4, 2), torch.arange(3), 3, "bad")
