"""Restoration by GAN inversion: the degradation operators, the inversion, the blend, the CLI."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from torch import nn

from gankit.apps.restore import InversionSettings, blend, chi_prior, parse_mask, restore
from gankit.cli import main
from gankit.data import save_npz
from gankit.degradations import Degradation, GaussianBlur, GaussianNoise, Mask, RestoreError, psnr
from gankit.models.common import Discriminator, Generator

SIDE = 12
FAST = InversionSettings(steps=150, restarts=3, lr=0.05)


def tiny_generator(z_dim: int = 6, num_classes: int | None = None, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    width = z_dim + (num_classes or 0)
    body = nn.Sequential(nn.Linear(width, 64), nn.Tanh(), nn.Linear(64, SIDE * SIDE), nn.Tanh())
    return Generator(body, z_dim, (1, SIDE, SIDE), num_classes).eval()


def tiny_discriminator(sigmoid: bool, pack: int = 1) -> Discriminator:
    features = nn.Sequential(nn.Linear(pack * SIDE * SIDE, 16), nn.LeakyReLU(0.2))
    return Discriminator(features, 16, (1, SIDE, SIDE), pack=pack, sigmoid=sigmoid, flat_input=True).eval()


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- operators -------------------------------------------------------------------------------


def test_center_mask_zeros_exactly_the_hole_and_keeps_the_rest():
    keep = parse_mask("center:4", 3, 8, 8, rng())
    assert keep.shape == (1, 1, 8, 8)
    assert keep[0, 0, 2:6, 2:6].sum() == 0 and keep.sum() == 64 - 16
    images = torch.rand(3, 2, 8, 8) + 0.5
    masked = Mask(keep)(images)
    assert torch.equal(masked[..., 2:6, 2:6], torch.zeros(3, 2, 4, 4))
    assert torch.equal(masked * keep, images * keep) and torch.equal(masked[..., 0, :], images[..., 0, :])


def test_random_mask_hides_the_asked_fraction_per_image_and_repeats_by_seed():
    keep = parse_mask("random:0.3", 50, 28, 28, rng(1))
    assert keep.shape == (50, 1, 28, 28)
    assert 0.27 < 1 - keep.mean().item() < 0.33
    assert not torch.equal(keep[0], keep[1])  # each image its own holes
    assert torch.equal(keep, parse_mask("random:0.3", 50, 28, 28, rng(1)))


def test_mask_image_white_is_missing(tmp_path):
    pixels = np.zeros((10, 10), np.uint8)
    pixels[:, :3] = 255
    Image.fromarray(pixels).save(tmp_path / "mask.png")
    keep = parse_mask(str(tmp_path / "mask.png"), 1, 10, 10, rng())
    assert keep[0, 0, :, :3].sum() == 0 and keep[0, 0, :, 3:].min() == 1


def test_blur_kernel_sums_to_one_and_matches_scipy_inside():
    blur = GaussianBlur(1.5)
    assert blur.kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
    image = torch.rand(1, 1, 40, 40, generator=rng(2))
    ours = blur(image)[0, 0].numpy()
    reference = gaussian_filter(image[0, 0].double().numpy(), 1.5)  # truncate=4, like ours
    radius = len(blur.taps) // 2
    inside = slice(radius, 40 - radius)
    np.testing.assert_allclose(ours[inside, inside], reference[inside, inside], atol=1e-5)
    assert not np.allclose(ours, image[0, 0].numpy(), atol=1e-2)  # it does blur


def test_noise_has_the_asked_statistics_and_an_identity_forward():
    noise = GaussianNoise(0.3)
    clean = torch.full((4, 1, 64, 64), 0.25)
    noisy = noise.corrupt(clean, rng(3)) - clean
    assert abs(noisy.mean().item()) < 0.01 and noisy.std().item() == pytest.approx(0.3, rel=0.03)
    assert torch.equal(noise(clean), clean)


def test_composition_is_blur_then_noise_then_mask():
    keep = parse_mask("center:4", 2, SIDE, SIDE, rng())
    degradation = Degradation(keep, blur_sigma=1.0, noise_sigma=0.1)
    clean = torch.rand(2, 1, SIDE, SIDE, generator=rng(4)) * 2 - 1
    observed = degradation.corrupt(clean, rng(5))
    expected = (GaussianBlur(1.0)(clean) + 0.1 * torch.randn(clean.shape, generator=rng(5))) * keep
    assert torch.allclose(observed, expected, atol=1e-6)
    assert torch.allclose(degradation.forward(clean), GaussianBlur(1.0)(clean) * keep, atol=1e-6)


def test_chi_prior_holds_z_on_its_shell():
    radii = torch.linspace(2, 20, 1000)
    z = torch.zeros(1000, 100)
    z[:, 0] = radii
    assert radii[chi_prior(z).argmin()].item() == pytest.approx(99**0.5, abs=0.05)


def test_blend_pastes_known_pixels_and_keeps_generated_ones_in_the_hole():
    keep = parse_mask("center:4", 1, SIDE, SIDE, rng())
    observed = torch.rand(2, 1, SIDE, SIDE, generator=rng(6)) * keep
    generated = -torch.rand(2, 1, SIDE, SIDE, generator=rng(7))
    result = blend(generated, observed, Degradation(keep))
    assert torch.equal(result * keep, observed * keep)
    assert torch.equal(result * (1 - keep), generated * (1 - keep))
    assert torch.equal(blend(generated, observed, Degradation(keep, blur_sigma=1.0)), generated)  # blurred pixels are not pasted


# --- inversion -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "degradation, gain_db",
    [
        (Degradation(parse_mask("center:6", 4, SIDE, SIDE, rng())), 10),
        (Degradation(noise_sigma=0.3), 6),
        (Degradation(blur_sigma=1.5), 10),
        (Degradation(parse_mask("random:0.5", 4, SIDE, SIDE, rng(8)), blur_sigma=1.0, noise_sigma=0.1), 5),
    ],
    ids=["inpaint", "denoise", "deblur", "composed"],
)
def test_inversion_recovers_a_known_latent(degradation, gain_db):
    generator = tiny_generator()
    with torch.no_grad():
        truth = generator(torch.randn(4, generator.z_dim, generator=rng(9)))
    observed = degradation.corrupt(truth, rng(10))
    result = restore(generator, observed, degradation, FAST, seed=1)
    assert result.images.shape == truth.shape and result.latents.shape == (4, generator.z_dim)
    noise_floor = degradation.noise_sigma**2  # the residual to a noisy y cannot fall below the noise
    assert (result.data_error < noise_floor + result.start_error / 5).all()
    assert psnr(result.images, truth).mean() > psnr(observed, truth).mean() + gain_db
    assert result.images.abs().max() <= 1


def test_inversion_is_deterministic_by_seed():
    generator = tiny_generator()
    degradation = Degradation(noise_sigma=0.2)
    observed = degradation.corrupt(generator(torch.randn(2, generator.z_dim, generator=rng(11))).detach(), rng(12))
    settings = InversionSettings(steps=20, restarts=2)
    first, again, other = (restore(generator, observed, degradation, settings, seed=s) for s in (3, 3, 4))
    assert torch.equal(first.images, again.images) and not torch.equal(first.latents, other.latents)


def test_conditional_generator_finds_the_class_when_not_given():
    generator = tiny_generator(num_classes=3, seed=5)
    with torch.no_grad():
        truth = generator(torch.randn(3, generator.z_dim, generator=rng(13)), torch.tensor([2, 0, 1]))
    degradation = Degradation(noise_sigma=0.05)
    result = restore(generator, degradation.corrupt(truth, rng(14)), degradation, FAST)
    assert result.labels.tolist() == [2, 0, 1]
    given = restore(generator, truth, degradation, InversionSettings(steps=5, restarts=2), labels=torch.tensor([1, 1, 1]))
    assert given.labels.tolist() == [1, 1, 1]


@pytest.mark.parametrize("sigmoid, pack", [(True, 1), (False, 1), (False, 2)])
def test_realism_term_runs_for_probability_logit_and_packed_discriminators(sigmoid, pack):
    generator = tiny_generator()
    degradation = Degradation(parse_mask("center:6", 1, SIDE, SIDE, rng()))
    observed = degradation.corrupt(generator(torch.randn(2, generator.z_dim, generator=rng(15))).detach(), rng())
    settings = InversionSettings(steps=30, restarts=2, adv_weight=5.0)
    with_d = restore(generator, observed, degradation, settings, discriminator=tiny_discriminator(sigmoid, pack))
    without = restore(generator, observed, degradation, settings)
    assert torch.isfinite(with_d.images).all()
    # a packed D judges groups, not images: it is left out, so the result is the D-free one
    assert torch.equal(with_d.latents, without.latents) == (pack > 1)


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.zeros(2, 3, SIDE, SIDE), "3 channels but the generator makes 1"),
        (torch.zeros(2, 1, 16, 16), "16x16 but the generator makes 12x12; resize them to 12x12"),
        (torch.zeros(2, SIDE, SIDE), "(N, C, H, W)"),
    ],
)
def test_mismatched_images_are_one_line_errors(images, message):
    with pytest.raises(RestoreError) as caught:
        restore(tiny_generator(), images, Degradation(noise_sigma=0.1), FAST)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: InversionSettings.create(steps=0), "restore setting steps"),
        (lambda: InversionSettings.create(restart=3), "restore setting restart"),
        (lambda: Degradation(), "nothing to restore"),
        (lambda: Degradation(blur_sigma=-1), "blur sigma"),
        (lambda: Degradation(noise_sigma=3), "noise sigma"),
        (lambda: parse_mask("center:40", 1, 28, 28, rng()), "center:SIZE needs 1 <= SIZE <= 28"),
        (lambda: parse_mask("random:1.5", 1, 28, 28, rng()), "0 < FRACTION < 1"),
        (lambda: parse_mask("center:big", 1, 28, 28, rng()), "not an integer"),
        (lambda: parse_mask("/no/mask.png", 1, 28, 28, rng()), "not a mask image file"),
        (lambda: restore(tiny_generator(), torch.zeros(1, 1, SIDE, SIDE), Degradation(noise_sigma=0.1), labels=torch.tensor([0])), "unconditional"),
    ],
)
def test_bad_settings_are_one_line_errors(make, message):
    with pytest.raises(RestoreError) as caught:
        make()
    assert message in str(caught.value) and "\n" not in str(caught.value)


# --- CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("restore")
    generator = np.random.default_rng(0)
    save_npz(root / "train.npz", generator.integers(0, 256, (32, 1, 28, 28), dtype=np.uint8))
    save_npz(root / "inputs.npz", generator.integers(0, 256, (5, 1, 28, 28), dtype=np.uint8))
    save_npz(root / "big.npz", generator.integers(0, 256, (2, 1, 32, 32), dtype=np.uint8))
    run = root / "run"
    assert main(["train", "--config", "dcgan-fashion", "--out", str(run), "--max-steps", "2",
                 f"data.dataset=npz:{root / 'train.npz'}", "train.batch_size=16", "model.width=8"]) == 0
    return run


def test_cli_restores_and_writes_outputs_and_strips(tiny_run, tmp_path, capsys):
    inputs = tiny_run.parent / "inputs.npz"
    argv = ["restore", str(tiny_run), "--input", str(inputs), "--out", str(tmp_path / "out"), "--mask", "center:10",
            "--noise", "0.1", "--steps", "5", "--restarts", "2", "--seed", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "5 images restored" in out and "PSNR against the input" in out
    restored = np.load(tmp_path / "out" / "restored.npz")["images"]
    assert restored.shape == (5, 28, 28, 1) and restored.dtype == np.uint8
    # one row per image: degraded | restored | ground truth, 28 px tiles with 2 px gaps
    assert Image.open(tmp_path / "out" / "strips.png").size == (3 * 30 + 2, 5 * 30 + 2)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == 5 and summary["psnr_restored"] > 0
    assert main([*argv[:5], str(tmp_path / "again"), *argv[6:]]) == 0
    assert np.array_equal(restored, np.load(tmp_path / "again" / "restored.npz")["images"])


def test_cli_degraded_input_has_no_ground_truth_column(tiny_run, tmp_path):
    Image.fromarray(np.full((28, 28), 100, np.uint8)).save(tmp_path / "photo.png")
    assert main(["restore", str(tiny_run), "--input", str(tmp_path / "photo.png"), "--out", str(tmp_path / "out"),
                 "--blur", "1.0", "--degraded", "--steps", "3", "--restarts", "1"]) == 0
    assert Image.open(tmp_path / "out" / "strips.png").size == (2 * 30 + 2, 30 + 2)
    assert "psnr_restored" not in json.loads((tmp_path / "out" / "summary.json").read_text())


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--input", "{big}", "--noise", "0.3"], "32x32 but the generator makes 28x28"),
        (["--input", "{inputs}"], "nothing to restore"),
        (["--input", "{inputs}", "--noise", "0.3", "--steps", "-1"], "restore setting steps"),
        (["--input", "{inputs}", "--noise", "0.3", "--label", "2"], "unconditional"),
        (["--input", "/no/such.png", "--noise", "0.3"], "does not exist"),
    ],
)
def test_cli_mistakes_get_one_line_and_exit_2(tiny_run, tmp_path, extra, message, capsys):
    paths = {"big": tiny_run.parent / "big.npz", "inputs": tiny_run.parent / "inputs.npz"}
    extra = [part.format(**paths) for part in extra]
    assert main(["restore", str(tiny_run), "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gankit: error: ") and message in err and err.count("\n") == 1


def test_per_image_masks_follow_their_images_through_batches():
    generator = tiny_generator()
    keep = parse_mask("random:0.4", 3, SIDE, SIDE, rng(16))
    degradation = Degradation(keep)
    observed = degradation.corrupt(torch.rand(3, 1, SIDE, SIDE, generator=rng(17)) * 2 - 1, rng())
    result = restore(generator, observed, degradation, InversionSettings(steps=3, restarts=2, batch_size=1))
    assert torch.equal(result.images * keep, observed * keep)  # each image keeps its own known pixels
    assert not torch.equal(result.images * (1 - keep), observed * (1 - keep))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 64, 64)])
def test_every_dcgan_image_size_restores(shape):
    """The sizes gankit trains (28, 32, 64 px, gray or RGB): a DCGAN's own image, half hidden, comes back closer than the masked input."""
    from gankit.config import ModelConfig, StabilizerConfig
    from gankit.models import build_models

    torch.manual_seed(0)
    generator, discriminator = build_models(ModelConfig(name="dcgan", width=8, z_dim=16), StabilizerConfig(), shape, None)
    for layer in generator.modules():  # PyTorch's default init: DCGAN's N(0, 0.02) draws near-blank images
        if isinstance(layer, nn.ConvTranspose2d):
            layer.reset_parameters()
    generator.eval()
    with torch.no_grad():
        truth = generator(torch.randn(2, 16))
    keep = parse_mask(f"center:{shape[1] // 2}", 2, shape[1], shape[2], torch.Generator().manual_seed(0))
    observed = truth * keep
    result = restore(generator, observed, Degradation(keep), InversionSettings(steps=60, restarts=2), discriminator=discriminator.eval())
    assert result.images.shape == truth.shape
    assert psnr(result.images, truth).mean() > psnr(observed, truth).mean() + 3
