"""DiffAugment's ops do what they say and pass gradients; ADA's p moves as the paper says; bad settings are refused.

The trainer's wiring (D's inputs augmented, p logged and steered) is in test_wiring.py, resume in test_training.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gankit.config import load_config
from gankit.data import load_dataset
from gankit.diffaugment import (
    POLICIES,
    AdaptiveProbability,
    cut,
    diff_augment,
    random_brightness,
    random_contrast,
    random_cutout,
    random_saturation,
    random_translation,
    shift,
)
from gankit.errors import ConfigError
from gankit.losses import build_objective
from gankit.training.trainer import Trainer

OPS = [op for ops in POLICIES.values() for op in ops]
ALL = list(POLICIES)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 64, channels: int = 3, side: int = 16, seed: int = 1) -> torch.Tensor:
    """Random images in [-1, 1] with no exact zeros, so a zeroed pixel is the augmentation's doing."""
    x = torch.rand((n, channels, side, side), generator=seeded(seed)) * 2 - 1
    return torch.where(x == 0, 0.5, x)


# --- gradients -------------------------------------------------------------------------------
@pytest.mark.parametrize("op", OPS, ids=lambda op: op.__name__)
def test_each_op_is_differentiable(op):
    x = images(2, side=8).double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: op(t, seeded()), (x,))
    (grad,) = torch.autograd.grad(op(x, seeded()).pow(2).sum(), x)
    assert grad.abs().sum() > 0


def test_the_pipeline_at_a_probability_is_differentiable():
    x = images(4, side=8).double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: diff_augment(t, ALL, seeded(), torch.tensor(0.5)), (x,))


@pytest.mark.parametrize("policy", ALL)
def test_g_learns_through_the_augmented_d(policy):
    G = nn.Sequential(nn.Linear(4, 3 * 8 * 8), nn.Tanh(), nn.Unflatten(1, (3, 8, 8)))
    D = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))
    D.requires_grad_(False)
    D(diff_augment(G(torch.randn(8, 4, generator=seeded())), [policy], seeded())).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())


# --- what each op does -----------------------------------------------------------------------
def test_shift_moves_content_and_fills_with_zeros():
    x = torch.zeros(1, 1, 6, 6)
    x[0, 0, 2, 3] = 1.0
    moved = shift(x, torch.tensor([2]), torch.tensor([-1]))
    assert moved[0, 0, 4, 2] == 1.0 and moved.sum() == 1.0
    filled = shift(torch.ones(1, 1, 6, 6), torch.tensor([1]), torch.tensor([2]))
    assert (filled[0, 0, :1] == 0).all() and (filled[0, 0, :, :2] == 0).all() and filled.sum() == 5 * 4
    assert shift(x, torch.tensor([6]), torch.tensor([0])).sum() == 0, "shifted out of view"


def test_translation_shifts_each_image_by_at_most_an_eighth():
    x = images(200)
    out = random_translation(x, seeded())
    reach = 16 // 8
    offsets = [(dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)]
    found = []
    for i in range(len(x)):
        matches = [o for o in offsets if torch.equal(out[i : i + 1], shift(x[i : i + 1], torch.tensor([o[0]]), torch.tensor([o[1]])))]
        assert len(matches) == 1, f"image {i} is no shift within {reach} pixels"
        found.append(matches[0])
    assert set(found) == set(offsets), "every shift in range is drawn"


def test_cut_zeroes_the_given_rectangle():
    out = cut(torch.ones(1, 2, 6, 6), torch.tensor([-1]), torch.tensor([4]), (3, 3))
    expected = torch.ones(6, 6)
    expected[:2, 4:] = 0
    assert torch.equal(out[0, 0], expected) and torch.equal(out[0, 1], expected)


def test_cutout_zeroes_a_square_half_the_side():
    x = images(300)
    zeroed = random_cutout(x, seeded()) == 0
    assert torch.equal(zeroed[:, 0], zeroed[:, 1]), "the same square in every channel"
    full = 0
    for mask in zeroed[:, 0]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert len(rows) and torch.equal(mask, mask.any(1)[:, None] & mask.any(0)[None, :]), "one axis-aligned rectangle"
        assert rows[-1] - rows[0] + 1 == len(rows) <= 8 and cols[-1] - cols[0] + 1 == len(cols) <= 8
        clipped = {rows[0].item(), cols[0].item()} & {0} or {rows[-1].item(), cols[-1].item()} & {15}
        assert clipped or (len(rows), len(cols)) == (8, 8), "a square clipped only by the image's edge"
        full += (len(rows), len(cols)) == (8, 8)
    assert full > 50


def test_colour_ops_stay_in_their_ranges():
    x = images(500)
    brightened = random_brightness(x, seeded()) - x
    offset = brightened[:, :1, :1, :1]
    assert torch.allclose(brightened, offset.expand_as(x), atol=1e-6)
    assert offset.min() >= -0.5 and offset.max() < 0.5 and offset.max() - offset.min() > 0.9

    grey = x.mean(1, keepdim=True)
    saturated = random_saturation(x, seeded())
    assert torch.allclose(saturated.mean(1, keepdim=True), grey, atol=1e-6)
    factor = ((saturated - grey) / (x - grey))[:, :1, :1, :1]
    assert torch.allclose(saturated - grey, factor * (x - grey), atol=1e-5)
    assert factor.min() >= 0 and factor.max() < 2 and factor.max() - factor.min() > 1.8
    gray_images = x[:, :1]
    assert torch.allclose(random_saturation(gray_images, seeded()), gray_images), "no colour to saturate"

    mean = x.mean((1, 2, 3), keepdim=True)
    contrasted = random_contrast(x, seeded())
    assert torch.allclose(contrasted.mean((1, 2, 3), keepdim=True), mean, atol=1e-6)
    factor = ((contrasted - mean) / (x - mean))[:, :1, :1, :1]
    assert torch.allclose(contrasted - mean, factor * (x - mean), atol=1e-5)
    assert factor.min() >= 0.5 and factor.max() < 1.5 and factor.max() - factor.min() > 0.9


