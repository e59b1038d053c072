"""gankit augment: labelled synthetic data that the data loaders read back (all classes or the scarce ones);
the k-per-class subset, the imbalanced one (data.class_counts) and class-balanced batches."""

import numpy as np
import pytest
import torch
from torch import nn

from gankit.apps.augment import synthesize_by_evaluator, synthesize_conditional, write_synthetic
from gankit.cli import main
from gankit.config import DataConfig, ModelConfig, StabilizerConfig, load_config
from gankit.data import Dataset, load_dataset, per_class_subset, save_npz, to_model_range
from gankit.data.dataset import class_subset
from gankit.errors import ConfigError, DataError, GankitError
from gankit.models import build_models
from gankit.training.trainer import Trainer


def conditional_generator(num_classes):
    torch.manual_seed(0)
    generator, _ = build_models(ModelConfig(name="dcgan", width=8, z_dim=16, conditional=True), StabilizerConfig(), (1, 28, 28), num_classes)
    return generator.eval()


class ShadeGenerator(nn.Module):
    """Unconditional: flat gray 4x4 images whose shade is tanh(z[0])."""

    num_classes = None
    z_dim = 2

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, z, labels=None):
        return torch.tanh(z[:, :1]).view(-1, 1, 1, 1).expand(-1, 1, 4, 4) + self.anchor


class ShadeEvaluator(nn.Module):
    """Classifies a shade by its nearest centre; confident near a centre, unsure between two."""

    def __init__(self, centres=(-0.6, 0.0, 0.6)):
        super().__init__()
        self.centres = nn.Parameter(torch.tensor(centres))
        self.num_classes = len(centres)

    def forward(self, images):
        shade = to_model_range(images).mean((1, 2, 3))
        return -40 * (shade[:, None] - self.centres) ** 2


def test_conditional_npz_round_trips_through_the_loader(tmp_path):
    data = synthesize_conditional(conditional_generator(3), 5, seed=1)
    path = write_synthetic(data, tmp_path / "synthetic.npz")
    loaded = load_dataset(DataConfig(dataset=f"npz:{path}"))
    assert loaded.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert loaded.num_classes == 3 and loaded.sample_shape == (1, 28, 28)
    assert np.array_equal(loaded.samples.numpy(), data.images)
    assert data.counts() == {0: 5, 1: 5, 2: 5}


def test_folder_round_trips_with_label_order_past_ten_classes(tmp_path):
    data = synthesize_conditional(conditional_generator(12), 2, seed=0)
    out = write_synthetic(data, tmp_path / "synthetic")
    assert sorted(p.name for p in out.iterdir()) == [f"{label:02d}" for label in range(12)]  # "10" must sort after "02"
    loaded = load_dataset(DataConfig(dataset=f"folder:{out}", image_size=28))
    assert loaded.labels.tolist() == np.repeat(np.arange(12), 2).tolist()
    assert np.array_equal(loaded.samples.numpy(), data.images)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    with pytest.raises(GankitError, match="not an empty folder"):
        write_synthetic(data, out)


def test_unconditional_keeps_only_confident_samples():
    evaluator = ShadeEvaluator()
    data = synthesize_by_evaluator(ShadeGenerator(), evaluator, 20, min_confidence=0.9, seed=0)
    assert data.counts() == {0: 20, 1: 20, 2: 20}
    probabilities = evaluator(torch.from_numpy(data.images)).softmax(1)
    assert (probabilities.max(1).values >= 0.9).all()
    assert probabilities.argmax(1).tolist() == data.labels.tolist()
    all_shades = to_model_range(torch.from_numpy(data.images)).mean((1, 2, 3))
    assert (all_shades.abs() - 0.3).abs().min() > 0.05  # nothing from the unsure band between two classes
    assert data.drawn > 60  # some samples were drawn and thrown away
    stricter = synthesize_by_evaluator(ShadeGenerator(), evaluator, 20, min_confidence=0.999, seed=0)
    assert (evaluator(torch.from_numpy(stricter.images)).softmax(1).max(1).values >= 0.999).all()


class StepShadeGenerator(ShadeGenerator):
    """Shades near -0.6 and +0.6, joined by a steep ramp where z[0] is near 0: the samples between two modes."""

    def forward(self, z, labels=None):
        return super().forward(30 * z) * 0.6


def test_unconditional_jacobian_truncation_drops_the_shades_between_modes():
    evaluator = ShadeEvaluator(centres=(-0.6, 0.6))
    shades = lambda data: to_model_range(torch.from_numpy(data.images)).mean((1, 2, 3))  # noqa: E731
    plain = synthesize_by_evaluator(StepShadeGenerator(), evaluator, 300, min_confidence=0.5, seed=0)
    assert (shades(plain).abs() < 0.5).any()  # a few land on the ramp, and the evaluator still names a class
    kept = synthesize_by_evaluator(StepShadeGenerator(), evaluator, 300, min_confidence=0.5, seed=0, jacobian_truncation=0.1)
    assert (shades(kept).abs() > 0.5).all() and kept.counts() == {0: 300, 1: 300}


