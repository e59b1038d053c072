"""Evaluators: the shipped weights load hash-verified and score as their metadata claims; training is reproducible."""

from dataclasses import make_dataclass, replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gankit.config import DataConfig
from gankit.data import load_dataset, save_npz, to_model_range
from gankit.errors import CheckpointError, DataError
from gankit.metrics import evaluator as ev
from gankit.metrics import evaluator_training as evtrain

TARGETS = {"fashion-mnist": 0.91, "mnist": 0.97}


@pytest.fixture(scope="module")
def shipped() -> dict:
    return {name: ev.load_evaluator(name) for name in TARGETS}


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory) -> str:
    """200 easy 28x28 images: class 0 a horizontal bar, class 1 a vertical one, at random places."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 40, (200, 1, 28, 28), dtype=np.uint8)
    labels = np.arange(200) % 2
    for image, label, at in zip(images, labels, rng.integers(4, 22, 200)):
        if label:
            image[0, 4:24, at : at + 3] = 255
        else:
            image[0, at : at + 3, 4:24] = 255
    path = tmp_path_factory.mktemp("tiny") / "bars.npz"
    save_npz(path, images, labels)
    return f"npz:{path}"


def test_shipped_evaluators_are_verified_and_record_their_training(shipped):
    for name, (model, info) in shipped.items():
        assert info.sha256 == ev.SHIPPED_SHA256[name]
        assert info.test_accuracy >= TARGETS[name], name
        assert info.seed == 0 and info.train_command.startswith("gankit evaluator train --dataset ")
        assert f"--out src/gankit/metrics/weights/{name}.safetensors" in info.train_command
        assert (model.num_classes, model.num_features, model.training) == (10, 128, False)
    assert shipped["fashion-mnist"][1].split == "fashion-mnist test split (10000 images)"
    assert shipped["mnist"][1].dataset.endswith("mnist-10k") and shipped["mnist"][1].train_size == 8000


def test_fashion_evaluator_scores_on_the_real_test_split(shipped):
    try:
        test = load_dataset(DataConfig(dataset="fashion-mnist", split="test", download=False))
    except DataError:
        pytest.skip("Fashion-MNIST is not installed")
    first = replace(test, samples=test.samples[:2000], labels=test.labels[:2000])
    assert evtrain.evaluate_accuracy(shipped["fashion-mnist"][0], first) >= 0.90


def test_mnist_evaluator_scores_on_its_held_out_part_of_mnist_10k(shipped, mnist_10k):
    split = evtrain.evaluation_split(f"idx:{mnist_10k}")
    model, info = shipped["mnist"]
    assert len(split.held_out) == info.held_out_size == 2000
    assert evtrain.evaluate_accuracy(model, split.held_out) >= 0.96


def test_features_and_logits_shapes_and_determinism(shipped):
    model, _ = shipped["mnist"]
    pixels = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    features = model.features(to_model_range(pixels))
    assert features.shape == (5, model.num_features) and features.dtype == torch.float32
    assert torch.equal(features, model.features(to_model_range(pixels)))
    assert torch.equal(features, model.features(pixels))  # uint8 is converted the same way
    assert model(pixels).shape == (5, 10)


@pytest.mark.parametrize("shape, got", [((2, 3, 32, 32), "got 3x32x32 images"), ((2, 28, 28), r"got a tensor of shape \(2, 28, 28\)")])
def test_wrong_input_shape_is_a_clear_error(shipped, shape, got):
    with pytest.raises(DataError, match=rf"the mnist evaluator takes 1x28x28 images, a \(N, 1, 28, 28\) batch; {got}"):
        shipped["mnist"][0](torch.zeros(shape))


def _flip(path, at):
    payload = bytearray(path.read_bytes())
    payload[at] ^= 0x01
    path.write_bytes(bytes(payload))


@pytest.mark.parametrize("where", ["weights", "metadata"])
def test_a_damaged_file_loaded_by_path_is_refused(tmp_path, where):
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes((ev.WEIGHTS_DIR / "mnist.safetensors").read_bytes())
    payload = copy.read_bytes()
    _flip(copy, len(payload) - 100 if where == "weights" else payload.index(b"torch_version"))
    with pytest.raises(CheckpointError, match="differ from what was recorded at training time"):
        ev.load_evaluator(str(copy))


def test_a_damaged_shipped_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "mnist.safetensors").write_bytes((ev.WEIGHTS_DIR / "mnist.safetensors").read_bytes())
    _flip(tmp_path / "mnist.safetensors", 5000)
    monkeypatch.setattr(ev, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="is not the shipped mnist evaluator's"):
        ev.load_evaluator("mnist")


def test_a_file_from_another_version_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "EvaluatorInfo", make_dataclass("EvaluatorInfo", ["sha256", "name"]))
    with pytest.raises(CheckpointError, match=r"written by another gankit version \(fields \['dataset'"):
        ev.load_evaluator(str(ev.WEIGHTS_DIR / "mnist.safetensors"))


def test_unknown_evaluator_name_is_a_clear_error():
    with pytest.raises(CheckpointError, match="use a shipped one \\(fashion-mnist, mnist\\)"):
        ev.load_evaluator("cifar10")


def test_training_writes_a_loadable_reproducible_file(tmp_path, tiny_npz):
    rng_before = torch.get_rng_state()
    first = evtrain.train_evaluator(tiny_npz, tmp_path / "a" / "bars.safetensors", epochs=1, seed=3, progress=False)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is left alone
    again = evtrain.train_evaluator(tiny_npz, tmp_path / "b" / "bars.safetensors", epochs=1, seed=3, progress=False)
    other_seed = evtrain.train_evaluator(tiny_npz, tmp_path / "c" / "bars.safetensors", epochs=1, seed=4, progress=False)
    weights = [load_file(tmp_path / run / "bars.safetensors") for run in "abc"]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    assert not all(torch.equal(weights[0][key], weights[2][key]) for key in weights[0])
    assert first.test_accuracy == again.test_accuracy and other_seed.seed == 4

    model, info = ev.load_evaluator(str(tmp_path / "a" / "bars.safetensors"))
    assert info == first
    assert (info.name, info.seed, info.num_classes, info.train_size, info.held_out_size) == ("bars", 3, 2, 160, 40)
    assert f"--dataset {tiny_npz}" in info.train_command and "--seed 3" in info.train_command
    assert "held-out 20%" in info.split and 0.0 <= info.test_accuracy <= 1.0
    assert model.num_classes == 2


def test_training_prints_progress_and_the_final_accuracy(tmp_path, tiny_npz, capsys):
    evtrain.train_evaluator(tiny_npz, tmp_path / "bars.safetensors", epochs=1, seed=0)
    out = capsys.readouterr().out
    assert "epoch 1/1  loss" in out and "held-out accuracy" in out and "sha256" in out


def test_training_refuses_images_evaluators_cannot_take(tmp_path):
    save_npz(tmp_path / "rgb.npz", np.zeros((10, 3, 8, 8), np.uint8), np.zeros(10, np.int64))
    with pytest.raises(DataError, match="evaluators take 1x28x28 images or sides from 16 to 256 px; npz:.* gives 3x8x8: set --image-size"):
        evtrain.train_evaluator(f"npz:{tmp_path / 'rgb.npz'}", tmp_path / "x.safetensors", epochs=1, seed=0)


# Sums of the shipped evaluators' features of a fixed image batch, as computed before evaluators took other shapes.
SHIPPED_FEATURE_SUMS = {"fashion-mnist": 352.3660734705627, "mnist": 1162.7771664261818}


def test_shipped_evaluators_keep_their_architecture_and_features(shipped):
    pixels = (torch.arange(4 * 784) * 37 % 256).to(torch.uint8).view(4, 1, 28, 28)
    for name, (model, info) in shipped.items():
        assert info.input_shape == [1, 28, 28] and info.class_names is None and info.balanced_accuracy is None
        assert isinstance(model.body[2], torch.nn.Flatten)  # the flat design, not global pooling
        with torch.no_grad():
            assert float(model.features(pixels).double().sum()) == pytest.approx(SHIPPED_FEATURE_SUMS[name], rel=1e-6)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("fashion-mnist", "fashion-mnist"),
        ("mnist", "mnist"),
        ("idx:../shared/datasets/mnist-10k", "mnist"),
        ("idx:/data/MNIST/", "mnist"),
        ("idx:/usr/share/datasets/fashion-mnist", "fashion-mnist"),
        ("idx:/data/letters", None),
        ("npz:mnist.npz", None),
        ("folder:faces", None),
    ],
)
def test_evaluator_for_dataset(spec, expected):
    assert ev.evaluator_for_dataset(spec) == expected
