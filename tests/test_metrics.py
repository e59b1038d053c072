"""Metrics against torchmetrics end to end, against direct numpy/scipy formulas, and on sanity cases.

The evaluator here is a tiny random CNN with the Evaluator interface (features, forward,
num_features), so nothing depends on shipped weights. Its head is set to a nearest-prototype
classifier in feature space, so images made from 10 prototypes get 10 meaningful classes.
"""

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from gankit.data import to_model_range
from gankit.data.toy import sample_toy, toy_modes
from gankit.metrics import image
from gankit.metrics.features import EvaluatorFeatures, extract
from gankit.metrics.image import (
    class_histogram,
    class_kl,
    classes_covered,
    density_coverage,
    evaluate_features,
    fid,
    inception_score,
    kid,
    memorization,
    precision_recall,
)
from gankit.metrics.stacked import stacked_mnist_modes
from gankit.metrics.toy import toy_metrics

NUM_CLASSES = 10


class StandIn(nn.Module):
    """The Evaluator interface on a small random CNN; counts calls to features."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.body = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(8 * 14 * 14, 16))
            self.head = nn.Linear(16, NUM_CLASSES)
        self.num_features, self.num_classes = 16, NUM_CLASSES
        self.feature_calls = 0

    def features(self, images):
        self.feature_calls += 1
        return self.body(to_model_range(images))

    def forward(self, images):
        return self.head(self.features(images))


def prototype_images(count, seed, noise=0.3):
    """(count, 1, 28, 28) uint8 images: one of 10 fixed random prototypes each, plus pixel noise."""
    prototypes = torch.rand(NUM_CLASSES, 1, 28, 28, generator=torch.Generator().manual_seed(123)) * 2 - 1
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % NUM_CLASSES
    images = prototypes[labels] + noise * torch.randn(count, 1, 28, 28, generator=generator)
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8), prototypes


@pytest.fixture(scope="module")
def evaluator():
    """StandIn whose head classifies by nearest prototype feature: logits = x.P - |P|^2 / 2."""
    model = StandIn()
    _, prototypes = prototype_images(1, seed=0)
    with torch.no_grad():
        centers = model.features(prototypes)
        model.head.weight.copy_(centers)
        model.head.bias.copy_(-centers.square().sum(1) / 2)
    return model.eval()


# ---- extraction ----


def test_extract_gives_both_outputs_in_one_pass_for_any_input_form(evaluator):
    images, _ = prototype_images(250, seed=1)
    evaluator.feature_calls = 0
    features, logits = extract(evaluator, images, batch_size=64)
    assert evaluator.feature_calls == 4  # one per batch: the logits come from the same features
    with torch.no_grad():
        expected_features, expected_logits = evaluator.features(images), evaluator(images)
    torch.testing.assert_close(features, expected_features)
    torch.testing.assert_close(logits, expected_logits)
    float_features, float_logits = extract(evaluator, to_model_range(images), batch_size=1000)
    torch.testing.assert_close(float_features, features)
    torch.testing.assert_close(float_logits, logits)


def test_extract_restores_train_mode():
    model = StandIn().train()
    extract(model, prototype_images(10, seed=2)[0])
    assert model.training


# ---- FID and KID: torchmetrics end to end, and the formulas ----


def test_fid_and_kid_equal_torchmetrics_run_end_to_end_with_the_feature_module(evaluator):
    real, _ = prototype_images(120, seed=3)
    fake = torch.randint(0, 256, (120, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    real_feats, _ = extract(evaluator, real)
    fake_feats, _ = extract(evaluator, fake)
    module = EvaluatorFeatures(evaluator)
    reference_fid = FrechetInceptionDistance(feature=module)
    reference_fid.update(real, real=True)
    reference_fid.update(to_model_range(fake), real=False)  # float [-1, 1] input works the same
    assert fid(real_feats, fake_feats) == pytest.approx(float(reference_fid.compute()), rel=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference_kid = KernelInceptionDistance(feature=module, subsets=5, subset_size=50)
    reference_kid.update(real, real=True)
    reference_kid.update(fake, real=False)
    torch.manual_seed(3)
    expected_mean, expected_std = (float(value) for value in reference_kid.compute())
    mean, std = kid(real_feats, fake_feats, subsets=5, subset_size=50, seed=3)
    assert mean == pytest.approx(expected_mean, rel=1e-4) and std == pytest.approx(expected_std, rel=1e-3)


def fixed_features(seed, count, dim, shift=0.0):
    return np.random.default_rng(seed).normal(size=(count, dim)) @ np.diag(np.linspace(0.5, 2, dim)) + shift


def test_fid_equals_the_scipy_sqrtm_formula():
    real, fake = fixed_features(0, 60, 5), fixed_features(1, 50, 5, shift=0.3) ** 2
    mu1, mu2 = real.mean(0), fake.mean(0)
    sigma1, sigma2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * scipy.linalg.sqrtm(sigma1 @ sigma2).real)
    assert fid(torch.from_numpy(real), torch.from_numpy(fake)) == pytest.approx(expected, rel=1e-8)


def test_kid_equals_the_unbiased_polynomial_mmd():
    real, fake = fixed_features(2, 40, 6), fixed_features(3, 40, 6, shift=0.5)
    kernel = lambda x, y: (x @ y.T / x.shape[1] + 1) ** 3  # noqa: E731
    k_xx, k_yy, k_xy = kernel(real, real), kernel(fake, fake), kernel(real, fake)
    n = len(real)
    off_diagonal = lambda k: (k.sum() - np.trace(k)) / (n * (n - 1))  # noqa: E731
    expected = off_diagonal(k_xx) + off_diagonal(k_yy) - 2 * k_xy.mean()
    mean, std = kid(torch.from_numpy(real), torch.from_numpy(fake), subsets=3, subset_size=n)
    assert mean == pytest.approx(expected, rel=1e-10) and std == pytest.approx(0, abs=1e-12)


def test_real_vs_real_fid_is_near_zero_and_far_below_real_vs_noise(evaluator):
    real_feats, _ = extract(evaluator, prototype_images(2000, seed=5)[0])
    noise = torch.randint(0, 256, (1000, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    noise_feats, _ = extract(evaluator, noise)
    real_vs_real, real_vs_noise = fid(real_feats[:1000], real_feats[1000:]), fid(real_feats[:1000], noise_feats)
    assert real_vs_real < 0.01 * real_vs_noise


# ---- k-NN metrics against brute-force numpy ----


def brute_force(real, fake, k):
    distance = lambda a, b: np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))  # noqa: E731
    real_radius = np.sort(distance(real, real), 1)[:, k]  # column 0 is the point itself
    fake_radius = np.sort(distance(fake, fake), 1)[:, k]
    real_fake = distance(real, fake)
    in_real_balls = real_fake <= real_radius[:, None]
    precision = in_real_balls.any(0).mean()
    recall = (real_fake <= fake_radius[None, :]).any(1).mean()
    density = in_real_balls.sum(0).mean() / k
    coverage = (real_fake.min(1) <= real_radius).mean()
    return precision, recall, density, coverage


@pytest.mark.parametrize("k", [3, 5])
def test_knn_metrics_equal_brute_force_numpy_across_chunks(monkeypatch, k):
    monkeypatch.setattr(image, "CHUNK_ELEMENTS", 100)  # a few rows per chunk
    real, fake = fixed_features(5, 80, 4), fixed_features(6, 70, 4, shift=0.7)
    precision, recall, density, coverage = brute_force(real, fake, k)
    real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)
    assert precision_recall(real_t, fake_t, k) == pytest.approx((precision, recall), abs=1e-12)
    assert density_coverage(real_t, fake_t, k) == pytest.approx((density, coverage), abs=1e-12)
    assert 0 < precision < 1 and 0 < recall < 1 and 0 < coverage < 1  # the case discriminates


def test_memorization_flags_copies_and_not_fresh_samples():
    real = torch.from_numpy(fixed_features(7, 1000, 8))
    fresh = memorization(real, torch.from_numpy(fixed_features(8, 1000, 8)))
    copies = memorization(real, real[:200] + 1e-4 * torch.randn(200, 8, dtype=torch.float64))
    assert fresh["memorized_fraction"] < 0.05 and 0.8 < fresh["nn_distance_ratio"] < 1.25
    assert copies["memorized_fraction"] == 1.0 and copies["nn_distance_ratio"] < 0.01


# ---- inception score and classes ----


def test_inception_score_by_hand_on_two_samples():
    logits = torch.tensor([[math.log(3), 0.0], [0.0, math.log(3)]])  # p(y|x) = (.75, .25), (.25, .75)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert inception_score(logits, splits=1) == pytest.approx((math.exp(kl), 0.0))
    assert inception_score(logits, splits=2) == pytest.approx((1.0, 0.0))  # each split: p(y) = p(y|x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = InceptionScore(feature=nn.Identity(), splits=1)
        reference.update(logits)
        expected = float(reference.compute()[0])  # its std of one split is NaN, with a warning
    assert inception_score(logits, splits=1)[0] == pytest.approx(expected)


def test_class_histogram_kl_and_coverage():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 1.0, 0.0]])
    assert class_histogram(logits, 3).tolist() == [1, 2, 1]
    assert class_histogram(torch.tensor([2, 2, 0]), 4).tolist() == [1, 0, 2, 0]
    assert class_kl(torch.tensor([5, 5]), torch.tensor([40, 40])) == pytest.approx(0.0)
    # all fakes in class 0 of two balanced classes: KL = log 2 (real counts +1 stay balanced)
    assert class_kl(torch.tensor([10, 0]), torch.tensor([7, 7])) == pytest.approx(math.log(2))
    assert math.isfinite(class_kl(torch.tensor([3, 3]), torch.tensor([6, 0])))
    # 101 samples in 4 classes: uniform share 25.25, so a class needs 2.525 at the default 0.1
    assert classes_covered(torch.tensor([50, 48, 2, 1])) == 2
    assert classes_covered(torch.tensor([50, 48, 2, 1]), min_fraction=0.05) == 3


class FirstRowReader(nn.Module):
    """An evaluator whose logits for a digit image are 10x the first ten pixels of its top row."""

    num_features = NUM_CLASSES
    head = nn.Identity()

    def features(self, images):
        return 10 * to_model_range(images)[:, 0, 0, :NUM_CLASSES]


def stacked_sample(digits, legible=(True, True, True)):
    """One (3, 28, 28) Stacked MNIST sample that FirstRowReader reads as `digits`: a legible channel
    has logit 10 for its digit and -10 for the others (sure), an illegible one 1 and 0 (p = 0.23, unsure)."""
    sample = torch.full((3, 28, 28), -1.0)
    for channel, (digit, sure) in enumerate(zip(digits, legible)):
        if not sure:
            sample[channel, 0, :NUM_CLASSES] = 0.0
        sample[channel, 0, digit] = 1.0 if sure else 0.1
    return sample


def test_stacked_mnist_modes_kl_and_unsure_fraction_by_hand():
    samples = torch.stack([stacked_sample((1, 2, 3)), stacked_sample((1, 2, 3)), stacked_sample((4, 5, 6), legible=(True, True, False))])
    result = stacked_mnist_modes(samples, FirstRowReader())
    assert result["stacked_modes"] == 2
    two_to_one = 2 / 3 * math.log(2 / 3 * 1000) + 1 / 3 * math.log(1 / 3 * 1000)  # triple shares 2/3, 1/3 against 1/1000 each
    assert result["stacked_kl"] == pytest.approx(two_to_one)
    assert result["stacked_digit_kl"] == pytest.approx(2 / 3 * math.log(2 / 3 * 10) + 1 / 3 * math.log(1 / 3 * 10))
    assert result["stacked_unsure_fraction"] == pytest.approx(1 / 9)


# ---- everything together: a healthy generator and one that outputs one image ----


def test_evaluate_features_separates_fresh_samples_from_a_one_image_generator(evaluator):
    real_feats, real_logits = extract(evaluator, prototype_images(500, seed=10)[0])
    fresh_feats, fresh_logits = extract(evaluator, prototype_images(500, seed=11)[0])
    one_image = prototype_images(1, seed=10)[0].expand(500, -1, -1, -1)  # the first real image, repeated
    stuck_feats, stuck_logits = extract(evaluator, one_image)
    settings = {"num_classes": NUM_CLASSES, "kid_subsets": 10, "kid_subset_size": 200}
    fresh = evaluate_features(real_feats, real_logits, fresh_feats, fresh_logits, **settings)
    stuck = evaluate_features(real_feats, real_logits, stuck_feats, stuck_logits, **settings)
    assert fresh["classes_covered"] == NUM_CLASSES and not fresh["collapse_suspected"]
    assert fresh["precision"] > 0.7 and fresh["recall"] > 0.7 and fresh["class_kl"] < 0.01
    assert fresh["memorized_fraction"] < 0.05 and fresh["fid"] < 0.05 * stuck["fid"]
    assert fresh["is_mean"] == pytest.approx(fresh["is_real_mean"], rel=0.05)
    assert stuck["classes_covered"] == 1 and stuck["collapse_suspected"]
    assert stuck["recall"] < 0.01 and stuck["diversity"] < 0.01 and stuck["is_mean"] == pytest.approx(1.0)
    assert stuck["class_kl"] == pytest.approx(math.log(NUM_CLASSES), abs=0.01)
    assert stuck["memorized_fraction"] == 1.0  # it copies a training image
    assert set(fresh) == set(stuck) and all(isinstance(value, (int, float)) for value in fresh.values())


# ---- 2-D toys ----


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_toy_metrics_on_true_samples(name):
    centers, std = toy_modes(name)
    metrics = toy_metrics(sample_toy(name, 2500, seed=0)[0], centers, std)
    assert metrics["modes_captured"] == metrics["modes_total"] == len(centers)
    assert metrics["high_quality_fraction"] > 0.97 and metrics["reverse_kl"] < 0.02


def test_toy_metrics_on_one_mode_noise_and_nothing():
    centers, std = toy_modes("ring8")
    one_mode = centers[3] + std * torch.randn(2500, 2, generator=torch.Generator().manual_seed(0))
    metrics = toy_metrics(one_mode, centers, std)
    assert metrics["modes_captured"] == 1 and metrics["reverse_kl"] == pytest.approx(math.log(8))
    uniform = torch.rand(2500, 2, generator=torch.Generator().manual_seed(1)) * 3 - 1.5
    noisy = toy_metrics(uniform, centers, std)
    assert noisy["high_quality_fraction"] < 0.02
    far = toy_metrics(torch.full((10, 2), 5.0), centers, std)
    assert far["modes_captured"] == 0 and far["high_quality_fraction"] == 0 and far["reverse_kl"] == pytest.approx(math.log(8))
