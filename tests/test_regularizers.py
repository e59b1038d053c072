import pytest
import torch

from gankit.models.sampling import BATCH_NORM_LATENTS
from gankit.regularizers import add_instance_noise, clip_weights, gradient_penalty, instance_noise_std, r1_penalty


def test_gradient_penalty_of_a_linear_critic():
    weight = torch.tensor([1.2, 1.6])  # |w| = 2, so |grad| = 2 everywhere and the penalty is (2 - 1)^2
    critic = lambda x: x @ weight  # noqa: E731
    real, fake = torch.randn(32, 2), torch.randn(32, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(1.0)


def test_gradient_penalty_trains_the_critic():
    weight = torch.tensor([1.2, 1.6], requires_grad=True)
    penalty = gradient_penalty(lambda x: x @ weight, torch.randn(8, 2), torch.randn(8, 2))
    penalty.backward()
    # d/dw (|w| - 1)^2 = 2 (|w| - 1) w / |w| = w
    assert torch.allclose(weight.grad, weight.detach(), atol=1e-6)


def test_r1_penalty_of_a_quadratic_critic():
    real = torch.randn(16, 3, 4, 4)
    # D(x) = sum x^2 -> grad 2x -> |grad|^2 = 4 |x|^2
    expected = (4 * real.flatten(1).pow(2).sum(1)).mean()
    assert r1_penalty(lambda x: x.pow(2).flatten(1).sum(1), real).item() == pytest.approx(expected.item(), rel=1e-5)


def test_instance_noise_schedule_and_application():
    assert instance_noise_std(0.2, 0, 10_000) == 0.2
    assert instance_noise_std(0.2, 100, 50) == pytest.approx(0.1)
    assert instance_noise_std(0.2, 100, 150) == 0.0
    x = torch.zeros(10_000)
    assert add_instance_noise(x, 0.0) is x
    assert add_instance_noise(x, 0.5).std().item() == pytest.approx(0.5, rel=0.05)


def test_clip_weights():
    layer = torch.nn.Linear(4, 4)
    with torch.no_grad():
        layer.weight.mul_(100)
    clip_weights(layer, 0.01)
    assert layer.weight.abs().max().item() <= 0.01 and layer.bias.abs().max().item() <= 0.01


def test_ema_ramps_up_then_trails_by_its_decay():
    from gankit.training.ema import EMA

    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.999, train_seed=0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model, step=0)  # decay (1 + 0) / (10 + 0) = 0.1: mostly the new weights
    assert ema.shadow.weight.item() == pytest.approx(0.9)
    assert ema.decay_at(10_000) == 0.999 and ema.decay_at(10) == pytest.approx(11 / 20)
    assert not ema.shadow.weight.requires_grad


class BatchNormGenerator(torch.nn.Module):
    """z -> Linear -> BatchNorm1d: the smallest G whose eval-mode output depends on running statistics."""

    z_dim, num_classes = 4, None

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(self.z_dim, 3)
        self.norm = torch.nn.BatchNorm1d(3)

    def forward(self, z, labels=None):
        return self.norm(self.linear(z))


def test_ema_reads_with_batchnorm_statistics_of_its_own_weights():
    """The live G's running statistics do not fit the averaged weights; calibrated() re-estimates them."""
    from gankit.training.ema import EMA

    torch.manual_seed(0)
    model = BatchNormGenerator()
    ema = EMA(model, decay=0.5, train_seed=0)
    with torch.no_grad():
        model.linear.weight.mul_(5.0)
        model.linear.bias.fill_(3.0)
        model.train()
        for _ in range(50):  # the live running statistics settle on the live weights' activations
            model(torch.randn(256, 4))
    ema.update(model, step=100)  # decay 0.5: the shadow is halfway between old and new weights
    stale = ema.shadow.norm.running_var.clone()
    shadow = ema.calibrated()
    # z ~ N(0, I), so the shadow's activations have mean = bias and variance = squared row norms of its weight;
    # the calibration estimates both from BATCH_NORM_LATENTS draws, so each must lie within 4 standard errors
    true_mean, true_var = shadow.linear.bias, shadow.linear.weight.square().sum(1)
    draws = BATCH_NORM_LATENTS
    assert ((shadow.norm.running_mean - true_mean).abs() <= 4 * (true_var / draws).sqrt()).all()
    assert ((shadow.norm.running_var / true_var - 1).abs() <= 4 * (2 / (draws - 1)) ** 0.5).all()
    assert (stale / true_var > 2).all()  # what it read before: the live weights' (5 / 3)^2 = 2.8-fold variance
    assert not shadow.training and not shadow.norm.training and shadow.norm.momentum == 0.1
    again = EMA(model, decay=0.5, train_seed=0)
    again.load_state_dict(ema.shadow.state_dict())
    assert torch.equal(again.calibrated().norm.running_var, shadow.norm.running_var)  # same z every time: a resumed run reads the same
