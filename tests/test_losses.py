"""Each objective against its formula on hand-computed inputs (ln 3 logits give 0.25/0.5/0.75)."""

import math

import pytest
import torch
import torch.nn.functional as F

from gankit.losses import build_objective, hinge_d_loss, lsgan_d_loss, lsgan_g_loss, wasserstein_d_loss, wasserstein_g_loss

LN3 = math.log(3)
REAL_LOGITS = torch.tensor([0.0, LN3])  # D(x) = 0.5, 0.75
FAKE_LOGITS = torch.tensor([-LN3, 0.0])  # D(G(z)) = 0.25, 0.5


def scores(space):
    if space == "logits":
        return REAL_LOGITS, FAKE_LOGITS
    return torch.sigmoid(REAL_LOGITS), torch.sigmoid(FAKE_LOGITS)


@pytest.mark.parametrize("space", ["logits", "probabilities"])
def test_minimax_matches_value_function(space):
    real, fake = scores(space)
    objective = build_objective("minimax", space)
    # -(E log D(x) + E log(1 - D(G(z)))) = -((ln .5 + ln .75)/2 + (ln .75 + ln .5)/2)
    assert objective.d_loss(real, fake).item() == pytest.approx(-(math.log(0.5) + math.log(0.75)), abs=1e-6)
    # G minimizes E log(1 - D(G(z))) = (ln .75 + ln .5) / 2
    assert objective.g_loss(fake).item() == pytest.approx((math.log(0.75) + math.log(0.5)) / 2, abs=1e-6)


@pytest.mark.parametrize("space", ["logits", "probabilities"])
def test_non_saturating_g_loss(space):
    _, fake = scores(space)
    objective = build_objective("non-saturating", space)
    assert objective.g_loss(fake).item() == pytest.approx(-(math.log(0.25) + math.log(0.5)) / 2, abs=1e-6)


def test_bce_losses_equal_torch_bce_in_both_spaces():
    real, fake = torch.randn(16), torch.randn(16)
    expected_d = F.binary_cross_entropy_with_logits(real, torch.ones(16)) + F.binary_cross_entropy_with_logits(fake, torch.zeros(16))
    expected_g = F.binary_cross_entropy_with_logits(fake, torch.ones(16))
    for space, (r, f) in (("logits", (real, fake)), ("probabilities", (torch.sigmoid(real), torch.sigmoid(fake)))):
        objective = build_objective("non-saturating", space)
        assert objective.d_loss(r, f).item() == pytest.approx(expected_d.item(), rel=1e-5)
        assert objective.g_loss(f).item() == pytest.approx(expected_g.item(), rel=1e-5)
    # The probability-space form is what nn.BCELoss computes on a Sigmoid output.
    bce = torch.nn.BCELoss()
    p_real, p_fake = torch.sigmoid(real), torch.sigmoid(fake)
    assert build_objective("non-saturating", "probabilities").d_loss(p_real, p_fake).item() == pytest.approx(
        (bce(p_real, torch.ones(16)) + bce(p_fake, torch.zeros(16))).item(), rel=1e-6
    )


def test_one_sided_label_smoothing():
    objective = build_objective("non-saturating", "logits", label_smoothing=0.1)
    real_term = (math.log(0.5) + 0.9 * math.log(0.75) + 0.1 * math.log(0.25)) / 2
    fake_term = (math.log(0.75) + math.log(0.5)) / 2
    assert objective.d_loss(REAL_LOGITS, FAKE_LOGITS).item() == pytest.approx(-real_term - fake_term, abs=1e-6)
    # One-sided: G's target and the fake target are untouched.
    assert objective.g_loss(FAKE_LOGITS).item() == pytest.approx(build_objective("non-saturating").g_loss(FAKE_LOGITS).item())


def test_logits_losses_stay_finite_and_keep_gradient_when_d_saturates():
    fake = torch.tensor([-200.0, -150.0], requires_grad=True)
    loss = build_objective("non-saturating").g_loss(fake)
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(175.0)
    assert torch.all(fake.grad < 0)  # still pushes the fakes up
    # the saturating minimax G loss has (almost) no gradient there: the reason non-saturating exists
    fake2 = torch.tensor([-200.0], requires_grad=True)
    build_objective("minimax").g_loss(fake2).backward()
    assert abs(fake2.grad.item()) < 1e-30


def test_lsgan():
    real, fake = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 0.5])
    assert lsgan_d_loss(real, fake).item() == pytest.approx(0.5 * 0.125 + 0.5 * 0.125)
    assert lsgan_g_loss(fake).item() == pytest.approx(0.5 * (1 + 0.25) / 2)
    assert build_objective("lsgan", label_smoothing=0.5 - 1e-9).d_loss(torch.tensor([0.5]), torch.tensor([0.0])).item() == pytest.approx(0.0)


def test_wasserstein_and_hinge():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 2.0])
    assert wasserstein_d_loss(real, fake).item() == pytest.approx(0.5 - 2.0)
    assert wasserstein_g_loss(fake).item() == pytest.approx(-0.5)
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-2.0, 0.5])
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.25 + 0.75)
    assert build_objective("hinge").g_loss(fake).item() == pytest.approx(0.75)
    for name in ("wgan", "wgan-gp"):
        assert build_objective(name).d_loss(real, fake).item() == pytest.approx(wasserstein_d_loss(real, fake).item())


def test_read_out_is_probability_for_bce_and_raw_otherwise():
    assert torch.allclose(build_objective("minimax").read_out(REAL_LOGITS), torch.tensor([0.5, 0.75]))
    assert torch.equal(build_objective("minimax", "probabilities").read_out(torch.tensor([0.3])), torch.tensor([0.3]))
    assert torch.equal(build_objective("hinge").read_out(REAL_LOGITS), REAL_LOGITS)


def test_probability_space_refused_for_non_bce_losses():
    with pytest.raises(ValueError, match="Sigmoid"):
        build_objective("wgan", "probabilities")


def test_probability_space_survives_a_saturated_sigmoid():
    """A Sigmoid D that outputs exactly 0 or 1 (float32 saturates near |logit| 17) gives finite losses and gradients."""
    for name in ("minimax", "non-saturating"):
        objective = build_objective(name, "probabilities")
        real = torch.tensor([1.0, 0.0, 0.5], requires_grad=True)
        fake = torch.tensor([0.0, 1.0, 0.5], requires_grad=True)
        loss = objective.d_loss(real, fake) + objective.g_loss(fake)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(real.grad).all() and torch.isfinite(fake.grad).all()
