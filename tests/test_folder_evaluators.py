"""Evaluators for your own image folders: training one on a labelled RGB folder, scoring RGB runs with it,
the collapse watchdog reading it, and what `gankit eval` reports for a folder run without one."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.cli import main
from gankit.config import DataConfig, from_dict
from gankit.data import load_dataset
from gankit.errors import DataError
from gankit.metrics import evaluator as ev
from gankit.metrics import evaluator_training as evtrain
from gankit.metrics.suite import RunEvaluator
from gankit.training.callbacks import MetricsLog
from gankit.training.watchdog import ImageProbe, watchdog_callbacks
from tests.test_eval import ReplayGenerator

CLASS_SIZES = {"discs": 80, "squares": 50, "bars": 30}  # unbalanced, as real folders are
SIDE = 32


def _shape_image(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A noisy background with one coloured shape at a random place: red discs, green squares, blue bars."""
    image = rng.integers(0, 60, (SIDE, SIDE, 3)).astype(np.uint8)
    y, x = rng.integers(6, SIDE - 6, 2)
    rows, cols = np.ogrid[:SIDE, :SIDE]
    mask = {
        "discs": (rows - y) ** 2 + (cols - x) ** 2 <= 25,
        "squares": (abs(rows - y) <= 4) & (abs(cols - x) <= 4),
        "bars": (abs(rows - y) <= 1) & (abs(cols - x) <= 6),
    }[kind]
    image[mask] = {"discs": (220, 40, 40), "squares": (40, 220, 40), "bars": (40, 40, 220)}[kind] + rng.integers(-30, 30, 3)
    return image


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for kind, count in CLASS_SIZES.items():
        (root / kind).mkdir()
        for index in range(count):
            Image.fromarray(_shape_image(kind, rng)).save(root / kind / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module")
def trained(shapes, tmp_path_factory):
    """An evaluator trained on the shapes folder at 32 px, with what it printed."""
    out = tmp_path_factory.mktemp("evaluator") / "shapes.safetensors"
    info = evtrain.train_evaluator(f"folder:{shapes}", out, epochs=12, seed=0, image_size=SIDE, progress=False)
    return out, info


@pytest.fixture(scope="module")
def rgb_run(shapes, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rgb-run") / "run"
    args = ["train", "--config", "dcgan-fashion", "--out", str(out), "--max-steps", "2", "--device", "cpu",
            f"data.dataset=folder:{shapes}", f"data.image_size={SIDE}", "train.batch_size=16", "model.width=8"]
    assert main(args) == 0
    return out


def test_evaluator_learns_a_labelled_rgb_folder_and_records_it(trained, shapes):
    path, info = trained
    model, loaded = ev.load_evaluator(str(path))
    assert loaded == info
    assert info.test_accuracy >= 0.9 and info.balanced_accuracy >= 0.9  # chance: 0.5 (the largest class), balanced 0.33
    assert info.input_shape == [3, SIDE, SIDE] and model.input_shape == (3, SIDE, SIDE)
    assert info.class_names == sorted(CLASS_SIZES) and info.num_classes == 3
    assert info.held_out_size == 16 + 10 + 6 and info.train_size == 160 - 32  # 20% of each class
    assert "held-out 20% of each class" in info.split and "bars 30, discs 80, squares 50" in info.data_description
    assert f"--image-size {SIDE}" in info.train_command and path.stat().st_size < 2e6


def test_training_prints_accuracy_and_balanced_accuracy(shapes, tmp_path, capsys):
    assert main(["evaluator", "train", "--dataset", f"folder:{shapes}", "--image-size", "16", "--out", str(tmp_path / "e.safetensors"), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "held-out accuracy" in out and ", balanced accuracy " in out


def test_an_evaluator_refuses_images_of_another_shape_or_dataset(trained, shapes, tmp_path):
    path, info = trained
    smaller = DataConfig(dataset=f"folder:{shapes}", image_size=16)
    with pytest.raises(DataError, match=rf"takes 3x32x32 images but folder:.* has 3x16x16; train one on it: gankit evaluator train --dataset folder:{shapes} --out evaluator.safetensors --image-size 16$"):
        ev.check_fits(info, load_dataset(smaller), smaller)
    other = tmp_path / "other"
    for name in ("cats", "dogs"):
        (other / name).mkdir(parents=True)
        Image.fromarray(np.zeros((SIDE, SIDE, 3), np.uint8)).save(other / name / "a.png")
    elsewhere = DataConfig(dataset=f"folder:{other}", image_size=SIDE)
    with pytest.raises(DataError, match=rf"was trained on folder:{shapes}, not on this run's data folder:{other}"):
        ev.check_fits(info, load_dataset(elsewhere), elsewhere)
    moved = DataConfig(dataset=f"folder:{shapes}/../{shapes.name}", image_size=SIDE)  # the same classes under another path
    ev.check_fits(info, load_dataset(moved), moved)


def test_eval_with_an_evaluator_scores_an_rgb_run(rgb_run, trained, capsys):
    path, _ = trained
    assert main(["eval", str(rgb_run), "--evaluator", str(path), "-n", "200"]) == 0
    result = json.loads((rgb_run / "eval.json").read_text())
    assert {"fid", "kid_mean", "precision", "recall", "coverage", "classes_covered"} <= set(result["metrics"])
    assert result["feature_extractor"].startswith("gankit evaluator 'shapes'") and "needs_evaluator" not in result
    assert "fid" in capsys.readouterr().out


def test_eval_of_an_rgb_run_with_an_evaluator_of_another_size_is_one_line(rgb_run, shapes, tmp_path, capsys):
    small = tmp_path / "small.safetensors"
    evtrain.train_evaluator(f"folder:{shapes}", small, epochs=1, seed=0, image_size=16, progress=False)
    assert main(["eval", str(rgb_run), "--evaluator", str(small), "-n", "50"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "takes 3x16x16 images but" in err and "--image-size 32" in err


def test_eval_without_an_evaluator_reports_pixel_metrics_and_how_to_get_the_rest(rgb_run, shapes, capsys):
    assert main(["eval", str(rgb_run), "-n", "200"]) == 0
    out = capsys.readouterr().out
    result = json.loads((rgb_run / "eval.json").read_text())
    assert set(result["metrics"]) == {"pixel_memorized_fraction", "pixel_nn_distance_ratio", "pixel_diversity"}
    assert f"gankit evaluator train --dataset folder:{shapes} --out evaluator.safetensors --image-size {SIDE}" in result["needs_evaluator"]
    assert "docs/inception.md" in result["needs_evaluator"] and "needs_evaluator" in out and "pixel_diversity" in out


@pytest.fixture(scope="module")
def pixel_scoring(shapes):
    config = from_dict({"data": {"dataset": f"folder:{shapes}", "image_size": SIDE}, "eval": {"num_samples": 300}})
    return RunEvaluator(config, say=lambda line: None), load_dataset(config.data)


def test_pixel_memorization_flags_copies_of_training_images_and_not_fresh_ones(pixel_scoring):
    evaluate, data = pixel_scoring
    copies = evaluate(ReplayGenerator(data.samples))["metrics"]
    assert copies["pixel_memorized_fraction"] > 0.95 and copies["pixel_nn_distance_ratio"] < 0.05
    rng = np.random.default_rng(1)
    fresh = torch.from_numpy(np.stack([_shape_image(kind, rng) for kind in CLASS_SIZES for _ in range(40)]).transpose(0, 3, 1, 2).copy())
    new = evaluate(ReplayGenerator(fresh))["metrics"]
    assert new["pixel_memorized_fraction"] < 0.1 and new["pixel_nn_distance_ratio"] > 0.5
    noise = evaluate(ReplayGenerator(torch.randint(0, 256, (300, 3, SIDE, SIDE), dtype=torch.uint8)))["metrics"]
    assert noise["pixel_memorized_fraction"] == 0


def test_pixel_diversity_is_one_for_real_variety_and_zero_for_one_image(pixel_scoring):
    evaluate, data = pixel_scoring
    assert evaluate(ReplayGenerator(data.samples))["metrics"]["pixel_diversity"] == pytest.approx(1.0, abs=0.1)
    assert evaluate(ReplayGenerator(data.samples[:1]))["metrics"]["pixel_diversity"] == pytest.approx(0.0, abs=1e-6)


class ImageTrainer:
    """What the watchdog's ImageProbe reads from a trainer."""

    def __init__(self, generator, epoch):
        self.sampler, self.device, self.epoch, self.step = generator, torch.device("cpu"), epoch, 10 * epoch


def test_watchdog_checks_rgb_runs_with_an_evaluator_and_flags_a_constant_generator(trained, shapes, tmp_path):
    path, _ = trained
    config = from_dict({"data": {"dataset": f"folder:{shapes}", "image_size": SIDE}, "eval": {"evaluator": str(path)},
                        "watchdog": {"every_epochs": 1, "patience": 2, "num_samples": 150}})
    data = load_dataset(config.data)
    log = MetricsLog(tmp_path / "metrics.jsonl")
    _, (watchdog,) = watchdog_callbacks(config, data, log)
    assert isinstance(watchdog.probe, ImageProbe)
    healthy = watchdog.probe(ImageTrainer(ReplayGenerator(data.samples), 1))
    assert healthy["classes_covered"] == 3 and healthy["diversity_ratio"] > 0.8
    for epoch in (1, 2):
        watchdog.on_epoch_end(ImageTrainer(ReplayGenerator(data.samples[:1]), epoch))
    (record,) = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert record["warning"] == "mode-collapse" and record["classes_covered"] == 1 and record["diversity_ratio"] < 0.01


def test_watchdog_without_an_evaluator_for_folder_data_says_how_to_get_one(shapes, tmp_path, capsys):
    config = from_dict({"data": {"dataset": f"folder:{shapes}", "image_size": SIDE}, "watchdog": {"every_epochs": 1}})
    assert watchdog_callbacks(config, load_dataset(config.data), MetricsLog(tmp_path / "m.jsonl"))[1] == []
    assert f"gankit evaluator train --dataset folder:{shapes}" in capsys.readouterr().err
