"""Evaluation of whole generators: honest on real data, loud on collapse, and wired into training."""

import json

import pytest
import torch
from torch import nn

from gankit.metrics.suite import RunEvaluator
from gankit.cli import main
from gankit.config import from_dict
from gankit.data import load_dataset, to_model_range
from gankit.training import checkpoint as ckpt
from gankit.training.run import train


class ReplayGenerator(nn.Module):
    """A 'generator' that returns stored images, picked by the noise: real data, or one image on repeat."""

    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.register_buffer("images", to_model_range(images))
        self.anchor = nn.Parameter(torch.zeros(1))  # so sample() can find a device
        self.z_dim, self.num_classes = 8, None

    def forward(self, z, labels=None):
        return self.images[(z[:, 0].abs() * 1e6).long() % len(self.images)]


@pytest.fixture(scope="module")
def mnist_eval(mnist_10k):
    config = from_dict({"data": {"dataset": f"idx:{mnist_10k}"}, "eval": {"num_real": 4000, "num_samples": 4000}})
    return config, RunEvaluator(config), load_dataset(config.data)


def test_real_images_score_like_real_data(mnist_eval):
    config, evaluate, data = mnist_eval
    result = evaluate(ReplayGenerator(data.samples[5000:]))  # disjoint from most of the real reference set
    metrics = result["metrics"]
    # k-NN precision/recall of two real samples of 4,000 sit near 0.8 (finite-sample effect), far from the collapsed ~0
    assert metrics["fid"] < 5 and metrics["recall"] > 0.7 and metrics["precision"] > 0.7
    assert metrics["classes_covered"] == 10 and not metrics["collapse_suspected"]
    noise = evaluate(ReplayGenerator(torch.randint(0, 256, (500, 1, 28, 28), dtype=torch.uint8)))["metrics"]
    assert noise["fid"] > 50 * max(metrics["fid"], 1.0)
    assert result["feature_extractor"].startswith("gankit evaluator 'mnist'") and len(result["weights_sha256"]) == 64
    assert result["num_real"] == 4000 and result["num_generated"] == 4000 and "train" in result["real_split"]


def test_one_image_generator_is_flagged_as_collapsed(mnist_eval):
    _, evaluate, data = mnist_eval
    metrics = evaluate(ReplayGenerator(data.samples[:1]))["metrics"]
    assert metrics["classes_covered"] == 1 and metrics["recall"] < 0.01 and metrics["collapse_suspected"]


@pytest.mark.slow
def test_stacked_mnist_counts_triples(mnist_10k):
    config = from_dict({"data": {"dataset": f"stacked-mnist:idx:{mnist_10k}", "generated_samples": 30_000}})
    data = load_dataset(config.data)
    evaluate = RunEvaluator(config)
    full = evaluate(ReplayGenerator(data.samples))["metrics"]
    assert full["stacked_modes"] >= 990 and full["stacked_kl"] < 0.1
    single = evaluate(ReplayGenerator(data.samples[:1]))["metrics"]
    assert single["stacked_modes"] == 1 and single["stacked_kl"] == pytest.approx(torch.log(torch.tensor(1000.0)).item(), rel=1e-6)
    assert full["stacked_digit_kl"] < 0.02 and single["stacked_digit_kl"] == pytest.approx(torch.log(torch.tensor(10.0)).item(), rel=1e-6)
    assert full["stacked_unsure_fraction"] < 0.05


def test_training_evaluates_and_keeps_the_best_checkpoint(tmp_path, capsys):
    overrides = ["data.generated_samples=25600", "train.epochs=4", "eval.every_epochs=1", "eval.best_metric=high_quality_fraction"]
    result = train("configs/toy-ring8.yaml", tmp_path / "run", overrides=overrides, progress=False)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval" in r]
    assert [r["epoch"] for r in evals] == [1, 2, 3, 4]
    best_value = max(r["eval"]["high_quality_fraction"] for r in evals)
    best_step = next(r["step"] for r in evals if r["eval"]["high_quality_fraction"] == best_value)
    _, state = ckpt.load_checkpoint(result.run_dir / "checkpoints" / "best.safetensors")
    assert state["best_value"] == best_value and state["step"] == best_step and state["best_metric"] == "high_quality_fraction"

    assert main(["eval", str(result.run_dir), "--checkpoint", "best"]) == 0
    out = capsys.readouterr().out
    assert "modes_captured" in out and "high_quality_fraction" in out
    saved = json.loads((result.run_dir / "eval.json").read_text())
    assert saved["step"] == best_step and saved["metrics"]["high_quality_fraction"] == pytest.approx(best_value)


def test_eval_without_an_evaluator_reports_pixel_metrics(tmp_path, capsys):
    import numpy as np

    from gankit.data import save_npz

    save_npz(tmp_path / "x.npz", np.random.default_rng(0).integers(0, 256, (64, 1, 28, 28), dtype=np.uint8))
    train("configs/reference-fashion.yaml", tmp_path / "run", overrides=[f"data.dataset=npz:{tmp_path / 'x.npz'}"], max_steps=1, progress=False)
    assert main(["eval", str(tmp_path / "run"), "-n", "100"]) == 0
    out = capsys.readouterr().out
    assert "pixel_memorized_fraction" in out and "labelled images" in out and "docs/inception.md" in out
