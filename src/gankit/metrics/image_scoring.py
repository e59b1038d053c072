"""Scoring generated images: feature-space metrics against real training images (computed once),
in the features of a dataset classifier (the shipped evaluators) or of FID's Inception-v3."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from gankit.config import Config
from gankit.data import Structure, load_dataset
from gankit.errors import GankitError
from gankit.metrics.evaluator import IMAGE_SHAPE, evaluator_for, load_evaluator
from gankit.metrics.features import extract
from gankit.metrics.image import evaluate_features
from gankit.metrics.inception import EXTRACT_BATCH as INCEPTION_BATCH
from gankit.metrics.inception import INPUT_SIZE, NUM_FEATURES, load_inception
from gankit.models.sampling import sample

REAL_SUBSET_SEED = 0
INCEPTION_PREFIX = "inception:"
CLASS_METRICS = ("is_mean", "is_std", "is_real_mean", "class_kl", "classes_covered")  # what needs a dataset classifier
SPEED_PROBE_IMAGES = 2


class ImageScorer:
    """evaluator: a shipped classifier name, a .safetensors path, or "inception:PATH" (FID's
    Inception-v3 with the user's weights file; a pickled .pth needs trust). With Inception the
    feature metrics (FID, KID, precision/recall, density/coverage, memorization) use its pool3
    features, and the class metrics (IS, class KL, classes covered) stay on the dataset's own
    classifier, or are omitted when none fits the data. say: where progress lines go."""

    def __init__(self, config: Config, structure: Structure, choice: str | None, trust: bool, say: Callable[[str], None]):
        self.config = config
        self.structure = structure
        self.say = say
        self.about: dict[str, Any] = {}
        if choice and choice.startswith(INCEPTION_PREFIX):
            self._use_inception(choice.removeprefix(INCEPTION_PREFIX), trust)
        else:
            name = choice or evaluator_for(structure)
            if name is None:
                raise GankitError(
                    f"no shipped evaluator fits dataset {config.data.dataset}; pass --evaluator fashion-mnist|mnist|PATH.safetensors|inception:PATH (see `gankit evaluator train`)"
                )
            self.evaluator, info = load_evaluator(name)
            self.feature_net = self.evaluator
            self.about |= {
                "feature_extractor": f"gankit evaluator '{info.name}' ({self.evaluator.num_features} penultimate features)",
                "weights_sha256": info.sha256,
                "evaluator_held_out_accuracy": info.test_accuracy,
            }
        self._prepare_real()

    def __call__(self, generator: nn.Module, num_samples: int | None, seed: int) -> tuple[dict[str, Any], int]:
        fakes, _ = sample(generator, num_samples or self.config.eval.num_samples, seed=seed)
        self._check_shape(tuple(fakes.shape[1:]), "this generator")
        return self._score(*self._features_and_logits(fakes, "generated")), len(fakes)

    def _use_inception(self, path: str, trust: bool) -> None:
        self.feature_net, info = load_inception(path, trust=trust)
        self.say(f"Inception-v3 weights {info.file}: sha256 {info.sha256}; {info.describe_origin()}")
        self.images_per_second = _measure_speed(self.feature_net)
        self.about |= {
            "feature_extractor": f"Inception-v3 pool3, FID variant ({NUM_FEATURES} features, images resized to {INPUT_SIZE}x{INPUT_SIZE})",
            "weights_file": info.file,
            "weights_sha256": info.sha256,
            "weights_origin": info.describe_origin(),
        }
        name = evaluator_for(self.structure)
        if name is None:
            self.evaluator = None
            self.about["class_metrics"] = "omitted (IS, class_kl, classes_covered): no dataset classifier fits this data; collapse_suspected uses recall only"
            return
        self.evaluator, classifier = load_evaluator(name)
        self.about["class_metrics"] = f"IS, class_kl, classes_covered from gankit evaluator '{classifier.name}' (sha256 {classifier.sha256})"

    def _prepare_real(self) -> None:
        data = load_dataset(self.config.data.model_copy(update={"split": "train"}), self.config.train.seed)
        self._check_shape(data.sample_shape, data.name)
        count = min(self.config.eval.num_real, len(data))
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(REAL_SUBSET_SEED))[:count]
        self.real_features, self.real_logits = self._features_and_logits(data.samples[order], "real")
        self.about |= {"num_real": count, "real_split": f"{self.config.data.dataset} train split: {count} of {len(data)} images (torch.randperm seeded {REAL_SUBSET_SEED})"}

    def _check_shape(self, shape: tuple[int, ...], what: str) -> None:
        if self.evaluator is not None and tuple(shape) != IMAGE_SHAPE:
            raise GankitError(f"the evaluator takes 1x28x28 images but {what} has {'x'.join(map(str, shape))}; --evaluator inception:PATH takes any size")

    def _features_and_logits(self, images: Tensor, what: str) -> tuple[Tensor, Tensor | None]:
        """Features from the feature network; class logits from the dataset classifier (None without one)."""
        if self.feature_net is self.evaluator:
            return extract(self.evaluator, images)
        self.say(f"Inception-v3 on {len(images)} {what} images: {_expected_time(len(images), self.images_per_second)}")
        features, _ = extract(self.feature_net, images, INCEPTION_BATCH, progress=f"Inception-v3, {what}")
        return features, None if self.evaluator is None else extract(self.evaluator, images)[1]

    def _score(self, fake_features: Tensor, fake_logits: Tensor | None) -> dict[str, Any]:
        if self.evaluator is not None:
            return evaluate_features(self.real_features, self.real_logits, fake_features, fake_logits, self.evaluator.num_classes)
        # One constant class makes the class metrics trivial; they are then left out, not reported.
        metrics = evaluate_features(self.real_features, torch.zeros(len(self.real_features), 1), fake_features, torch.zeros(len(fake_features), 1), 1)
        return {key: value for key, value in metrics.items() if key not in CLASS_METRICS}


def refuse_inception(choice: str | None, why: str) -> None:
    """For data that other scorers judge: an Inception choice is a mistake worth one clear line."""
    if choice and choice.startswith(INCEPTION_PREFIX):
        raise GankitError(f"--evaluator inception:... scores image datasets; {why}: leave --evaluator out")


def _measure_speed(network: nn.Module) -> float:
    """Images per second of one small batch, the basis of the printed time estimate (a first call's set-up makes it err long)."""
    probe = torch.zeros(SPEED_PROBE_IMAGES, 3, INPUT_SIZE, INPUT_SIZE, device=next(network.parameters()).device)
    with torch.inference_mode():
        start = time.perf_counter()
        network.features(probe)
    return SPEED_PROBE_IMAGES / max(time.perf_counter() - start, 1e-6)


def _expected_time(count: int, images_per_second: float) -> str:
    minutes = count / images_per_second / 60
    return f"expect about {minutes:.1f} min at {images_per_second:.1f} images/s (measured here; -n and eval.num_real trade precision for time)"