def test_cli_augment_follows_the_runs_sampling_unless_told_otherwise(tiny_runs, tmp_path, capsys):
    steep = tmp_path / "steep"  # a conditional run saved with jacobian truncation on
    train = ["train", "--config", "cdcgan-fashion", "--out", str(steep), "--max-steps", "2", "model.width=8", "train.batch_size=16"]
    assert main([*train, f"data.dataset=npz:{tiny_runs[0].parent / 'tiny.npz'}", "sampling.jacobian_truncation=0.2"]) == 0

    def augmented(run, *extra):
        out = tmp_path / f"{run.name}{''.join(extra)}.npz"
        assert main(["augment", str(run), "--per-class", "4", "--out", str(out), *extra]) == 0
        return load_dataset(DataConfig(dataset=f"npz:{out}"))

    saved, switched_off = augmented(steep), augmented(steep, "--jacobian-truncation", "0")
    assert torch.equal(saved.labels, switched_off.labels) and not torch.equal(saved.samples, switched_off.samples)
    plain, switched_on = augmented(tiny_runs[0]), augmented(tiny_runs[0], "--jacobian-truncation", "0.2")
    assert torch.equal(plain.labels, switched_on.labels) and not torch.equal(plain.samples, switched_on.samples)
    capsys.readouterr()
    assert main(["augment", str(steep), "--per-class", "4", "--out", str(tmp_path / "bad.npz"), "--jacobian-truncation", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "fraction of z dropped" in err and err.count("\n") == 1 and not (tmp_path / "bad.npz").exists()


def test_a_class_that_cannot_be_filled_is_reported_with_counts():
    evaluator = ShadeEvaluator(centres=(-0.6, 0.0, 5.0))  # class 2 lies outside tanh's range
    with pytest.raises(GankitError, match=r"after 3000 samples .*class 2: 0\);") as caught:
        synthesize_by_evaluator(ShadeGenerator(), evaluator, 10, max_draws=3000)
    assert "lower --min-confidence" in str(caught.value)
    with pytest.raises(GankitError, match="min-confidence"):
        synthesize_by_evaluator(ShadeGenerator(), evaluator, 10, min_confidence=1.5)


def test_cli_augment_writes_what_loads_back(tiny_runs, tmp_path, capsys):
    assert main(["augment", str(tiny_runs[0]), "--per-class", "3", "--out", str(tmp_path / "s.npz")]) == 0
    assert "12 labelled images" in capsys.readouterr().out
    loaded = load_dataset(DataConfig(dataset=f"npz:{tmp_path / 's.npz'}"))
    assert torch.bincount(loaded.labels).tolist() == [3, 3, 3, 3]


@pytest.mark.parametrize(
    "run, extra, message",
    [
        (1, [], "no shipped evaluator fits its dataset npz:"),
        (0, ["--evaluator", "mnist"], "drop --evaluator"),
        (1, ["--evaluator", "nowhere.safetensors"], "no evaluator 'nowhere.safetensors'"),
    ],
)
def test_cli_augment_mistakes_get_one_line(tiny_runs, tmp_path, capsys, run, extra, message):
    assert main(["augment", str(tiny_runs[run]), "--per-class", "2", "--out", str(tmp_path / "s.npz"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "s.npz").exists()


def labelled(counts):
    labels = torch.cat([torch.full((count,), label) for label, count in enumerate(counts)])
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    labels = labels[order]
    samples = torch.arange(len(labels)).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).to(torch.uint8)  # pixel value = index
    return Dataset(samples, labels, len(counts), "test")


def test_per_class_subset_is_stratified_deterministic_and_nested():
    data = labelled([30, 25, 40])
    subset = per_class_subset(data, 10, seed=0)
    assert torch.bincount(subset.labels).tolist() == [10, 10, 10]
    index = subset.samples[:, 0, 0, 0].long()
    assert torch.equal(data.labels[index], subset.labels)  # each image keeps its own label
    assert index.tolist() == sorted(index.tolist())  # in the original order
    assert torch.equal(per_class_subset(data, 10, seed=0).samples, subset.samples)
    assert not torch.equal(per_class_subset(data, 10, seed=1).samples, subset.samples)
    larger = set(per_class_subset(data, 20, seed=0).samples[:, 0, 0, 0].tolist())
    assert set(index.tolist()) <= larger


def test_per_class_subset_errors_and_load_dataset(tmp_path):
    with pytest.raises(DataError, match="data.per_class=26: class 1 of test has only 25 images; ask 25 or fewer"):
        per_class_subset(labelled([30, 25, 40]), 26, seed=0)
    with pytest.raises(DataError, match="needs labels"):
        per_class_subset(Dataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), None, None, "unlabelled"), 1, seed=0)
    save_npz(tmp_path / "d.npz", np.arange(60, dtype=np.uint8).reshape(60, 1, 1, 1).repeat(2, 2).repeat(2, 3), np.arange(60) % 3)
    picked = load_dataset(DataConfig(dataset=f"npz:{tmp_path / 'd.npz'}", per_class=4, subset_seed=2))
    assert len(picked) == 12 and torch.bincount(picked.labels).tolist() == [4, 4, 4]
    assert (picked.samples[:, 0, 0, 0].long() % 3 == picked.labels).all()


def test_class_counts_cut_listed_classes_and_keep_the_rest_whole():
    data = labelled([30, 25, 40])
    cut = class_subset(data, {1: 5}, seed=3, setting="data.class_counts")
    assert torch.bincount(cut.labels).tolist() == [30, 5, 40]
    index = cut.samples[:, 0, 0, 0].long()
    assert index.tolist() == sorted(index.tolist()) and torch.equal(data.labels[index], cut.labels)
    same_pick = per_class_subset(data, 5, seed=3)  # a class's pick does not depend on which other classes are cut
    assert set(index[cut.labels == 1].tolist()) == set(same_pick.samples[same_pick.labels == 1, 0, 0, 0].tolist())
    with pytest.raises(DataError, match="data.class_counts: class 1 of test has only 25 images; ask 25 or fewer"):
        class_subset(data, {1: 26}, seed=0, setting="data.class_counts")
    with pytest.raises(DataError, match="data.class_counts names class 3, and test has classes 0..2"):
        class_subset(data, {3: 1}, seed=0, setting="data.class_counts")


def test_class_counts_through_the_config_and_loader(tmp_path):
    save_npz(tmp_path / "d.npz", np.arange(60, dtype=np.uint8).reshape(60, 1, 1, 1).repeat(2, 2).repeat(2, 3), np.arange(60) % 3)
    config = load_config(None, [f"data.dataset=npz:{tmp_path / 'd.npz'}", "data.class_counts={0: 2, 2: 7}", "data.subset_seed=1"])
    picked = load_dataset(config.data)
    assert torch.bincount(picked.labels).tolist() == [2, 20, 7]
    assert load_config(None, ["data.class_counts={0: 2}"]).model_dump(mode="json")["data"]["class_counts"] == {"0": 2}  # JSON keys read back
    for bad, message in ((["data.class_counts={0: 0}"], "greater than 0"), (["data.class_counts={0: 2}", "data.per_class=3"], "give one")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, bad)


def test_balanced_order_draws_every_class_about_equally_and_repeats():
    data = labelled([400, 20, 80])
    order = data.balanced_order(torch.Generator().manual_seed(0))
    assert len(order) == 500 and torch.equal(order, data.balanced_order(torch.Generator().manual_seed(0)))
    shares = torch.bincount(data.labels[order], minlength=3) / 500
    assert (shares - 1 / 3).abs().max() < 0.07
    flipped = Dataset(data.samples, data.labels, 3, "test", xflip=True)
    assert flipped.balanced_order(torch.Generator().manual_seed(0)).max() < 1000


def test_trainer_class_balance_feeds_balanced_batches_and_needs_labels(tiny_npz):
    overrides = [f"data.dataset=npz:{tiny_npz}", "data.class_counts={1: 4}", "model.width=8", "train.batch_size=32"]
    config = load_config("cdcgan-fashion", [*overrides, "train.class_balance=true"])
    trainer = Trainer(config, load_dataset(config.data), torch.device("cpu"))
    labels = torch.cat([trainer._real_batch(index)[1] for index in range(trainer.batches_per_epoch)])
    assert int((labels == 1).sum()) >= len(labels) // 6  # 4 of about 68 images, drawn in a third of the batches' slots
    unlabelled = Dataset(torch.zeros(64, 1, 28, 28, dtype=torch.uint8), None, None, "unlabelled")
    with pytest.raises(ConfigError, match="train.class_balance draws batches by class, and unlabelled has no labels"):
        Trainer(load_config("dcgan-fashion", ["model.width=8", "train.class_balance=true"]), unlabelled, torch.device("cpu"))


def test_augment_fills_only_the_classes_asked_for(tiny_runs, tmp_path, capsys):
    data = synthesize_conditional(conditional_generator(5), 3, classes=[4, 1], seed=0)
    assert data.labels.tolist() == [1, 1, 1, 4, 4, 4]
    evaluated = synthesize_by_evaluator(ShadeGenerator(), ShadeEvaluator(), 10, classes=[2], seed=0)
    assert evaluated.counts() == {2: 10}
    with pytest.raises(GankitError, match="--classes must name classes 0..4, got 5"):
        synthesize_conditional(conditional_generator(5), 3, classes=[5])
    assert main(["augment", str(tiny_runs[0]), "--per-class", "3", "--classes", "0,2", "--out", str(tmp_path / "s.npz")]) == 0
    assert "6 labelled images" in capsys.readouterr().out
    assert torch.bincount(load_dataset(DataConfig(dataset=f"npz:{tmp_path / 's.npz'}")).labels).tolist() == [3, 0, 3]
    with pytest.raises(SystemExit):
        main(["augment", str(tiny_runs[0]), "--per-class", "3", "--classes", "a,2", "--out", str(tmp_path / "t.npz")])
