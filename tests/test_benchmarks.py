"""Benchmark code that a figure depends on: the speed ablation's LeanGAN, with every switch on, is the
Trainer's step (one step from the same weights, real batch and z leaves G and D with the Trainer's
weights; benchmarks/ablation.py), the emoji benchmark's 10% subset is stratified, the imbalanced
benchmark's oversampling, classical augmentation and scores do what its table says, and the semi-supervised
benchmark's baseline augmentation shifts and mirrors as documented, the Jacobian-truncation benchmark
scores one generator under each fraction, the EMA-statistics benchmark's three generators differ only
in what its table names, every benchmark run reports the watchdog's warnings, and best-fashion's
ablation rows change only what their names say."""

import sys

import pytest
import torch

from gankit.config import load_config
from gankit.data import Dataset, load_dataset
from gankit.runs import open_checkpoint
from gankit.training.trainer import Trainer

from .conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
ablation = pytest.importorskip("ablation")


def test_lean_gan_all_on_steps_as_the_trainer_does(tiny_npz, monkeypatch):
    config = load_config("configs/reference-fashion.yaml", [f"data.dataset=npz:{tiny_npz}", "model.d_output=logits", "train.batch_size=32"])
    data = load_dataset(config.data)
    trainer = Trainer(config, data, torch.device("cpu"))
    lean = ablation.LeanGAN(data.samples, 32)
    for twin, network in ((lean.generator, trainer.G), (lean.discriminator, trainer.D)):
        twin_params, params = list(twin.parameters()), list(network.parameters())
        assert [p.shape for p in twin_params] == [p.shape for p in params]
        with torch.no_grad():
            for mine, theirs in zip(twin_params, params):
                mine.copy_(theirs)

    seen_z = []
    trainer.G.register_forward_pre_hook(lambda module, args: seen_z.append(args[0].detach().clone()))
    real, _ = trainer._real_batch(0)
    trainer.train_step()
    monkeypatch.setattr(lean, "_real", lambda: real.flatten(1))
    monkeypatch.setattr(ablation.torch, "randn", lambda *shape, **kwargs: seen_z[0])
    lean.run(1)
    monkeypatch.undo()

    for twin, network in ((lean.generator, trainer.G), (lean.discriminator, trainer.D)):
        for mine, theirs in zip(twin.parameters(), network.parameters()):
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


def test_emoji_subset_keeps_a_tenth_of_every_class(tmp_path):
    import emoji_quality as emoji

    source = tmp_path / "source"
    for name, count in (("big", 50), ("small", 4)):
        (source / name).mkdir(parents=True)
        for index in range(count):
            (source / name / f"{index}.png").write_bytes(b"png")
    subset = emoji.stratified_subset(source, tmp_path / "subset", 0.1)
    assert sorted(p.name for p in subset.iterdir()) == ["big", "small"]
    picked = {name: sorted((subset / name).iterdir()) for name in ("big", "small")}
    assert len(picked["big"]) == 5 and len(picked["small"]) == 1  # a class never vanishes
    assert all(link.is_symlink() and link.resolve().parent == source / link.parent.name for links in picked.values() for link in links)
    assert emoji.stratified_subset(source, tmp_path / "subset", 0.5) == subset and len(list((subset / "big").iterdir())) == 5  # made once


def test_ema_batchnorm_generators_differ_only_in_weights_or_statistics(tiny_runs):
    ema_batchnorm = pytest.importorskip("ema_batchnorm")
    live, ema_live_statistics, ema_own_statistics = ema_batchnorm.generators(open_checkpoint(tiny_runs[1])).values()
    parameters = {name: dict(g.named_parameters()) for name, g in (("live", live), ("mixed", ema_live_statistics), ("own", ema_own_statistics))}
    buffers = {name: dict(g.named_buffers()) for name, g in (("live", live), ("mixed", ema_live_statistics), ("own", ema_own_statistics))}
    assert all(torch.equal(value, parameters["own"][key]) for key, value in parameters["mixed"].items())
    assert any(not torch.equal(value, parameters["live"][key]) for key, value in parameters["mixed"].items()), "EMA weights are not G's"
    assert all(torch.equal(value, buffers["live"][key]) for key, value in buffers["mixed"].items())
    assert any(not torch.equal(value, buffers["own"][key]) for key, value in buffers["mixed"].items() if value.is_floating_point())


def test_semi_supervised_baseline_shifts_by_at_most_two_pixels_and_mirrors_only_when_asked():
    semi = pytest.importorskip("semi_supervised")
    images = torch.full((200, 1, 12, 12), -1.0)
    images[:, 0, 5, 3] = 1.0  # one bright pixel left of centre
    rng = torch.Generator().manual_seed(0)
    for mirror in (False, True):
        moved = semi.augmented(images, mirror, rng)
        assert moved.shape == images.shape and set(moved.unique().tolist()) == {-1.0, 1.0}
        rows, columns = (moved[:, 0] == 1.0).nonzero()[:, 1:].T
        assert ((rows - 5).abs() <= 2).all() and len(rows) == 200, "the pixel stays in the image, within 2 rows"
        shifted_columns = torch.minimum((columns - 3).abs(), (columns - 8).abs())  # 8: the pixel's mirror column
        assert (shifted_columns <= 2).all()
        assert (columns >= 6).any() == mirror, "only a mirrored image has the pixel on the right half"
        assert len(set(zip(rows.tolist(), columns.tolist()))) > 10, "the shifts vary from image to image"


