"""The residual and StyleGAN2-style architectures: contracts at 32-256 px, their parts (modulation,
minibatch std), path-length regularization and its wiring, lazy R1 with them, a short training
run each, and the registry refusing what an architecture does not accept."""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gankit.config import ModelConfig, StabilizerConfig, load_config
from gankit.data import load_dataset, save_npz
from gankit.errors import ConfigError
from gankit.models import build_models
from gankit.models.resnet import ClassBatchNorm2d
from gankit.models.sampling import render
from gankit.models.stylegan2 import MinibatchStd, ModulatedConv2d
from gankit.regularizers import path_length_penalty
from gankit.training.hooks import Callback
from gankit.training.trainer import Trainer

NUM_CLASSES = 10
WIDTH = 4  # small enough that 256 px runs in well under a second
ARCHITECTURES = ["resnet", "stylegan2"]
SIZES = [32, 64, 128, 256]


def build(name: str, shape: tuple[int, ...], *, conditional: bool = False, width: int = WIDTH, **stabilizers):
    model = ModelConfig(name=name, width=width, conditional=conditional, mapping_layers=2)
    return build_models(model, StabilizerConfig(**stabilizers), shape, NUM_CLASSES if conditional else None)


# --- contracts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("side", SIZES)
@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize(("channels", "conditional"), [(1, False), (3, True)])
def test_shapes_range_and_conditioning(name, side, channels, conditional):
    torch.manual_seed(0)
    generator, discriminator = build(name, (channels, side, side), conditional=conditional)
    labels = torch.arange(4) % NUM_CLASSES if conditional else None
    z = torch.randn(4, generator.z_dim)
    fake = generator(z, labels)
    assert fake.shape == (4, channels, side, side)
    assert fake.min() >= -1 and fake.max() <= 1
    assert discriminator(fake, labels).shape == (4,)
    if conditional:
        generator.eval(), discriminator.eval()
        with torch.no_grad():  # resnet's class gains start equal (1) for every class; training sets them apart
            for embedding in (m for m in generator.modules() if isinstance(m, nn.Embedding)):
                embedding.weight.normal_(1, 0.5)
        other = (labels + 1) % NUM_CLASSES
        assert not torch.allclose(generator(z, labels), generator(z, other))
        assert not torch.allclose(discriminator(fake, labels), discriminator(fake, other))
        with pytest.raises(ValueError, match="labels"):
            generator(z)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_packing(name):
    torch.manual_seed(0)
    _, discriminator = build(name, (3, 32, 32), pack=2)
    first_conv = next(m for m in discriminator.modules() if hasattr(m, "weight") and m.weight.dim() == 4)
    assert first_conv.weight.shape[1] == 6
    discriminator.eval()  # resnet's implied spectral norm would otherwise step its power iteration on each call
    x = torch.randn(8, 3, 32, 32)
    assert discriminator(x).shape == (4,)
    if name == "resnet":  # no batch statistics: a change in sample 5 reaches only its pair's score
        changed = x.clone()
        changed[5] += 1
        before, after = discriminator(x), discriminator(changed)
        assert torch.equal(before[[0, 1, 3]], after[[0, 1, 3]]) and before[2] != after[2]


def test_resnet_conditions_g_by_class_batchnorm_and_d_by_projection():
    generator, discriminator = build("resnet", (3, 32, 32), conditional=True)
    assert generator.label_embedding is None, "the label reaches G through its BatchNorm gains, not through z"
    gains = [m for m in generator.modules() if isinstance(m, ClassBatchNorm2d)]
    assert len(gains) == 6 and all(m.gain.weight.shape == (NUM_CLASSES, m.norm.num_features) for m in gains)
    assert discriminator.projection is not None


def test_resnet_implies_spectral_norm_and_the_config_writes_it_out():
    config = load_config(None, ["model.name=resnet"])
    assert config.stabilizers.spectral_norm is True
    assert load_config(None, ["model.name=resnet", "stabilizers.spectral_norm=false"]).stabilizers.spectral_norm is False
    assert load_config(None, ["model.name=dcgan"]).stabilizers.spectral_norm is False
    _, discriminator = build("resnet", (3, 32, 32), spectral_norm=None)  # unset: the entry's implied value
    convs = [m for m in discriminator.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert convs and all(parametrize.is_parametrized(m, "weight") for m in convs)
    _, plain = build("resnet", (3, 32, 32), spectral_norm=False)
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())


# --- StyleGAN2's parts ---------------------------------------------------------------------------


