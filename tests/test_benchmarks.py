"""The speed ablation's LeanGAN, with every switch on, is the Trainer's step: one step from the same
weights, real batch and z leaves G and D with the Trainer's weights (benchmarks/ablation.py)."""

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
