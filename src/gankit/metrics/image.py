"""Image-GAN metrics on precomputed evaluator features (N, F) and logits (N, K).

Features come from `features.extract`, once per image set, and every metric here reads them:
the network never runs twice for the same images.

FID and KID are torchmetrics' FrechetInceptionDistance and KernelInceptionDistance, fed
through `_Precomputed`, an identity feature module with `num_features`. Those metric classes
are torchmetrics' public, tested API (its `_compute_fid` is private and its KID helpers are
undocumented), and the identity module lets one feature pass serve FID, KID and the k-NN
metrics alike. Features enter them as float64, the precision torchmetrics recommends for FID.

The k-NN metrics (precision/recall, density/coverage, memorization) share `neighbourhoods`:
one chunked pass over real-real, fake-fake and real-fake distances, never holding more than
CHUNK_ELEMENTS distances at once (a 10k x 10k pass takes about 0.6 s on two cores).

Without an evaluator, pixel_metrics judges what pixels alone can: memorization (the same test, on
images downscaled to at most PIXEL_SIDE px) and diversity (the spread of the fakes' pixels).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gankit.data.images import to_model_range

CHUNK_ELEMENTS = 2**24  # distances per chunk: 64 MB of float32
MEMORIZATION_PERCENTILE = 0.01
COVERED_FRACTION = 0.1
COLLAPSE_RECALL = 0.05
PIXEL_SIDE = 32  # pixel metrics downscale larger images to this side: 4x fewer numbers at 64 px, and copies stay copies


class _Precomputed(nn.Module):
    """Identity feature module: torchmetrics' FID/KID `update` then takes (N, F) features directly."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def fid(real_feats: Tensor, fake_feats: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to (N, F) real and (M, F) fake features (N, M >= 2)."""
    from torchmetrics.image.fid import FrechetInceptionDistance  # imported when used: it adds 1.4 s to every command's start

    metric = FrechetInceptionDistance(feature=_Precomputed(real_feats.shape[1]))
    metric.update(_float64(real_feats), real=True)
    metric.update(_float64(fake_feats), real=False)
    return float(metric.compute())


