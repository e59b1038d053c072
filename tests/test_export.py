"""Exported generators compute what the PyTorch generator computes, at any batch size, and say how to drive them."""

import json
import os

import numpy as np
import pytest
import torch

import gankit
from gankit.apps.export import METADATA_FILE, describe, example_inputs, to_onnx, to_torchscript
from gankit.cli import main
from gankit.config import ModelConfig, StabilizerConfig
from gankit.data import save_npz
from gankit.models import build_models

GENERATORS = {
    "mlp-reference": (ModelConfig(name="mlp-reference"), (1, 28, 28), None),
    "dcgan": (ModelConfig(name="dcgan", width=8), (1, 28, 28), None),
    "conditional-dcgan": (ModelConfig(name="dcgan", width=8, conditional=True), (3, 32, 32), 10),
    "conditional-resnet": (ModelConfig(name="resnet", width=4, conditional=True), (3, 32, 32), 10),
    "conditional-stylegan2": (ModelConfig(name="stylegan2", width=4, mapping_layers=2, conditional=True), (1, 32, 32), 10),
}


def onnxruntime():
    """onnxruntime (the export extra); a test skips without it, except on CI, which installs it."""
    if os.environ.get("CI"):
        import onnxruntime

        return onnxruntime
    return pytest.importorskip("onnxruntime", reason="onnxruntime missing: pip install 'gankit[export]'")


def trained_like(name: str) -> torch.nn.Module:
    """A generator in eval mode whose BatchNorm running statistics are not the defaults, so the
    export must carry them (and use them, not batch statistics)."""
    model, shape, classes = GENERATORS[name]
    generator = build_models(model, StabilizerConfig(), shape, classes)[0]
    generator.train()
    with torch.no_grad():
        for _ in range(3):
            generator(*inputs(generator, 16, seed=1))
    return generator.eval()


def inputs(generator: torch.nn.Module, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, generator.z_dim, generator=rng)
    return (z, torch.randint(0, generator.num_classes, (batch,), generator=rng)) if generator.num_classes else (z,)


@pytest.mark.parametrize("name", GENERATORS)
def test_torchscript_matches_pytorch_at_any_batch_size(name, tmp_path):
    generator = trained_like(name)
    path = tmp_path / "g.pt"
    path.write_bytes(to_torchscript(generator, describe(generator)))
    extra = {METADATA_FILE: ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    for batch in (1, 5):
        args = inputs(generator, batch)
        with torch.no_grad():
            expected, got = generator(*args), loaded(*args)
        assert got.shape == (batch, *generator.sample_shape)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert json.loads(extra[METADATA_FILE])["z_dim"] == generator.z_dim


@pytest.mark.slow  # the torch.export-based exporter takes 5-20 s per model on two busy cores
@pytest.mark.parametrize("name", GENERATORS)
def test_onnx_matches_pytorch_at_any_batch_size(name):
    ort = onnxruntime()
    generator = trained_like(name)
    session = ort.InferenceSession(to_onnx(generator, describe(generator)), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == (["z", "labels"] if generator.num_classes else ["z"])
    for batch in (1, 5):
        args = inputs(generator, batch)
        with torch.no_grad():
            expected = generator(*args).numpy()
        (got,) = session.run(None, {name: arg.numpy() for name, arg in zip(names, args)})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    metadata = {key: json.loads(value) for key, value in session.get_modelmeta().custom_metadata_map.items()}
    assert metadata["sample_shape"] == list(generator.sample_shape) and metadata["num_classes"] == generator.num_classes
    assert metadata["output_range"] == [-1.0, 1.0]


def test_example_inputs_leave_no_batch_of_one():
    generator = trained_like("conditional-dcgan")
    z, labels = example_inputs(generator)
    assert z.shape == (2, generator.z_dim) and labels.dtype == torch.int64 and labels.max() < generator.num_classes


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    save_npz(root / "tiny.npz", np.random.default_rng(0).integers(0, 256, (32, 1, 28, 28), dtype=np.uint8))
    overrides = [f"data.dataset=npz:{root / 'tiny.npz'}", "train.batch_size=16", "model.width=8", "stabilizers.ema_decay=0.5"]
    return gankit.train("configs/dcgan-fashion.yaml", out_dir=root / "run", overrides=overrides, max_steps=3, device="cpu", progress=False).run_dir


def test_cli_exports_the_ema_generator(ema_run, tmp_path, capsys):
    out = tmp_path / "g.pt"
    assert main(["export", str(ema_run), "--format", "torchscript", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "EMA weights" in printed and "z (N, 100) float32" in printed
    exported = torch.jit.load(str(out))
    args = (torch.randn(4, 100),)
    ema, raw = gankit.load(ema_run), gankit.load(ema_run, ema=False)
    with torch.no_grad():
        torch.testing.assert_close(exported(*args), ema(*args), atol=1e-5, rtol=0)
        assert not torch.allclose(exported(*args), raw(*args), atol=1e-4)
    assert not list(tmp_path.glob(".*.part"))  # written through a temp file, which is gone


def test_cli_export_onnx(ema_run, tmp_path):
    ort = onnxruntime()
    out = tmp_path / "g.onnx"
    assert main(["export", str(ema_run), "--format", "onnx", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    z = torch.randn(3, 100)
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"z": z.numpy()})[0], gankit.load(ema_run)(z).numpy(), atol=1e-5, rtol=0)
    assert json.loads(session.get_modelmeta().custom_metadata_map["ema"]) is True


def test_cli_export_mistakes_get_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--format", "onnx", "--out", str(tmp_path / "g.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gankit: error: ") and "neither a run folder nor a checkpoint file" in err and err.count("\n") == 1
    assert not (tmp_path / "g.onnx").exists()


@pytest.mark.parametrize("out", [".", "folder"])
def test_cli_export_to_a_folder_is_one_line(ema_run, tmp_path, monkeypatch, capsys, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    assert main(["export", str(ema_run), "--format", "torchscript", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "is a folder; give a file name" in err and err.count("\n") == 1
