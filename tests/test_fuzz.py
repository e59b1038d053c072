"""Bad input never hurts: random and mutated files and config values either load or raise a GankitError
whose message is one line; any other exception, a multi-line message or a hang fails the test.

Each target prints how many cases it tried (visible with or without -s).
"""

import gzip
import io

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from gankit.config import DataConfig, apply_overrides, from_dict, load_config
from gankit.data import load_dataset
from gankit.data.idx import parse_idx
from gankit.errors import GankitError

EXAMPLES = 150
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], database=None)
TRIED: dict[str, int] = {}


def outcome(target: str, load) -> str:
    """Run one case: 'loaded' or 'refused' (a one-line GankitError); anything else propagates and fails the test."""
    TRIED[target] = TRIED.get(target, 0) + 1
    try:
        load()
    except GankitError as err:
        message = str(err)
        assert message and "\n" not in message, f"{target}: a multi-line error: {message!r}"
        return "refused"
    return "loaded"


@pytest.fixture(autouse=True)
def report_count(request, capsys):
    yield
    target = request.node.name.removeprefix("test_")
    if target in TRIED:
        with capsys.disabled():
            print(f"\nfuzz {target}: {TRIED[target]} cases tried")


# --- IDX ----------------------------------------------------------------------------------------
def idx_bytes(data: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, data.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in data.shape)
    return header + data.tobytes()


VALID_IMAGES = idx_bytes(np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5))
VALID_LABELS = idx_bytes(np.array([0, 1, 2], dtype=np.uint8))


def mutate(payload: bytes, data: st.DataObject) -> bytes:
    """Flip bytes, truncate, append, or overwrite the header (magic, type code, dimensions)."""
    mutated = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        kind = data.draw(st.sampled_from(["flip", "truncate", "append", "header"]), label="kind")
        if kind == "flip" and mutated:
            mutated[data.draw(st.integers(0, len(mutated) - 1))] ^= data.draw(st.integers(1, 255))
        elif kind == "truncate":
            del mutated[data.draw(st.integers(0, len(mutated))) :]
        elif kind == "append":
            mutated += data.draw(st.binary(max_size=64))
        else:
            position = data.draw(st.integers(0, min(15, max(len(mutated) - 1, 0))))
            mutated[position : position + 1] = data.draw(st.binary(min_size=1, max_size=1))
    return bytes(mutated)


@FUZZ
@given(payload=st.one_of(st.binary(max_size=256), st.builds(lambda dims, body: bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + body,
                                                             st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4), st.binary(max_size=64))))
@example(payload=bytes([0, 0, 8, 4]) + (2**32 - 1).to_bytes(4, "big") * 4)  # the size overflows int64
def test_idx_parser(payload):
    outcome("idx_parser", lambda: parse_idx(payload, "fuzz.idx"))


@FUZZ
@given(data=st.data(), compress=st.booleans())
def test_idx_folder(tmp_path_factory, data, compress):
    folder = tmp_path_factory.mktemp("idx")
    images, labels = mutate(VALID_IMAGES, data), mutate(VALID_LABELS, data) if data.draw(st.booleans()) else VALID_LABELS
    suffix = ".gz" if compress else ""
    (folder / f"train-images-idx3-ubyte{suffix}").write_bytes(gzip.compress(images) if compress else images)
    (folder / f"train-labels-idx1-ubyte{suffix}").write_bytes(gzip.compress(labels) if compress else mutate(labels, data))
    outcome("idx_folder", lambda: load_dataset(DataConfig(dataset=f"idx:{folder}")))


# --- image folders ------------------------------------------------------------------------------
IMAGE_MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"]