def kid(real_feats: Tensor, fake_feats: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: mean and (population) std of the unbiased MMD^2 over random subsets.

    Kernel k(x, y) = (x.y / F + 1)^3. subset_size is capped at the smaller set's size. The
    subsets are drawn by torch.randperm from the global RNG seeded with `seed` inside
    fork_rng, so the result is reproducible and the caller's RNG state is untouched.
    """
    from torchmetrics.image.kid import KernelInceptionDistance  # imported when used, as in fid()

    size = min(subset_size, len(real_feats), len(fake_feats))
    with warnings.catch_warnings():  # its note that features are buffered in memory: they already are
        warnings.filterwarnings("ignore", message="Metric `Kernel Inception Distance` will save")
        metric = KernelInceptionDistance(feature=_Precomputed(real_feats.shape[1]), subsets=subsets, subset_size=size)
    metric.update(_float64(real_feats), real=True)
    metric.update(_float64(fake_feats), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


@dataclass(frozen=True)
class Neighbourhoods:
    """k-NN facts of a real (R, F) and a fake (M, F) feature set, Euclidean distances.

    real_knn: (R, k) distances of each real point to its 1st..k-th nearest other real point.
    fake_knn: (M, k') the same within the fakes (k' = 0 when no fake radius was asked for).
    fakes_in_balls: {k: (M,) number of real k-NN balls (radius real_knn[:, k-1]) holding each fake}.
    reals_in_fake_balls: {k: (R,) whether some fake k-NN ball holds each real}.
    nearest_fake: (R,) distance of each real to its nearest fake; nearest_real: (M,) the converse.
    A ball is closed: a point at exactly the radius is inside (Kynkäänniemi et al.'s "<=").
    """

    real_knn: Tensor
    fake_knn: Tensor
    fakes_in_balls: dict[int, Tensor]
    reals_in_fake_balls: dict[int, Tensor]
    nearest_fake: Tensor
    nearest_real: Tensor


def neighbourhoods(real_feats: Tensor, fake_feats: Tensor, real_ks: Sequence[int] = (), fake_ks: Sequence[int] = ()) -> Neighbourhoods:
    """The k-NN facts for real balls of each k in real_ks and fake balls of each k in fake_ks.

    Work is float32 on features centred on the real mean (distances do not change; the
    |x|^2 + |y|^2 - 2 x.y form then loses far less to cancellation) and on squared distances,
    which order the same as distances, so only the returned (N,) vectors take a square root.
    """
    real, fake = _float64(real_feats), _float64(fake_feats)
    centre = real.mean(0)
    real, fake = (real - centre).float(), (fake - centre).float()
    real_knn = _knn_squared(real, max(real_ks, default=1))
    fake_knn = _knn_squared(fake, max(fake_ks, default=0))
    fakes_in_balls = {k: torch.zeros(len(fake)) for k in real_ks}
    reals_in_fake_balls = {k: torch.zeros(len(real), dtype=torch.bool) for k in fake_ks}
    nearest_fake = torch.empty(len(real))
    nearest_real = torch.full((len(fake),), math.inf)
    for rows, squared in _squared_distance_chunks(real, fake):
        within = torch.empty_like(squared)  # 0/1 as float32: summing it is several times faster than a bool mask
        for k in real_ks:
            fakes_in_balls[k] += torch.le(squared, real_knn[rows, k - 1, None], out=within).sum(0)
        for k in fake_ks:
            reals_in_fake_balls[k][rows] = torch.le(squared, fake_knn[None, :, k - 1], out=within).amax(1) > 0
        nearest_fake[rows] = squared.amin(1)
        nearest_real = torch.minimum(nearest_real, squared.amin(0))
    return Neighbourhoods(
        real_knn.sqrt(),
        fake_knn.sqrt(),
        {k: counts.long() for k, counts in fakes_in_balls.items()},
        reals_in_fake_balls,
        nearest_fake.sqrt(),
        nearest_real.sqrt(),
    )


def precision_recall(real_feats: Tensor, fake_feats: Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls.

    precision: fraction of fakes inside at least one real point's k-NN ball (fidelity);
    recall: fraction of reals inside at least one fake point's k-NN ball (diversity).
    """
    return _precision_recall(neighbourhoods(real_feats, fake_feats, real_ks=(k,), fake_ks=(k,)), k)


def density_coverage(real_feats: Tensor, fake_feats: Tensor, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), real k-NN balls only.

    density: mean over fakes of (number of real balls holding it) / k; about 1 when fakes
    follow the real distribution, above 1 when they crowd its dense regions.
    coverage: fraction of reals whose ball holds at least one fake.
    """
    return _density_coverage(neighbourhoods(real_feats, fake_feats, real_ks=(k,)), k)


def memorization(real_feats: Tensor, fake_feats: Tensor) -> dict[str, float]:
    """Do fakes sit closer to a training (real) point than real points sit to each other?

    memorized_fraction: fraction of fakes whose nearest real is no farther than the
    MEMORIZATION_PERCENTILE (1st) percentile of the real-to-nearest-other-real distances;
    fresh samples of the real distribution give about 0.01 by construction, copies of
    training images give about 1. nn_distance_ratio: median fake-to-nearest-real distance
    over the median real-to-nearest-other-real distance; about 1 for fresh samples, near 0
    for copies, above 1 for fakes off the real manifold.
    """
    return _memorization(neighbourhoods(real_feats, fake_feats))


def pixel_vectors(images: Tensor) -> Tensor:
    """(N, C, H, W) uint8 or [-1, 1] images -> (N, C * h * w) float32 [-1, 1] pixels, area-averaged to at most PIXEL_SIDE px a side."""
    pixels = to_model_range(images.detach().cpu())
    height, width = pixels.shape[-2:]
    return F.adaptive_avg_pool2d(pixels, (min(PIXEL_SIDE, height), min(PIXEL_SIDE, width))).flatten(1)


def pixel_metrics(real_pixels: Tensor, fake_pixels: Tensor) -> dict[str, float]:
    """What can be judged without an evaluator, on pixel_vectors of real training and fake images.

    pixel_memorized_fraction and pixel_nn_distance_ratio: memorization() on pixels (copies of
    training images give about 1 and 0). pixel_diversity: the fakes' root-mean-square pairwise
    pixel distance over the reals' (each sqrt(2 x total variance), exact in one pass): about 1
    for real-like variety, 0 for one image repeated.
    """
    scores = memorization(real_pixels, fake_pixels) | {"diversity": _spread(fake_pixels) / max(_spread(real_pixels), 1e-12)}
    return {f"pixel_{key}": value for key, value in scores.items()}


def inception_score(logits: Tensor, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) of (N, K) logits, mean and population std over splits.

    p(y|x) is the classifier's softmax and p(y) its mean within each split; the N samples are
    split in order into `splits` nearly equal parts (Salimans et al. 2016). Range [1, K].
    Our own few lines rather than torchmetrics' InceptionScore, which shuffles with the global
    RNG and reports the unbiased std, unlike the reference implementation.
    """
    scores = []
    for part in logits.double().chunk(splits):
        log_p = part.log_softmax(1)
        log_marginal = log_p.exp().mean(0).log()
        scores.append((log_p.exp() * (log_p - log_marginal)).sum(1).mean().exp())
    stacked = torch.stack(scores)
    return float(stacked.mean()), float(stacked.std(correction=0))


def class_histogram(logits_or_labels: Tensor, num_classes: int) -> Tensor:
    """(K,) int64 counts of predicted classes: arg-max of (N, K) logits, or (N,) integer labels."""
    labels = logits_or_labels.argmax(1) if logits_or_labels.ndim == 2 else logits_or_labels.long()
    return torch.bincount(labels.cpu(), minlength=num_classes)


def class_kl(fake_hist: Tensor, real_hist: Tensor) -> float:
    """KL(p_fake || p_real) in nats between the class distributions of two (K,) count histograms.

    The direction penalises fakes in classes the reals rarely hold; a class the fakes miss adds
    nothing itself (0 log 0 = 0), it shows up through the extra mass elsewhere (all fakes in one
    of K balanced classes give log K). Smoothing: one pseudo-count per class is added to the
    real counts only, so the KL is finite even when the reals lack a class; the fake counts
    are used as they are. Raises ValueError when fake_hist is empty.
    """
    fake = fake_hist.double()
    if fake.sum() <= 0:
        raise ValueError("class_kl needs at least one fake sample")
    real = real_hist.double() + 1.0
    p, q = fake / fake.sum(), real / real.sum()
    return float(torch.special.xlogy(p, p).sum() - (p * q.log()).sum())


def classes_covered(hist: Tensor, min_fraction: float = COVERED_FRACTION) -> int:
    """Number of classes holding at least min_fraction of their uniform share (total / K) of a (K,) histogram.

    With the default 0.1 and 10 classes, a class needs 1% of the samples: a handful of
    stray predictions does not make a class covered, a real but rare one does.
    """
    threshold = min_fraction * float(hist.sum()) / len(hist)
    return int((hist.double() >= threshold).logical_and(hist > 0).sum())


def evaluate_features(
    real_feats: Tensor,
    real_logits: Tensor,
    fake_feats: Tensor,
    fake_logits: Tensor,
    num_classes: int,
    *,
    pr_k: int = 3,
    dc_k: int = 5,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
) -> dict[str, float | int | bool]:
    """Every image metric in one dict, the k-NN ones from a single `neighbourhoods` pass.

    Keys: fid, kid_mean, kid_std, precision, recall, density, coverage, is_mean, is_std,
    is_real_mean (the IS of the real set: the ceiling for this classifier), class_kl
    (KL(fake || real) class distributions), classes_covered, memorized_fraction,
    nn_distance_ratio (see memorization), diversity (median fake k-NN radius over median
    real k-NN radius, k = pr_k: 0 when every fake is the same point) and collapse_suspected.

    collapse_suspected: at most half of the classes covered (classes_covered <= num_classes // 2)
    or recall below COLLAPSE_RECALL (0.05): the fakes miss most of the real distribution.
    Samples that are merely poor (early training) can trip it too; it is a flag to look at
    the samples, not a verdict.
    """
    near = neighbourhoods(real_feats, fake_feats, real_ks=sorted({pr_k, dc_k}), fake_ks=(pr_k,))
    precision, recall = _precision_recall(near, pr_k)
    density, coverage = _density_coverage(near, dc_k)
    kid_mean, kid_std = kid(real_feats, fake_feats, kid_subsets, kid_subset_size)
    is_mean, is_std = inception_score(fake_logits, is_splits)
    fake_hist = class_histogram(fake_logits, num_classes)
    covered = classes_covered(fake_hist)
    return {
        "fid": fid(real_feats, fake_feats),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        "density": density,
        "coverage": coverage,
        "is_mean": is_mean,
        "is_std": is_std,
        "is_real_mean": inception_score(real_logits, is_splits)[0],
        "class_kl": class_kl(fake_hist, class_histogram(real_logits, num_classes)),
        "classes_covered": covered,
        **_memorization(near),
        "diversity": _median_ratio(near.fake_knn[:, pr_k - 1], near.real_knn[:, pr_k - 1]),
        "collapse_suspected": covered <= num_classes // 2 or recall < COLLAPSE_RECALL,
    }


def _precision_recall(near: Neighbourhoods, k: int) -> tuple[float, float]:
    return _mean(near.fakes_in_balls[k] > 0), _mean(near.reals_in_fake_balls[k])


def _density_coverage(near: Neighbourhoods, k: int) -> tuple[float, float]:
    return _mean(near.fakes_in_balls[k]) / k, _mean(near.nearest_fake <= near.real_knn[:, k - 1])


def _memorization(near: Neighbourhoods) -> dict[str, float]:
    real_nn = near.real_knn[:, 0]
    threshold = torch.quantile(real_nn, MEMORIZATION_PERCENTILE)
    return {
        "memorized_fraction": _mean(near.nearest_real <= threshold),
        "nn_distance_ratio": _median_ratio(near.nearest_real, real_nn),
    }


def _spread(points: Tensor) -> float:
    """Root-mean-square distance between two of points (N, D), drawn independently: sqrt(2 x total variance)."""
    values = _float64(points)
    return float((2 * values.var(0, correction=0).sum()).sqrt())


def _median_ratio(numerator: Tensor, denominator: Tensor) -> float:
    return float(numerator.median() / denominator.median().clamp(min=1e-12))


def _knn_squared(points: Tensor, k: int) -> Tensor:
    """(N, k) sorted squared distances of each of points (N, F) to its k nearest others (self excluded)."""
    if k == 0:
        return points.new_empty(len(points), 0)
    if len(points) <= k:
        raise ValueError(f"k-NN with k={k} needs more than {k} points, got {len(points)}")
    rows = [squared.topk(k + 1, dim=1, largest=False).values[:, 1:] for _, squared in _squared_distance_chunks(points, points)]
    return torch.cat(rows)


def _squared_distance_chunks(a: Tensor, b: Tensor) -> Iterator[tuple[slice, Tensor]]:
    """(rows, (r, M) squared Euclidean distances from a[rows] to all of b), row blocks of at most CHUNK_ELEMENTS."""
    step = max(1, CHUNK_ELEMENTS // max(1, len(b)))
    b_squared = b.square().sum(1)
    for start in range(0, len(a), step):
        rows = slice(start, start + step)
        block = a[rows]
        squared = torch.addmm(b_squared, block, b.T, alpha=-2).add_(block.square().sum(1, keepdim=True))
        yield rows, squared.clamp_(min=0)


def _float64(features: Tensor) -> Tensor:
    return torch.as_tensor(features).detach().cpu().double()


def _mean(values: Tensor) -> float:
    return float(values.double().mean())
