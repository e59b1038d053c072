"""Benchmark code that a figure depends on: the speed ablation's LeanGAN, with every switch on, is the
Trainer's step (one step from the same weights, real batch and z leaves G and D with the Trainer's
weights; benchmarks/ablation.py), and the emoji benchmark's 10% subset is stratified."""

import sys

import pytest
import torch

from gankit.config import load_config
from gankit.data import load_dataset
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
