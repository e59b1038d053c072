"""FID's Inception-v3: the layout of pytorch-fid's weights, loading without unpickling, and eval end to end."""

import hashlib
import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gankit.cli import main
from gankit.data import save_npz
from gankit.errors import CheckpointError
from gankit.metrics.inception import FIDInceptionV3, convert_inception, load_inception

# torchvision's Inception-v3 without its auxiliary head, with the 1008-way fc of the TensorFlow graph:
# 27,161,264 (torchvision, aux head and 1000 classes) - 3,326,696 (aux head) + 16,392 (8 more fc outputs).
EXPECTED_PARAMETERS = 23_850_960
EXPECTED_WITHOUT_FC = 21_785_568
# 94 conv+BN units x 5 tensors (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var) + fc.weight, fc.bias
EXPECTED_KEYS = 472
SPOT_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_4a_3x3.bn.running_var": (192,),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random-weight Inception as a .safetensors file and as a torch.save .pth (with BatchNorm counters, like torchvision's)."""
    root = tmp_path_factory.mktemp("inception")
    torch.manual_seed(0)
    model = FIDInceptionV3()
    state = {name: tensor + 0.01 * torch.randn_like(tensor) for name, tensor in model.state_dict().items()}
    save_file(state, root / "random.safetensors")
    counters = {name.replace("running_mean", "num_batches_tracked"): torch.tensor(0) for name in state if name.endswith("running_mean")}
    torch.save(state | counters, root / "random.pth")
    return root, state


def test_layout_is_pytorch_fids():
    model = FIDInceptionV3()
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMETERS
    assert EXPECTED_PARAMETERS - model.fc.weight.numel() - model.fc.bias.numel() == EXPECTED_WITHOUT_FC
    assert len(state) == EXPECTED_KEYS
    assert {name: tuple(state[name].shape) for name in SPOT_SHAPES} == SPOT_SHAPES
    assert not any("num_batches_tracked" in name or "AuxLogits" in name for name in state)


def test_features_are_2048_finite_and_gray_is_repeated_rgb():
    torch.manual_seed(0)
    model = FIDInceptionV3().eval()
    gray = torch.rand(2, 1, 20, 20) * 2 - 1
    with torch.inference_mode():
        features = model.features(gray)
        rgb = model.features(gray[:1].expand(-1, 3, -1, -1))
        logits = model.head(features)
    assert features.shape == (2, 2048) and features.isfinite().all() and logits.shape == (2, 1008)
    torch.testing.assert_close(features[:1], rgb)
    assert not torch.equal(features[0], features[1])


def test_safetensors_round_trip_and_pickle_needs_trust(weights, capsys):
    root, state = weights
    model, info = load_inception(root / "random.safetensors")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    assert info.sha256 == hashlib.sha256((root / "random.safetensors").read_bytes()).hexdigest()
    assert info.is_published is None and "origin unknown" in info.describe_origin()

    with pytest.raises(CheckpointError, match="pickle.*--trust") as refused:
        load_inception(root / "random.pth")
    assert "\n" not in str(refused.value)
    trusted, pth_info = load_inception(root / "random.pth", trust=True)
    assert torch.equal(trusted.fc.weight, state["fc.weight"])
    assert pth_info.is_published is False and "WARNING" in pth_info.describe_origin()


def test_convert_records_the_source_hash(weights, tmp_path):
    root, state = weights
    with pytest.raises(CheckpointError, match="--trust"):
        convert_inception(root / "random.pth", tmp_path / "out.safetensors", trust=False)
    assert not (tmp_path / "out.safetensors").exists()
    written = convert_inception(root / "random.pth", tmp_path / "out.safetensors", trust=True)
    model, info = load_inception(tmp_path / "out.safetensors")
    assert info == written and info.source_sha256 == hashlib.sha256((root / "random.pth").read_bytes()).hexdigest()
    assert torch.equal(model.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])


@pytest.mark.parametrize("tensors, message", [
    ({"fc.weight": torch.zeros(1008, 2048)}, "471 missing"),
    ({"fc.weight": torch.zeros(10, 2048)}, r"of another shape \(first: fc.weight \(10, 2048\), expected \(1008, 2048\)\)"),
    ({"AuxLogits.fc.weight": torch.zeros(2)}, "1 unexpected"),
])
def test_wrong_files_get_one_line(tmp_path, tensors, message):
    save_file(tensors, tmp_path / "wrong.safetensors")
    with pytest.raises(CheckpointError, match=message) as refused:
        load_inception(tmp_path / "wrong.safetensors")
    assert "\n" not in str(refused.value)


def test_code_in_a_pickle_is_refused_even_with_trust(tmp_path):
    class Trap:
        def __reduce__(self):
            return (exec, ("raise SystemExit('ran')",))

    (tmp_path / "trap.pth").write_bytes(pickle.dumps({"fc.weight": Trap()}, protocol=2))
    with pytest.raises(CheckpointError, match="refused even with --trust"):
        load_inception(tmp_path / "trap.pth", trust=True)


@pytest.mark.slow  # ~25 Inception passes at 299 px: a few seconds on two idle cores, minutes on busy ones
def test_eval_with_inception_names_extractor_hash_and_counts(weights, tmp_path, capsys):
    root, _ = weights
    rng = np.random.default_rng(0)
    save_npz(tmp_path / "tiny.npz", rng.integers(0, 256, (32, 1, 28, 28), dtype=np.uint8))
    run = tmp_path / "run"
    assert main(["train", "--config", "configs/reference-fashion.yaml", "--out", str(run), "--max-steps", "2",
                 f"data.dataset=npz:{tmp_path / 'tiny.npz'}", "train.batch_size=16", "eval.num_real=8"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--evaluator", f"inception:{root / 'random.pth'}", "-n", "8"]) == 2
    assert "--trust" in capsys.readouterr().err

    assert main(["eval", str(run), "--evaluator", f"inception:{root / 'random.safetensors'}", "-n", "8"]) == 0
    out = capsys.readouterr().out
    saved = json.loads((run / "eval.json").read_text())
    sha256 = hashlib.sha256((root / "random.safetensors").read_bytes()).hexdigest()
    assert saved["feature_extractor"].startswith("Inception-v3 pool3") and saved["weights_sha256"] == sha256
    assert saved["num_real"] == 8 and saved["num_generated"] == 8 and "train split" in saved["real_split"]
    assert saved["class_metrics"].startswith("omitted") and "is_mean" not in saved["metrics"]
    assert np.isfinite(saved["metrics"]["fid"]) and 0 <= saved["metrics"]["recall"] <= 1
    assert sha256 in out and "expect about" in out and "feature_extractor" in out


def test_inception_is_refused_where_modes_are_counted(weights, capsys):
    root, _ = weights
    from gankit.metrics.suite import RunEvaluator
    from gankit.config import from_dict
    from gankit.errors import GankitError

    with pytest.raises(GankitError, match="toys"):
        RunEvaluator(from_dict({"data": {"dataset": "toy:ring8"}}), f"inception:{root / 'random.safetensors'}")