def test_demodulated_conv_keeps_unit_variance_and_matches_per_sample_convolutions():
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 32, 3, w_dim=16)
    with torch.no_grad():
        conv.affine.weight.normal_(0, 3)  # strongly varied styles
        x, w = torch.randn(4, 64, 32, 32), torch.randn(4, 16)
        out = conv(x, w)
        assert out[:, :, 1:-1, 1:-1].std().item() == pytest.approx(1.0, abs=0.05)
        styles = conv.affine(w)
        for i in range(4):  # the grouped convolution is each sample's own modulated, demodulated conv
            weight = conv.weight * conv.weight_gain * styles[i][None, :, None, None]
            weight = weight / weight.square().sum(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
            torch.testing.assert_close(out[i : i + 1], nn.functional.conv2d(x[i : i + 1], weight, padding=1), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(conv._shared_weight_form(x, styles), out, rtol=1e-4, atol=1e-5)  # what tracing and export run
        other = conv(x, torch.randn(4, 16))
        assert not torch.allclose(out, other), "the style changes the output"


def set_noise_strengths(generator: nn.Module, strength: float) -> None:
    with torch.no_grad():
        for name, param in generator.named_parameters():
            if name.endswith("noise_strength"):
                param.fill_(strength)


def test_noise_strength_zero_is_deterministic_and_the_style_steers_g():
    torch.manual_seed(0)
    generator, _ = build("stylegan2", (3, 32, 32))
    z = torch.randn(4, generator.z_dim)
    torch.testing.assert_close(generator(z), generator(z), rtol=0, atol=0)  # noise strengths start at 0
    w = generator.map(z)
    torch.testing.assert_close(generator.synthesize(w), generator(z), rtol=0, atol=0)
    assert not torch.allclose(generator.synthesize(w), generator.synthesize(w.flip(0)))
    set_noise_strengths(generator, 0.5)
    assert not torch.equal(generator(z), generator(z)), "training draws fresh noise"
    generator.eval()
    noisy = generator(z)
    torch.testing.assert_close(generator(z), noisy, rtol=0, atol=0, msg="eval mode adds each layer's fixed noise")
    set_noise_strengths(generator, 0.0)
    assert not torch.allclose(generator(z), noisy), "the fixed noise is there"


def test_a_traced_stylegan2_generator_takes_any_batch_size():
    """The grouped convolution's group count is the batch: tracing must not freeze it to the example's."""
    torch.manual_seed(0)
    generator, _ = build("stylegan2", (3, 32, 32), conditional=True)
    generator.eval()
    with torch.no_grad():
        traced = torch.jit.trace(generator, (torch.randn(2, generator.z_dim), torch.arange(2)), check_trace=False)
        z, labels = torch.randn(5, generator.z_dim), torch.arange(5)
        torch.testing.assert_close(traced(z, labels), generator(z, labels), rtol=1e-4, atol=1e-5)


def test_minibatch_std_appends_each_groups_spread_and_keeps_groups_apart():
    x = torch.randn(8, 3, 4, 4)
    out = MinibatchStd()(x)
    assert out.shape == (8, 4, 4, 4)
    assert out[:4, 3].unique().item() == pytest.approx(x[:4].std(dim=0, unbiased=False).mean().item(), rel=1e-5)
    assert out[4:, 3].unique().item() == pytest.approx(x[4:].std(dim=0, unbiased=False).mean().item(), rel=1e-5)
    changed = x.clone()
    changed[6] += 3
    assert torch.equal(MinibatchStd()(changed)[:4], out[:4]), "the first group does not see the second"
    assert MinibatchStd()(torch.randn(6, 3, 4, 4)).shape == (6, 4, 4, 4), "a batch 4 does not divide uses groups of 2"


# --- path-length regularization ------------------------------------------------------------------


def test_path_length_penalty_on_a_scaled_identity():
    """images = c * w (as 1 x 4 x 4 maps): J^T y = c y, so each length is c |y|, y ~ N(0, I) / 4."""
    c, decay, previous = 3.0, 0.5, torch.tensor(2.0)
    w = torch.randn(5, 16, requires_grad=True)
    penalty, mean = path_length_penalty(lambda w: c * w.view(5, 1, 4, 4), w, previous, decay, torch.Generator().manual_seed(7))
    y = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(7)) / 4
    lengths = c * y.flatten(1).norm(dim=1)
    expected_mean = previous + decay * (lengths.mean() - previous)
    assert mean.item() == pytest.approx(expected_mean.item(), rel=1e-6)
    assert penalty.item() == pytest.approx((lengths - expected_mean).square().mean().item(), rel=1e-5)


def small_trainer(tmp_path, npz, *overrides) -> Trainer:
    config = load_config(None, [f"data.dataset=npz:{npz}", "model.name=stylegan2", "model.width=4", "model.mapping_layers=2",
                                "train.batch_size=8", "train.log_every=1", "data.image_size=32", *overrides])
    return Trainer(config, load_dataset(config.data), torch.device("cpu"))


class Recorder(Callback):
    def __init__(self):
        self.records = []

    def on_log(self, trainer, record):
        self.records.append(record)


def run_one_step(trainer: Trainer, run_dir) -> dict:
    """One step through fit (train.log_every=1): the step's logged record, its adversarial losses included."""
    recorder = Recorder()
    trainer.fit(run_dir, [recorder], max_steps=trainer.step + 1)
    return recorder.records[-1]


def record_totals(update) -> list[torch.Tensor]:
    """The totals (loss plus penalties) that each step of a trainer's NetworkUpdate minimizes, as they come."""
    totals = []
    step = update.step
    update.step = lambda loss: (totals.append(loss.detach().clone()), step(loss))
    return totals


def test_the_g_step_adds_weight_times_k_times_the_path_length_penalty_every_k_steps(tmp_path, tiny_npz):
    weight, every = 2.0, 2
    trainer = small_trainer(tmp_path, tiny_npz, f"stabilizers.path_length={weight}", f"stabilizers.path_length_every={every}")
    G0 = copy.deepcopy(trainer.G)
    noise_state = trainer.noise.get_state()
    g_totals = record_totals(trainer.update_g)
    records = [run_one_step(trainer, tmp_path), run_one_step(trainer, tmp_path)]

    # Replay the run's noise stream: the D step's fakes, then the penalty's z, then its y.
    replay = torch.Generator().set_state(noise_state)
    torch.randn(8, 100, generator=replay)
    z = torch.randn(8, 100, generator=replay)
    w = G0.map(z)
    images = G0.synthesize(w)  # noise strengths are 0 before the first update: the same images
    y = torch.randn(images.shape, generator=replay) / math.sqrt(32 * 32)
    (grads,) = torch.autograd.grad((images * y).sum(), w)
    lengths = grads.norm(dim=1)
    mean = 0.01 * lengths.mean()  # the running mean starts at 0
    expected = weight * every * (lengths - mean).square().mean()
    assert expected > 1e-3, "the penalty must be large enough for the test to see it"
    assert (g_totals[0] - records[0]["g_loss"]).item() == pytest.approx(expected.item(), rel=1e-4)
    assert g_totals[1].item() == pytest.approx(records[1]["g_loss"]), "step 1 is not a regularization step"
    assert trainer.G.path_length_mean.value.item() == pytest.approx(mean.item(), rel=1e-5)


def test_the_path_length_mean_survives_a_checkpoint(tmp_path, tiny_npz):
    trainer = small_trainer(tmp_path, tiny_npz, "stabilizers.path_length=2", "stabilizers.path_length_every=1")
    for _ in range(3):
        trainer.train_step()
    kept = trainer.G.path_length_mean.value.clone()
    assert kept > 0
    trainer.save_to(tmp_path / "ckpt.safetensors")
    resumed = small_trainer(tmp_path, tiny_npz, "stabilizers.path_length=2", "stabilizers.path_length_every=1")
    assert resumed.G.path_length_mean.value == 0
    resumed.restore(tmp_path / "ckpt.safetensors")
    assert torch.equal(resumed.G.path_length_mean.value, kept)


def test_the_path_length_mean_stays_float32_in_a_bf16_compute_copy(tmp_path, tiny_npz):
    """A 1% step of a bfloat16 running mean rounds away once the mean is ~100x the step's gap."""
    trainer = small_trainer(tmp_path, tiny_npz, "stabilizers.path_length=2", "stabilizers.path_length_every=1",
                            "train.precision=bf16", "train.precision_fallback=false")
    compute = trainer.update_g.compute
    assert compute is not trainer.G and next(compute.parameters()).dtype == torch.bfloat16
    assert compute.path_length_mean.value.dtype == torch.float32
    trainer.train_step()
    trainer.train_step()
    assert compute.path_length_mean.value > 0
    trainer.save_to(tmp_path / "ckpt.safetensors")  # brings the compute copy's buffers home first
    assert torch.equal(trainer.G.path_length_mean.value, compute.path_length_mean.value)


@pytest.mark.parametrize(("name", "extra"), [("stylegan2", []), ("resnet", ["stabilizers.spectral_norm=false"])])
def test_lazy_r1_applies_to_the_new_ds(tmp_path, tiny_npz, name, extra):
    """(resnet without its spectral norm here: the copy of D would step the power iteration differently.)"""
    gamma, every = 4.0, 2
    trainer = small_trainer(tmp_path, tiny_npz, f"model.name={name}", f"stabilizers.r1={gamma}", f"stabilizers.r1_every={every}", *extra)
    D0 = copy.deepcopy(trainer.D)
    inputs = []
    trainer.D.register_forward_hook(lambda module, args, output: inputs.append(args[0].detach().clone()))
    totals = record_totals(trainer.update_d)
    record = run_one_step(trainer, tmp_path)
    real = inputs[0][:8]  # the joint pass: real first
    x = real.requires_grad_(True)
    (grad,) = torch.autograd.grad(D0(x).sum(), x)
    expected = gamma / 2 * every * grad.flatten(1).square().sum(1).mean()
    assert expected > 1e-3, "the penalty must be large enough for the test to see it"
    assert (totals[0] - record["d_loss"]).item() == pytest.approx(expected.item(), rel=1e-4)


# --- a short run each ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_32(mnist_10k, tmp_path_factory):
    """200 MNIST digits at 32 px (20 per class) as an npz, loaded and resized once."""
    config = load_config(None, [f"data.dataset=idx:{mnist_10k}", "data.image_size=32", "data.per_class=20"])
    data = load_dataset(config.data)
    path = tmp_path_factory.mktemp("mnist32") / "mnist32.npz"
    save_npz(path, data.samples.numpy(), data.labels.numpy())
    return path


@pytest.mark.parametrize(("name", "extra"), [("resnet", ["loss.name=hinge"]), ("stylegan2", ["stabilizers.r1=1", "stabilizers.r1_every=4", "stabilizers.path_length=2"])])
def test_a_short_run_moves_g_toward_the_digits(tmp_path, mnist_32, name, extra):
    """MNIST is mostly black (mean pixel -0.74): 30 steps must close most of the gap from G's start."""
    config = load_config(None, [f"data.dataset=npz:{mnist_32}", f"model.name={name}", "model.width=2", "model.mapping_layers=2",
                                "train.batch_size=20", "train.epochs=3", "train.log_every=10", "optim.lr_g=2e-3", "optim.lr_d=2e-3",
                                "optim.beta1=0.0", "optim.beta2=0.99", *extra])
    torch.manual_seed(0)
    trainer = Trainer(config, load_dataset(config.data), torch.device("cpu"))
    real_mean = (trainer.data.samples.float() / 127.5 - 1).mean()
    z = torch.randn(64, trainer.G.z_dim)
    gap_before = (render(trainer.G, z).mean() - real_mean).abs()
    recorder = Recorder()
    trainer.fit(tmp_path, [recorder])
    assert trainer.step == 30
    assert len(recorder.records) == 3 and all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in recorder.records)
    gap_after = (render(trainer.G, z).mean() - real_mean).abs()
    assert gap_after < 0.5 * gap_before, f"mean pixel gap {gap_before:.3f} -> {gap_after:.3f}"


