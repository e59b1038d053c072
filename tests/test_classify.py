"""task=classify: the semi-supervised K+1 GAN classifier (Salimans et al. 2016), its data options
(data.labels_per_class, data.holdout), `gankit eval` on it and `gankit classify`."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.apps.classify import accuracy_of, held_out_accuracy
from gankit.cli import main
from gankit.config import load_config
from gankit.data import load_dataset, save_npz
from gankit.data.dataset import UNLABELLED
from gankit.errors import ConfigError, DataError
from gankit.models.semi import build_semi_supervised
from gankit.runs import open_checkpoint
from gankit.training.run import train
from gankit.training.semi import feature_matching_loss, real_fake_loss

CLASSES = 4
SIDE = 8


def bar_images(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8x8 noise with a bright horizontal bar whose rows say the class: separable, but not from two images without noise robustness."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % CLASSES
    images = rng.integers(0, 90, (count, 1, SIDE, SIDE), dtype=np.uint8)
    for index, label in enumerate(labels):
        images[index, 0, 2 * label : 2 * label + 2, rng.integers(0, 3) :] = 255
    return images, labels


@pytest.fixture(scope="module")
def bars(tmp_path_factory):
    path = tmp_path_factory.mktemp("bars") / "bars.npz"
    save_npz(path, *bar_images(400))
    return path


def semi_overrides(bars, *extra):
    return [
        "task=classify", f"data.dataset=npz:{bars}", "data.holdout=0.25", "data.labels_per_class=2", "train.batch_size=20",
        "optim.lr_d=3e-3", "optim.lr_g=3e-3", "train.epochs=10", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def semi_run(bars, tmp_path_factory):
    out = tmp_path_factory.mktemp("semi") / "run"
    return train("semi-mnist", out, overrides=semi_overrides(bars), progress=False)


def test_classifier_learns_from_two_labels_per_class_and_tells_real_from_fake(semi_run):
    loaded = open_checkpoint(semi_run.run_dir, task="classify")
    result = held_out_accuracy(loaded)
    assert result.images == 100, "a quarter of 400 images is held out"
    assert result.accuracy >= 0.9, f"test accuracy {result.accuracy:.3f} from 8 labels"
    records = [json.loads(line) for line in (semi_run.run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "d_real" in r][-1]
    assert last["d_real"] > last["d_fake"], "D should call unlabelled images real more than G's fakes"
    assert last["labelled_accuracy"] > 0.9


def test_held_out_accuracy_reads_the_whole_test_split_whatever_the_class_cut(bars, tmp_path):
    cut = ["data.class_counts={0: 20}", "train.epochs=1"]
    run = train("semi-mnist", tmp_path / "run", overrides=semi_overrides(bars, *cut), progress=False)
    result = held_out_accuracy(open_checkpoint(run.run_dir, task="classify"))
    assert result.images == 100, "the test split is a quarter of 400 images, not cut by class"


def test_labels_per_class_hides_all_but_n_labels_per_class_and_keeps_every_image(bars):
    config = load_config(None, ["task=classify", f"data.dataset=npz:{bars}", "data.labels_per_class=3", "data.subset_seed=5"])
    data = load_dataset(config.data)
    assert len(data) == 400
    known = data.labels != UNLABELLED
    assert torch.bincount(data.labels[known], minlength=CLASSES).tolist() == [3] * CLASSES
    more = load_dataset(config.data.model_copy(update={"labels_per_class": 6}))
    assert set(torch.nonzero(known).flatten().tolist()) <= set(torch.nonzero(more.labels != UNLABELLED).flatten().tolist())
    test = load_dataset(config.data.model_copy(update={"holdout": 0.25, "split": "test"}))
    assert (test.labels != UNLABELLED).all(), "the test split keeps its labels"


def test_holdout_splits_each_class_the_same_way_every_time(tmp_path):
    images = np.arange(200, dtype=np.uint8).reshape(200, 1, 1, 1).repeat(SIDE, 2).repeat(SIDE, 3)  # image i is all pixel value i
    labels = np.arange(200) % 4
    save_npz(tmp_path / "coded.npz", images, labels)
    config = load_config(None, [f"data.dataset=npz:{tmp_path / 'coded.npz'}", "data.holdout=0.2"])
    train_part = load_dataset(config.data)
    test_part = load_dataset(config.data.model_copy(update={"split": "test"}))
    train_ids = set(train_part.samples[:, 0, 0, 0].tolist())
    test_ids = set(test_part.samples[:, 0, 0, 0].tolist())
    assert not train_ids & test_ids and len(train_ids | test_ids) == 200
    assert torch.bincount(test_part.labels).tolist() == [10] * 4
    assert test_ids == set(load_dataset(config.data.model_copy(update={"split": "test", "subset_seed": 9})).samples[:, 0, 0, 0].tolist())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.labels_per_class=10"], "only task=classify"),
        (["task=classify", "model.conditional=true"], "task=classify does not support model.conditional"),
        (["task=classify", "stabilizers.diffaugment=color"], "task=classify does not support stabilizers.diffaugment"),
        (["classify.unlabelled_weight=0.5"], "the classify section only applies to task=classify"),
        (["data.holdout=0.7"], "data.holdout"),
    ],
)
def test_settings_that_do_not_fit_the_task_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_holdout_is_refused_where_the_data_has_a_test_split():
    with pytest.raises(DataError, match="has its own test split"):
        load_dataset(load_config(None, ["data.dataset=fashion-mnist", "data.holdout=0.2"]).data)


def test_real_fake_loss_is_minus_log_probability_of_the_right_verdict():
    real, fake = torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([[-3.0, 0.0, -1.0]])
    z_real, z_fake = math.log(sum(math.exp(v) for v in real[0])), math.log(sum(math.exp(v) for v in fake[0]))
    p_real_real = math.exp(z_real) / (math.exp(z_real) + 1)
    p_fake_fake = 1 / (math.exp(z_fake) + 1)
    expected = 0.5 * (-math.log(p_real_real)) + 0.5 * (-math.log(p_fake_fake))
    assert real_fake_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    features = torch.randn(8, 5)
    assert feature_matching_loss(features, features.flip(0)).item() == pytest.approx(0.0, abs=1e-12)


def test_networks_work_without_the_trainer_and_noise_only_while_training():
    generator, classifier = build_semi_supervised(16, (3, 8, 8), 5, 0.3, 0.5)
    images = generator(torch.randn(6, 16))
    assert images.shape == (6, 3, 8, 8) and images.abs().max() <= 1
    classifier.eval()
    assert torch.equal(classifier(images), classifier(images))
    features, logits = classifier.features_and_logits(images)
    assert features.shape == (6, 250) and logits.shape == (6, 5)
    classifier.train()
    assert not torch.equal(classifier(images), classifier(images))
    with pytest.raises(ConfigError, match="at least 2 classes"):
        build_semi_supervised(16, (1, 8, 8), None, 0.3, 0.5)


def test_accuracy_and_balanced_accuracy():
    probabilities = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8]])
    result = accuracy_of(probabilities, torch.tensor([0, 0, 0, 1]), 2)
    assert result.accuracy == 1.0 and result.balanced_accuracy == 1.0
    result = accuracy_of(probabilities, torch.tensor([0, 0, 1, 1]), 2)
    assert result.accuracy == 0.75 and result.balanced_accuracy == 0.75 and result.per_class == [1.0, 0.5]


def test_cli_eval_reports_test_accuracy_and_classify_writes_predictions(semi_run, tmp_path, capsys):
    assert main(["eval", str(semi_run.run_dir), "--out", str(tmp_path / "eval.json")]) == 0
    scores = json.loads((tmp_path / "eval.json").read_text())
    assert scores["metrics"]["test_accuracy"] >= 0.9 and scores["test_images"] == 100
    images, labels = bar_images(6, seed=3)
    folder = tmp_path / "inputs"
    folder.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image[0]).save(folder / f"img{index}.png")
    assert main(["classify", str(semi_run.run_dir), "--input", str(folder), "--out", str(tmp_path / "preds.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "preds.csv").open()))
    assert [row["input"] for row in rows] == [f"img{index}.png" for index in range(6)]
    assert sum(int(row["label"]) == label for row, label in zip(rows, labels)) >= 5
    assert all(0 < float(row["probability"]) <= 1 for row in rows)
    save_npz(tmp_path / "inputs.npz", images, None)
    capsys.readouterr()
    assert main(["classify", str(semi_run.run_dir), "--input", str(tmp_path / "inputs.npz")]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("0,")


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda run, other, tmp: ["classify", str(run), "--input", str(tmp / "missing")], "does not exist"),
        (lambda run, other, tmp: ["classify", str(other), "--input", str(tmp)], "task=generate run"),
    ],
)
def test_classify_mistakes_are_one_line_and_exit_2(semi_run, tiny_runs, tmp_path, capsys, make_args, message):
    assert main(make_args(semi_run.run_dir, tiny_runs[1], tmp_path)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_eval_without_a_test_split_says_how_to_get_one(bars, tmp_path, capsys):
    run = train("semi-mnist", tmp_path / "run", overrides=semi_overrides(bars, "data.holdout=0"), max_steps=2, progress=False)
    assert main(["eval", str(run.run_dir)]) == 2
    assert "data.holdout=0.2" in capsys.readouterr().err