def test_probability_zero_is_the_identity_and_one_half_augments_about_half():
    x = images(400)
    assert torch.equal(diff_augment(x, ALL, seeded(), torch.tensor(0.0)), x)
    changed = (diff_augment(x, ["translation"], seeded(), torch.tensor(0.5)) != x).flatten(1).any(1).float().mean()
    assert 0.4 < changed < 0.6  # a drawn zero shift leaves an image as it was, slightly under p


def test_the_same_seed_gives_the_same_augmentation():
    x = images(8)
    assert torch.equal(diff_augment(x, ALL, seeded(3)), diff_augment(x, ALL, seeded(3)))
    assert not torch.equal(diff_augment(x, ALL, seeded(3)), diff_augment(x, ALL, seeded(4)))
    assert torch.equal(diff_augment(x, [], seeded(3)), x)


# --- ADA -------------------------------------------------------------------------------------
def adjusted(p: float, verdicts: torch.Tensor, target: float = 0.6, step: float = 0.01, interval: int = 4) -> AdaptiveProbability:
    ada = AdaptiveProbability(target, interval, step, torch.device("cpu"))
    ada.p = torch.tensor(p)
    for _ in range(interval):
        ada.observe(verdicts)
    ada.adjust()
    return ada


def test_p_rises_while_d_calls_every_real_real():
    ada = adjusted(0.2, torch.full((16,), 3.0))
    assert ada.rt.item() == 1.0
    assert ada.p.item() == pytest.approx(0.21)


def test_p_falls_when_d_doubts_the_reals_and_stays_in_0_1():
    mixed = torch.tensor([1.0, -2.0, 0.5, -0.1])  # r_t = 0 < 0.6
    assert adjusted(0.2, mixed).p.item() == pytest.approx(0.19)
    assert adjusted(0.005, mixed).p.item() == 0.0
    assert adjusted(0.995, torch.ones(4)).p.item() == 1.0


def test_r_t_is_the_mean_sign_since_the_last_adjustment():
    ada = AdaptiveProbability(0.6, 2, 0.01, torch.device("cpu"))
    ada.observe(torch.tensor([1.0, 1.0, -1.0, 1.0]))
    ada.observe(torch.tensor([1.0, -1.0]))
    ada.adjust()
    assert ada.rt.item() == pytest.approx(2 / 6)
    ada.observe(torch.ones(3))
    ada.adjust()
    assert ada.rt.item() == 1.0, "the sums start again after an adjustment"


@pytest.mark.parametrize(
    "loss, space, scores, signs",
    [
        ("non-saturating", "logits", [2.0, -0.5, 0.1], [1, -1, 1]),
        ("non-saturating", "probabilities", [0.9, 0.3, 0.51], [1, -1, 1]),  # a Sigmoid D: the sign of the logit
        ("lsgan", "logits", [0.9, 0.3, 0.51], [1, -1, 1]),  # the 0-1 coding's midpoint
        ("hinge", "logits", [2.0, -0.5, 0.1], [1, -1, 1]),
    ],
)
def test_verdicts_are_signed_in_logit_space(loss, space, scores, signs):
    verdict = build_objective(loss, space).verdict
    assert verdict(torch.tensor(scores)).sign().tolist() == signs


def test_wasserstein_critics_give_no_verdict():
    assert build_objective("wgan").verdict is None and build_objective("wgan-gp").verdict is None


# --- config ----------------------------------------------------------------------------------
def test_policies_are_a_list_or_a_comma_string():
    assert load_config(None, ["stabilizers.diffaugment=color, cutout"]).stabilizers.diffaugment == ["color", "cutout"]
    assert load_config(None, ["stabilizers.diffaugment=[translation]"]).stabilizers.diffaugment == ["translation"]
    assert load_config(None, ["stabilizers.diffaugment="]).stabilizers.diffaugment == []
    assert load_config(None, []).stabilizers.diffaugment == [] and load_config(None, []).stabilizers.ada_target is None


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["stabilizers.diffaugment=color,colour"], "unknown DiffAugment policy 'colour'; choose from color, translation, cutout"),
        (["stabilizers.diffaugment=color", "stabilizers.ada_target=0"], "stabilizers.ada_target=0: Input should be greater than 0"),
        (["stabilizers.diffaugment=color", "stabilizers.ada_target=1"], "stabilizers.ada_target=1: Input should be less than 1"),
        (["stabilizers.ada_target=0.6"], "also set stabilizers.diffaugment=color,translation,cutout"),
        (["stabilizers.diffaugment=color", "stabilizers.ada_target=0.6", "loss.name=wgan-gp"], "use it with minimax, non-saturating, lsgan, hinge"),
    ],
)
def test_bad_augmentation_settings_give_one_clear_line(overrides, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(None, overrides)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_diffaugment_refuses_2d_points():
    config = load_config("configs/toy-ring8.yaml", ["stabilizers.diffaugment=translation", "data.generated_samples=512"])
    with pytest.raises(ConfigError, match="transforms images, and toy:ring8 holds 2-D points; unset stabilizers.diffaugment$"):
        Trainer(config, load_dataset(config.data, 0), torch.device("cpu"))