# --- what the registry refuses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("dcgan", (3, 128, 128), "model.name=dcgan supports 28x28, 32x32, 64x64 images, not 128x128; set data.image_size"),
        ("resnet", (3, 48, 48), "model.name=resnet supports 32x32, 64x64, 128x128, 256x256 images, not 48x48"),
        ("resnet", (3, 32, 64), "not 32x64"),
        ("mlp-reference", (3, 64, 64), "model.name=mlp-reference supports 28x28, 32x32 images, not 64x64"),
        ("stylegan2", (2,), r"model.name=stylegan2 is an image model .* models for these: mlp-toy"),
        ("mlp-toy", (3, 32, 32), r"model.name=mlp-toy is a points model .* models for these: mlp-reference, dcgan, resnet, stylegan2"),
    ],
)
def test_data_an_architecture_does_not_take_is_one_config_error_line(name, shape, message):
    with pytest.raises(ConfigError, match=message) as caught:
        build(name, shape)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.name=resnet", "stabilizers.d_dropout=0.2"], "stabilizers.d_dropout is not built into model.name=resnet's discriminator; leave it off, or use it with mlp-reference, dcgan, mlp-toy"),
        (["model.name=stylegan2", "stabilizers.spectral_norm=true"], "stabilizers.spectral_norm is not built into model.name=stylegan2's discriminator"),
        (["model.name=dcgan", "stabilizers.path_length=2"], "stabilizers.path_length needs a generator with a mapping network (model.name=stylegan2), not model.name=dcgan"),
    ],
)
def test_a_stabilizer_an_architecture_does_not_take_is_one_config_error_line(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load_config(None, overrides)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("name", "stabilizer"), [("resnet", {"d_dropout": 0.2}), ("stylegan2", {"spectral_norm": True})])
def test_build_models_refuses_them_too(name, stabilizer):
    """Models are usable without the config: build_models checks the entry as well."""
    with pytest.raises(ConfigError, match=f"stabilizers.{next(iter(stabilizer))} is not built into model.name={name}"):
        build(name, (3, 32, 32), **stabilizer)
