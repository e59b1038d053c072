"""Scoring generated images against real training images (their side computed once): feature-space
metrics in the features of a dataset classifier (a shipped or user-trained evaluator) or of FID's
Inception-v3, or, with neither, what pixels alone tell (memorization, diversity) and the command
that trains an evaluator for the data."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from gankit.config import Config
from gankit.data import Dataset, Structure, load_dataset
from gankit.errors import GankitError
from gankit.metrics.evaluator import FLAT_SHAPE, check_fits, evaluator_for, load_evaluator, shape_text, train_command_hint
from gankit.metrics.features import extract
from gankit.metrics.image import PIXEL_SIDE, evaluate_features, pixel_metrics, pixel_vectors
from gankit.metrics.inception import EXTRACT_BATCH as INCEPTION_BATCH
from gankit.metrics.inception import INPUT_SIZE, NUM_FEATURES, load_inception

REAL_SUBSET_SEED = 0
INCEPTION_PREFIX = "inception:"
CLASS_METRICS = ("is_mean", "is_std", "is_real_mean", "class_kl", "classes_covered")  # what needs a dataset classifier
SPEED_PROBE_IMAGES = 2


class ImageScorer:
    """Scores as many generated images as the caller draws (sample_count None).

    evaluator: a shipped classifier name, a .safetensors path (from `gankit evaluator train`), or
    "inception:PATH" (FID's Inception-v3 with the user's weights file; a pickled .pth needs trust).
    With Inception the feature metrics (FID, KID, precision/recall, density/coverage, memorization)
    use its pool3 features, and the class metrics (IS, class KL, classes covered) stay on the
    dataset's own classifier, or are omitted when none fits the data. With no evaluator (none given
    and none shipped for the data) only the pixel metrics are computed, and `needs_evaluator` says
    how to get the rest. say: where progress lines go."""

    sample_count = None

    def __init__(self, config: Config, structure: Structure, choice: str | None, trust: bool, say: Callable[[str], None]):
        self.config = config
        self.say = say
        self.about: dict[str, Any] = {}
        self.evaluator = self.feature_net = self.evaluator_info = None
        data = load_dataset(config.data.model_copy(update={"split": "train", "xflip": False}), config.train.seed)  # the real images, unmirrored
        self.sample_shape = data.sample_shape
        if choice and choice.startswith(INCEPTION_PREFIX):
            self._use_inception(choice.removeprefix(INCEPTION_PREFIX), trust, data)
        elif (name := classifier_name(choice, data)) is not None:
            self.evaluator, self.evaluator_info = load_evaluator(name)
            self.feature_net = self.evaluator
            self.about |= {
                "feature_extractor": f"{self.evaluator_info.describe()}, {self.evaluator.num_features} penultimate features",
                "weights_sha256": self.evaluator_info.sha256,
                "evaluator_held_out_accuracy": self.evaluator_info.test_accuracy,
            }
        else:
            self._use_pixels()
        self._prepare_real(data)

    def __call__(self, fakes: Tensor) -> dict[str, Any]:
        if tuple(fakes.shape[1:]) != self.sample_shape:
            raise GankitError(f"this generator makes {shape_text(fakes.shape[1:])} images but its data has {shape_text(self.sample_shape)}; evaluate it with the config it was trained with")
        if self.feature_net is None:
            return pixel_metrics(self.real_pixels, pixel_vectors(fakes))
        return self._score(*self._features_and_logits(fakes, "generated"))

    def _use_pixels(self) -> None:
        if self.config.eval.best_metric is not None:
            raise GankitError(
                f"eval.best_metric={self.config.eval.best_metric} needs an evaluator, and none fits {self.config.data.dataset}; "
                f"train one ({train_command_hint(self.config.data)}) and set eval.evaluator to its file, or unset eval.best_metric"
            )
        self.about |= {"feature_extractor": f"none: pixel metrics only (images area-averaged to at most {PIXEL_SIDE} px a side)", "weights_sha256": "none"}

    def _use_inception(self, path: str, trust: bool, data: Dataset) -> None:
        self.feature_net, info = load_inception(path, trust=trust)
        self.say(f"Inception-v3 weights {info.file}: sha256 {info.sha256}; {info.describe_origin()}")
        self.images_per_second = _measure_speed(self.feature_net)
        self.about |= {
            "feature_extractor": f"Inception-v3 pool3, FID variant ({NUM_FEATURES} features, images resized to {INPUT_SIZE}x{INPUT_SIZE})",
            "weights_file": info.file,
            "weights_sha256": info.sha256,
            "weights_origin": info.describe_origin(),
        }
        name = classifier_name(None, data)
        if name is None:
            self.about["class_metrics"] = "omitted (IS, class_kl, classes_covered): no dataset classifier fits this data; collapse_suspected uses recall only"
            return
        self.evaluator, self.evaluator_info = load_evaluator(name)
        self.about["class_metrics"] = f"IS, class_kl, classes_covered from gankit evaluator '{self.evaluator_info.name}' (sha256 {self.evaluator_info.sha256})"

    def _prepare_real(self, data: Dataset) -> None:
        if self.evaluator_info is not None:
            check_fits(self.evaluator_info, data, self.config.data)
        count = min(self.config.eval.num_real, len(data))
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(REAL_SUBSET_SEED))[:count]
        if self.feature_net is None:
            self.real_pixels = pixel_vectors(data.samples[order])
            self.about["needs_evaluator"] = _how_to_get_features(self.config, data.labels is not None)
        else:
            self.real_features, self.real_logits = self._features_and_logits(data.samples[order], "real")
        self.about |= {"num_real": count, "real_split": f"{self.config.data.dataset} train split: {count} of {len(data)} images (torch.randperm seeded {REAL_SUBSET_SEED})"}

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


def classifier_name(choice: str | None, data: Dataset) -> str | None:
    """The gankit evaluator that reads a run's images: the choice unless it names Inception, else the
    shipped one for the data's family when the data is at its 1x28x28; None when neither."""
    if choice and not choice.startswith(INCEPTION_PREFIX):
        return choice
    return evaluator_for(data.structure) if data.sample_shape == FLAT_SHAPE else None


def _how_to_get_features(config: Config, labelled: bool) -> str:
    feature_metrics = "fid, kid, precision/recall, density/coverage, inception score and the class metrics need an evaluator"
    inception = "or FID's Inception-v3 weights (--evaluator inception:PATH, docs/inception.md)"
    if not labelled:
        return f"{feature_metrics} trained on labelled images of this kind (one subfolder per class), {inception}"
    return f"{feature_metrics}: train one on this data with `{train_command_hint(config.data)}` and pass --evaluator evaluator.safetensors (or set eval.evaluator), {inception}"


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