def image_file(mode: str, size: tuple[int, int], fmt: str, seed: int) -> bytes:
    """Random pixels in `mode`, encoded as PNG or JPEG (JPEG only holds L and RGB)."""
    rng = np.random.default_rng(seed)
    width, height = size
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)
    if fmt == "JPEG" and mode not in ("L", "RGB"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@FUZZ
@given(
    data=st.data(),
    files=st.lists(
        st.tuples(st.sampled_from(IMAGE_MODES), st.integers(1, 40), st.integers(1, 40), st.sampled_from(["PNG", "JPEG"]), st.sampled_from(["keep", "mutate", "random"])),
        min_size=1, max_size=4,
    ),
    image_size=st.one_of(st.none(), st.integers(8, 32)),
    channels=st.sampled_from([None, 1, 3]),
)
def test_image_folder(tmp_path_factory, data, files, image_size, channels):
    root = tmp_path_factory.mktemp("folder")
    for index, (mode, width, height, fmt, treatment) in enumerate(files):
        payload = image_file(mode, (width, height), fmt, index)
        if treatment == "mutate":
            payload = mutate(payload, data)
        elif treatment == "random":
            payload = data.draw(st.binary(max_size=128))
        (root / f"{index}.{'png' if fmt == 'PNG' else 'jpg'}").write_bytes(payload)
    config = DataConfig(dataset=f"folder:{root}", image_size=image_size, channels=channels)
    outcome("image_folder", lambda: load_dataset(config))


# --- npz ----------------------------------------------------------------------------------------
DTYPES = [np.uint8, np.int8, np.int64, np.float32, np.bool_, np.uint16]


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@st.composite
def arrays(draw):
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=5)))
    dtype = draw(st.sampled_from(DTYPES))
    return np.zeros(shape, dtype) + np.asarray(draw(st.integers(0, 3))).astype(dtype)


@FUZZ
@given(
    data=st.data(),
    contents=st.dictionaries(st.sampled_from(["images", "labels", "other"]), st.one_of(arrays(), st.just(np.array([{"x": 1}], dtype=object))), max_size=3),
    treatment=st.sampled_from(["keep", "mutate", "random", "single array"]),
)
def test_npz(tmp_path_factory, data, contents, treatment):
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    if treatment == "single array":
        buffer = io.BytesIO()
        np.save(buffer, next(iter(contents.values()), np.zeros(3)), allow_pickle=True)
        payload = buffer.getvalue()
    else:
        payload = npz_bytes(contents)
    if treatment == "mutate":
        payload = mutate(payload, data)
    elif treatment == "random":
        payload = data.draw(st.binary(max_size=256))
    path.write_bytes(payload)
    result = outcome("npz", lambda: load_dataset(DataConfig(dataset=f"npz:{path}")))
    if treatment == "keep" and "images" in contents and contents["images"].dtype == object:
        assert result == "refused", "an npz whose images are pickled objects was loaded"


def test_npz_pickled_objects_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    path.write_bytes(npz_bytes({"images": np.array([object()], dtype=object)}))
    with pytest.raises(GankitError, match="pickled Python objects, which gankit never loads"):
        load_dataset(DataConfig(dataset=f"npz:{path}"))


# --- config ---------------------------------------------------------------------------------------
SECTIONS = {"data": ["dataset", "image_size", "channels", "generated_samples"], "model": ["name", "z_dim", "width", "d_output"],
            "loss": ["name"], "stabilizers": ["pack", "r1", "ema_decay", "n_critic"], "optim": ["lr_g", "beta1", "optimizer"],
            "train": ["batch_size", "epochs", "seed", "max_abs_loss", "divergence_lr_factor"], "eval": ["every_epochs", "best_metric"],
            "watchdog": ["every_epochs", "min_coverage"]}
KEYS = st.one_of(st.sampled_from([f"{section}.{key}" for section, keys in SECTIONS.items() for key in keys]), st.sampled_from(list(SECTIONS)),
                 st.text(min_size=1, max_size=12).filter(lambda key: "=" not in key))
VALUES = st.one_of(st.sampled_from(["1", "-1", "0", "1e-4", "true", "null", "hinge", "[1, 2]", "{a: 1}", "'x'", "2024-01-01", ".nan", "1e999", "]["]),
                   st.text(max_size=12))
YAML_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True), st.text(max_size=8))


@FUZZ
@given(overrides=st.lists(st.builds(lambda key, value: f"{key}={value}", KEYS, VALUES) | st.text(max_size=20), max_size=4))
def test_config_overrides(overrides):
    outcome("config_overrides", lambda: from_dict(apply_overrides({}, overrides)))


@FUZZ
@given(document=st.dictionaries(st.sampled_from(list(SECTIONS) + ["name", "extra"]),
                                st.one_of(YAML_LEAVES, st.dictionaries(st.sampled_from(sum(SECTIONS.values(), [])) | st.text(max_size=6), YAML_LEAVES, max_size=3)),
                                max_size=4),
       mangle=st.sampled_from(["none", "truncate", "tabs"]))
def test_config_yaml(tmp_path_factory, document, mangle):
    text = yaml.safe_dump(document)
    text = {"none": text, "truncate": text[: len(text) // 2], "tabs": text.replace("  ", "\t")}[mangle]
    path = tmp_path_factory.mktemp("config") / "run.yaml"
    path.write_text(text)
    outcome("config_yaml", lambda: load_config(path))