def test_imbalanced_oversampling_augmentation_and_scores():
    import imbalanced

    images = torch.zeros(12, 1, 8, 8, dtype=torch.uint8)
    images[:, 0, 3, 2] = torch.arange(1, 13, dtype=torch.uint8)  # one bright pixel, off the vertical axis, names the image
    data = Dataset(images, torch.tensor([0] * 10 + [1] * 2), 2, "toy")
    over = imbalanced.oversample(data, [1], 10, seed=0)
    assert torch.bincount(over.labels).tolist() == [10, 10]
    assert set(over.samples[over.labels == 1].amax((1, 2, 3)).tolist()) <= {11, 12}  # repeats of the two scarce images
    transform = imbalanced.classical_augmentation([1], shift=2)
    moved = transform(over.samples, over.labels, torch.Generator().manual_seed(0))
    assert torch.equal(moved[over.labels == 0], over.samples[over.labels == 0])  # whole classes pass unchanged
    assert torch.equal(moved.amax((1, 2, 3)), over.samples.amax((1, 2, 3)))  # shifted by at most 2 px: the pixel stays inside
    assert not torch.equal(moved[over.labels == 1], over.samples[over.labels == 1])
    always_zero = torch.nn.Module()
    always_zero.forward = lambda images: torch.tensor([[1.0, 0.0]]).expand(len(images), 2)
    assert imbalanced.scores(always_zero, data, [1]) == {"balanced_accuracy": 0.5, "recall_1": 0.0}


def test_jacobian_truncation_benchmark_scores_one_generator_under_each_fraction(tmp_path):
    jacobian = pytest.importorskip("jacobian_truncation")
    from gankit.training.run import train

    toy = ["data.dataset=toy:ring8", "data.generated_samples=512", "model.name=mlp-toy", "model.z_dim=2", "model.width=32", "train.batch_size=32", "train.epochs=2"]
    run = train(None, tmp_path / "run", overrides=toy, progress=False).run_dir
    results = [jacobian.score(run, fraction) for fraction in (0.0, 0.2)]
    assert [r["jacobian_truncation"] for r in results] == [0.0, 0.2]  # as the evaluator reports what it drew with
    assert results[0]["step"] == results[1]["step"] and "high_quality_fraction" in results[0]
    assert "| 0.2 | 1 |" in jacobian.table(results, ["high_quality_fraction"])


def test_metrics_ceiling_reads_held_out_images_as_real_and_noise_does_not(tmp_path):
    """Held-out images of the data sit as near the training reference as its images sit to each other; random pixels do not."""
    import numpy as np

    from metrics_ceiling import ceiling

    from gankit.data import save_npz
    from gankit.metrics.image_scoring import ImageScorer

    rng = np.random.default_rng(0)
    patterns = rng.integers(0, 256, (3, 1, 28, 28))
    labels = rng.integers(0, 3, 120)
    images = np.clip(patterns[labels] + rng.normal(0, 12, (120, 1, 28, 28)), 0, 255).astype(np.uint8)
    save_npz(tmp_path / "patterns.npz", images, labels)
    config = load_config("configs/reference-fashion.yaml", [f"data.dataset=npz:{tmp_path / 'patterns.npz'}", "data.holdout=0.25", "eval.num_real=90"])
    (row,) = ceiling(config, [30])
    assert row["num_samples"] == 30 and row["num_real"] == 90
    assert 0.7 < row["metrics"]["pixel_nn_distance_ratio"] < 1.4
    noise = ImageScorer(config, None, None, False, lambda _: None)(torch.rand(30, 1, 28, 28) * 2 - 1)
    assert noise["pixel_nn_distance_ratio"] > 3 * row["metrics"]["pixel_nn_distance_ratio"]
    with pytest.raises(SystemExit, match="more than the 30 held-out images"):
        ceiling(config, [31])


def test_benchmark_runs_report_the_watchdogs_warnings():
    from _common import Job, Row, run_one

    toy = ("data.generated_samples=256", "train.batch_size=32", "train.epochs=2", "watchdog.every_epochs=1", "watchdog.patience=1")
    calm = run_one(Job(Row("calm", "toy-ring8.yaml", (*toy, "watchdog.min_coverage=0")), seed=0))
    strict = run_one(Job(Row("strict", "toy-ring8.yaml", (*toy, "watchdog.min_coverage=1")), seed=0))  # 16 steps cannot reach all 8 modes
    assert calm["watchdog_warnings"] == []
    assert len(strict["watchdog_warnings"]) == 1 and "mode collapse suspected" in strict["watchdog_warnings"][0]


def test_best_fashion_ablation_rows_each_change_only_what_they_name():
    from _common import CONFIGS
    from best_fashion import PRESET, rows

    preset = load_config(CONFIGS / PRESET).model_dump()
    by_name = {row.name: load_config(CONFIGS / row.config, list(row.overrides)).model_dump() for row in rows()}
    assert by_name["best-fashion"] == preset and preset["model"]["conditional"] and preset["train"]["precision"] == "bf16"
    assert by_name["without labels"] == {**preset, "model": {**preset["model"], "conditional": False}}
    assert by_name["half the epochs"] == {**preset, "train": {**preset["train"], "epochs": preset["train"]["epochs"] // 2}}
