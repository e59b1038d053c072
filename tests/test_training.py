"""The trainer does what it promises: it learns, resumes exactly, and refuses to save garbage."""

import json

import numpy as np
import pytest
import torch

from gankit.config import load_config
from gankit.data import load_dataset, save_npz
from gankit.data.toy import toy_modes
from gankit.errors import GankitError, TrainingDiverged
from gankit.files import is_pickle
from gankit.losses import Objective
from gankit.runs import load, open_checkpoint
from gankit.training import checkpoint as ckpt
from gankit.training.run import train
from gankit.training.trainer import Trainer, lr_decay_factor


def modes_captured(samples: torch.Tensor, name: str) -> tuple[int, float]:
    """(modes with at least one sample within 3 std of their centre, fraction of such samples)."""
    centres, std = toy_modes(name)
    distances = torch.cdist(samples, centres)
    nearest = distances.min(dim=1)
    good = nearest.values < 3 * std
    return len(set(nearest.indices[good].tolist())), good.float().mean().item()


def test_gan_learns_the_ring(tmp_path):
    """A small GAN trained for a few seconds on toy:ring8 covers most of the 8 modes."""
    result = train(
        "configs/toy-ring8.yaml",
        tmp_path / "ring",
        overrides=["train.epochs=2", "data.generated_samples=76800", "train.seed=1"],  # 600 steps
        progress=False,
    )
    generator = load(result.run_dir)
    with torch.no_grad():
        samples = generator(torch.randn(2500, generator.z_dim, generator=torch.Generator().manual_seed(0)))
    captured, quality = modes_captured(samples, "ring8")
    assert captured >= 6, f"only {captured}/8 modes captured ({quality:.1%} high-quality samples)"
    warnings = [line for line in (result.run_dir / "metrics.jsonl").read_text().splitlines() if '"warning"' in line]
    assert warnings == [], "the mode-collapse watchdog (on in the preset) flagged a healthy run"


def tiny_images(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    save_npz(path, rng.integers(0, 256, (96, 1, 28, 28), dtype=np.uint8), rng.integers(0, 3, 96))
    return f"npz:{path}"


RESUME_CASES = {
    # dropout, instance noise (annealed), GP, EMA and n_critic all draw on checkpointed RNG state
    "toy-wgan-gp": ["data.dataset=toy:ring8", "data.generated_samples=512", "model.name=mlp-toy", "model.z_dim=2",
                    "model.width=32", "loss.name=wgan-gp", "stabilizers.n_critic=2", "stabilizers.d_dropout=0.2",
                    "stabilizers.instance_noise=0.1", "stabilizers.instance_noise_anneal_steps=20", "stabilizers.ema_decay=0.9",
                    "optim.lr_decay=cosine", "optim.lr_decay_start=0.25", "train.batch_size=32", "train.epochs=4"],
    # batch-norm buffers, conditional embedding/projection, label smoothing, R1, extra G updates
    "dcgan-conditional": ["model.name=dcgan", "model.width=8", "model.z_dim=16", "model.conditional=true",
                          "stabilizers.label_smoothing=0.1", "stabilizers.r1=1", "stabilizers.r1_every=2", "stabilizers.g_steps=2",
                          "train.batch_size=16", "train.epochs=2"],
    # DiffAugment's draws and ADA's p, r_t and sign sums (cut mid-interval)
    "dcgan-ada": ["model.name=dcgan", "model.width=8", "model.z_dim=16", "stabilizers.diffaugment=color,translation,cutout",
                  "stabilizers.ada_target=0.2", "stabilizers.ada_interval=5", "stabilizers.ada_speed_images=800", "stabilizers.r1=1",
                  "train.batch_size=16", "train.epochs=2"],
    # task=classify: D's Gaussian noise, the labelled batches' own order, G's BatchNorm buffers, EMA
    "semi-supervised": ["task=classify", "watchdog.every_epochs=0", "data.labels_per_class=4", "stabilizers.ema_decay=0.9", "train.batch_size=16", "train.epochs=2"],
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, case):
    overrides = ["train.deterministic=true", "train.log_every=3", "train.checkpoint_every=4", *RESUME_CASES[case]]
    if not case.startswith("toy"):
        overrides.append(f"data.dataset={tiny_images(tmp_path)}")
    straight = train("configs/dcgan-fashion.yaml", tmp_path / "straight", overrides=overrides, progress=False)

    cut = train("configs/dcgan-fashion.yaml", tmp_path / "cut", overrides=overrides, max_steps=7, progress=False)
    assert cut.step == 7 < straight.step
    cut_state, _ = ckpt.load_checkpoint(cut.checkpoint)
    assert cut_state.get("ada.p", 1) > 0, "the ADA case is cut with p already moved"
    resumed = train(resume=tmp_path / "cut", progress=False)
    assert resumed.step == straight.step

    expected, _ = ckpt.load_checkpoint(straight.checkpoint)
    got, _ = ckpt.load_checkpoint(resumed.checkpoint)
    assert expected.keys() == got.keys()
    different = [name for name in expected if not torch.equal(expected[name], got[name])]
    assert not different, f"tensors differ after resume: {different[:5]}"
    records = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "warning" not in r]  # a watchdog warning shares its step with a log line
    assert steps == sorted(set(steps)), "metrics.jsonl repeats steps after resume"


def test_each_step_makes_n_critic_d_updates_and_g_steps_g_updates():
    config = load_config("configs/toy-ring8.yaml", ["stabilizers.n_critic=2", "stabilizers.g_steps=3", "stabilizers.ema_decay=0.9"])
    trainer = Trainer(config, load_dataset(config.data, 0), torch.device("cpu"))
    g_before = [p.detach().clone() for p in trainer.G.parameters()]
    for _ in range(4):
        trainer.train_step()
    adam_steps = {name: {float(state["step"]) for state in opt.state.values()} for name, opt in (("D", trainer.opt_d), ("G", trainer.opt_g))}
    assert adam_steps == {"D": {8.0}, "G": {12.0}}
    assert all(not torch.equal(b, p) for b, p in zip(g_before, trainer.G.parameters()))
    assert trainer.step == 4


@pytest.mark.parametrize("shape, halfway", [("linear", 0.55), ("cosine", 0.55)])
def test_learning_rate_decay_holds_then_falls_to_the_final_fraction(shape, halfway):
    optim = load_config(None, [f"optim.lr_decay={shape}", "optim.lr_decay_start=0.5", "optim.lr_decay_to=0.1"]).optim
    factors = [lr_decay_factor(optim, step, 101) for step in range(101)]
    assert factors[:51] == [1.0] * 51
    assert factors[-1] == pytest.approx(0.1)
    assert factors[75] == pytest.approx(halfway)  # halfway through the decay, both shapes are halfway down
    assert all(a > b for a, b in zip(factors[50:], factors[51:])), "the decay must fall at every step"
    assert lr_decay_factor(load_config(None, []).optim, 100, 101) == 1.0


def test_the_last_update_uses_the_decayed_rate_and_the_checkpoint_keeps_the_base_rate(tmp_path):
    overrides = ["data.generated_samples=512", "train.batch_size=64", "train.epochs=2", "optim.lr_decay=linear", "optim.lr_decay_to=0.25"]
    result = train("configs/toy-ring8.yaml", tmp_path / "run", overrides=overrides, progress=False)
    state = ckpt.load_checkpoint(result.checkpoint)[1]
    for groups in (state["opt_g_groups"], state["opt_d_groups"]):
        assert groups[0]["lr"] == pytest.approx(0.25e-3) and groups[0]["base_lr"] == pytest.approx(1e-3)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    overrides = ["train.epochs=1", "data.generated_samples=2048", "train.checkpoint_every=2", "train.log_every=1"]
    result = train("configs/toy-ring8.yaml", tmp_path / "ok", overrides=overrides, max_steps=4, progress=False)
    good = ckpt.list_checkpoints(result.run_dir / "checkpoints")

    nan = Objective(d_loss=lambda real, fake: real.mean() * float("nan"), g_loss=lambda fake: fake.mean(), read_out=lambda s: s)
    monkeypatch.setattr("gankit.training.trainer.build_objective", lambda *args, **kwargs: nan)
    with pytest.raises(TrainingDiverged, match="diverged by step 5.*last good checkpoint"):
        train(resume=result.run_dir, progress=False)
    assert ckpt.list_checkpoints(result.run_dir / "checkpoints") == good
    assert open_checkpoint(result.run_dir).state["step"] == 4


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    overrides = ["train.epochs=1", "data.generated_samples=2048", "train.checkpoint_every=2"]
    result = train("configs/toy-ring8.yaml", tmp_path / "run", overrides=overrides, max_steps=2, progress=False)
    before = result.checkpoint.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("gankit.files.os.replace", disk_full)
    with pytest.raises(GankitError, match="No space left on device; the previous .* is untouched"):
        train(resume=result.run_dir, max_steps=4, progress=False)
    assert ckpt.list_checkpoints(result.run_dir / "checkpoints") == [result.checkpoint]
    assert result.checkpoint.read_bytes() == before
    assert not [p for p in (result.run_dir / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp file left


def test_truncated_or_tampered_checkpoint_is_reported_as_such(tmp_path):
    result = train("configs/toy-ring8.yaml", tmp_path / "run", overrides=["data.generated_samples=1024"], max_steps=2, progress=False)
    data = result.checkpoint.read_bytes()
    result.checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(GankitError, match=rf"is truncated \({len(data) // 2} of {len(data)} bytes\)"):
        load(result.run_dir)
    tampered = bytearray(data)
    tampered[-100] ^= 0x01  # one bit of one weight
    result.checkpoint.write_bytes(bytes(tampered))
    with pytest.raises(GankitError, match="fails its content hash"):
        load(result.run_dir)
    state_edit = data.replace(b'\\"step\\": 2', b'\\"step\\": 9')
    assert state_edit != data
    result.checkpoint.write_bytes(state_edit)
    with pytest.raises(GankitError, match="fails its content hash"):
        train(resume=result.run_dir, progress=False)


def test_new_run_refuses_an_existing_run_folder(tmp_path):
    train("configs/toy-ring8.yaml", tmp_path / "run", overrides=["data.generated_samples=1024"], max_steps=1, progress=False)
    with pytest.raises(GankitError, match="already holds a run; continue it with --resume"):
        train("configs/toy-ring8.yaml", tmp_path / "run", overrides=["data.generated_samples=1024"], max_steps=1, progress=False)


def test_run_folder_layout_and_metrics(tmp_path):
    overrides = [f"data.dataset={tiny_images(tmp_path)}", "train.batch_size=32", "train.epochs=2", "train.log_every=2"]
    result = train("configs/reference-fashion.yaml", tmp_path / "run", overrides=overrides, progress=False)
    run = result.run_dir
    assert result.step == 6  # 96 images / 32 = 3 steps per epoch
    assert load_config(run / "config.yaml").data.dataset.startswith("npz:")
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch-001.png", "epoch-002.png", "final.png"]
    assert (run / "loss.png").stat().st_size > 1000
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 3, 4, 6]  # every 2 steps, plus each epoch end
    for record in records:
        assert {"step", "epoch", "d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm", "d_grad_norm", "images_per_s", "seconds"} <= record.keys()
        assert 0 < record["d_real"] < 1 and 0 < record["d_fake"] < 1  # probabilities from the Sigmoid D
        assert record["images_per_s"] > 0 and record["seconds"] > 0 and record["g_grad_norm"] > 0
    assert [p.name for p in ckpt.list_checkpoints(run / "checkpoints")] == ["step-00000003.safetensors", "step-00000006.safetensors"]


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    overrides = ["data.generated_samples=2048", "train.epochs=1", "stabilizers.d_dropout=0.1"]
    runs = {name: train("configs/toy-ring8.yaml", tmp_path / name, overrides=overrides + [f"train.seed={seed}"], progress=False)
            for name, seed in (("a", 0), ("b", 0), ("c", 1))}
    a, b, c = (ckpt.load_checkpoint(runs[name].checkpoint)[0] for name in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["G.body.0.weight"], c["G.body.0.weight"])


def clipped_to_001(loaded, checkpoint_tensors):
    assert loaded.config.stabilizers.weight_clip == 0.01
    assert all(p.abs().max() <= 0.01 for p in loaded.discriminator.parameters())


def spectrally_normalized(loaded, checkpoint_tensors):
    for layer in loaded.discriminator.modules():
        if isinstance(layer, torch.nn.Linear):
            # one power iteration per forward lags a moving weight a little; unnormalized layers sit far from 1
            assert 0.9 < torch.linalg.matrix_norm(layer.weight, ord=2).item() < 1.15


def packs_four(loaded, checkpoint_tensors):
    assert loaded.discriminator(torch.randn(8, 2)).shape == (2,)


def clipped_and_rmsprop_state_saved(loaded, checkpoint_tensors):
    clipped_to_001(loaded, checkpoint_tensors)
    assert "square_avg" in " ".join(checkpoint_tensors)


def nothing_more(loaded, checkpoint_tensors):
    pass


STABILIZED = {  # overrides, and what the finished run must show besides finite losses (the step's wiring: tests/test_wiring.py)
    "minimax": ([], nothing_more),
    "non-saturating+noise+smoothing": (["loss.name=non-saturating", "stabilizers.instance_noise=0.1", "stabilizers.label_smoothing=0.1"], nothing_more),
    "lsgan+dropout": (["loss.name=lsgan", "stabilizers.d_dropout=0.3"], nothing_more),
    "wgan+rmsprop": (["loss.name=wgan", "optim.optimizer=rmsprop", "stabilizers.n_critic=5"], clipped_and_rmsprop_state_saved),
    "wgan-gp+pack": (["loss.name=wgan-gp", "stabilizers.pack=4"], packs_four),
    "hinge+spectral-norm+ttur": (["loss.name=hinge", "stabilizers.spectral_norm=true", "optim.lr_d=4e-4", "optim.lr_g=1e-4"], spectrally_normalized),
}


@pytest.mark.parametrize("case", sorted(STABILIZED))
def test_every_loss_and_stabilizer_trains_without_diverging(tmp_path, case):
    overrides, check = STABILIZED[case]
    overrides = ["loss.name=minimax", "data.generated_samples=4096", "train.epochs=1", "train.log_every=4", *overrides]
    result = train("configs/toy-ring8.yaml", tmp_path / "run", overrides=overrides, progress=False)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records and all(np.isfinite([r["d_loss"], r["g_loss"], r["d_grad_norm"]]).all() for r in records)
    check(open_checkpoint(result.run_dir), ckpt.load_checkpoint(result.checkpoint)[0])


def test_safetensors_whose_header_length_looks_like_a_pickle_still_loads(tmp_path):
    """A header of 0x0380 bytes makes a safetensors file start with 0x80 0x03, a pickle's first bytes."""
    from safetensors.torch import save

    for pad in range(0, 4096, 7):
        payload = save({"x": torch.zeros(1)}, metadata={"pad": "p" * pad})
        if payload[:2] == b"\x80\x03":
            break
    else:
        pytest.fail("no padding gave a 0x80 0x03 start")
    path = tmp_path / "x.safetensors"
    path.write_bytes(payload)
    assert not is_pickle(path)
    torch.save({"x": torch.zeros(1)}, tmp_path / "x.pt")
    assert is_pickle(tmp_path / "x.pt")


@pytest.mark.parametrize("which", [0, 1], ids=["conditional", "unconditional"])
def test_checkpoint_ema_generator_carries_batchnorm_statistics_of_its_own_activations(tiny_runs, which):
    """Sampling in eval mode reads the running statistics: the EMA G's must be measured on the EMA weights."""
    generator = load(tiny_runs[which])
    first_norm = next(m for m in generator.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen = []
    first_norm.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    z = torch.randn(2048, generator.z_dim, generator=torch.Generator().manual_seed(5))
    labels = torch.arange(2048) % generator.num_classes if generator.num_classes else None
    with torch.no_grad():
        generator(z, labels)
    activations = seen[0].transpose(0, 1).flatten(1)
    scale = activations.std(1)
    assert torch.allclose(first_norm.running_mean / scale, activations.mean(1) / scale, atol=0.1)
    assert torch.allclose(first_norm.running_var, activations.var(1), rtol=0.2)


def test_checkpoint_from_before_the_calibration_is_calibrated_on_load(tiny_runs, tmp_path):
    """Older checkpoints stored the live G's BatchNorm statistics with the EMA weights; loading fixes them the same way."""
    tensors, state = ckpt.load_checkpoint(ckpt.resolve_checkpoint(tiny_runs[1], "last"))
    old = {name: tensors[name.replace("G_ema.", "G.", 1)].clone() if name.startswith("G_ema.") and "running_" in name else value for name, value in tensors.items()}
    del state["ema_batchnorm_calibrated"]
    ckpt.save_checkpoint(tmp_path / "old.safetensors", old, state)
    assert not torch.equal(old["G_ema.body.1.running_var"], tensors["G_ema.body.1.running_var"])
    loaded, expected = load(tmp_path / "old.safetensors").state_dict(), load(tiny_runs[1]).state_dict()
    assert all(torch.equal(loaded[name], expected[name]) for name in expected)
