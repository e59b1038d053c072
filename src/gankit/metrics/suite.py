"""Evaluate a generator against its run's data: feature-space metrics for images, mode counts for
2-D toys and Stacked MNIST. The real side is computed once and reused, so periodic evaluation
during training costs only the generated side.

Every result names what it was computed with: feature_extractor, weights_sha256, num_real,
real_split and num_generated ("none" / 0 where a kind has no network or no real sample)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from gankit.config import Config
from gankit.data import describe, load_dataset
from gankit.data.dataset import POINTS_EVALUATION_SIZE
from gankit.errors import GankitError
from gankit.metrics.evaluator import IMAGE_SHAPE, evaluator_for, load_evaluator
from gankit.metrics.features import extract
from gankit.metrics.image import evaluate_features
from gankit.metrics.inception import EXTRACT_BATCH as INCEPTION_BATCH
from gankit.metrics.inception import INPUT_SIZE, NUM_FEATURES, load_inception
from gankit.metrics.stacked import stacked_mnist_modes
from gankit.metrics.toy import toy_metrics
from gankit.models.sampling import sample

STACKED_SAMPLES = 26_000  # the Stacked MNIST literature's evaluation size
REAL_SUBSET_SEED = 0
INCEPTION_PREFIX = "inception:"
CLASS_METRICS = ("is_mean", "is_std", "is_real_mean", "class_kl", "classes_covered")  # what needs a dataset classifier
SPEED_PROBE_IMAGES = 2


class RunEvaluator:
    """Scores generators trained on `config`'s data; call it with a generator.

    evaluator: a shipped classifier name, a .safetensors path, or "inception:PATH" (FID's
    Inception-v3 with the user's weights file; a pickled .pth needs trust). With Inception the
    feature metrics (FID, KID, precision/recall, density/coverage, memorization) use its pool3
    features, and the class metrics (IS, class KL, classes covered) stay on the dataset's own
    classifier, or are omitted when none fits the data. say: where progress lines go.
    """

    def __init__(self, config: Config, evaluator: str | None = None, *, trust: bool = False, say: Callable[[str], None] = print):
        self.config = config
        self.say = say
        spec = config.data.dataset
        self.structure = describe(spec)
        choice = evaluator or config.eval.evaluator
        self.about: dict[str, Any] = {}
        if self.structure.kind == "points":
            self.kind = "toy"
            _refuse_inception(choice, "2-D toys are scored against their known modes")
            self.modes, self.std = self.structure.modes.centers, self.structure.modes.std
            self.about |= {
                "feature_extractor": "none (2-D points against the mixture's known modes)",
                "weights_sha256": "none",
                "num_real": 0,
                "real_split": "none: the mixture's modes and std are known exactly",
            }
            return
        self.kind = "stacked" if self.structure.kind == "stacked" else "image"
        if self.kind == "stacked":
            _refuse_inception(choice, "Stacked MNIST is scored by counting digit triples with the MNIST classifier")
        if self.kind == "image" and choice and choice.startswith(INCEPTION_PREFIX):
            self._use_inception(choice.removeprefix(INCEPTION_PREFIX), trust)
        else:
            name = self.structure.family if self.kind == "stacked" else choice or evaluator_for(self.structure)
            if name is None:
                raise GankitError(f"no shipped evaluator fits dataset {spec}; pass --evaluator fashion-mnist|mnist|PATH.safetensors|inception:PATH (see `gankit evaluator train`)")
            self.evaluator, info = load_evaluator(name)
            self.feature_net = self.evaluator
            self.about |= {
                "feature_extractor": f"gankit evaluator '{info.name}' ({self.evaluator.num_features} penultimate features)",
                "weights_sha256": info.sha256,
                "evaluator_held_out_accuracy": info.test_accuracy,
            }
        if self.kind == "stacked":
            self.about |= {"num_real": 0, "real_split": "none: digit triples are scored against the uniform distribution over 1000 modes"}
        else:
            self._prepare_real()

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

    def __call__(self, generator: nn.Module, *, num_samples: int | None = None, seed: int = 0) -> dict[str, Any]:
        """{"metrics": {...}, plus what they were computed with: extractor, hashes, counts, seconds}."""
        start = time.perf_counter()
        if self.kind == "toy":
            fakes, _ = sample(generator, POINTS_EVALUATION_SIZE, seed=seed)
            metrics = toy_metrics(fakes, self.modes, self.std)
        elif self.kind == "stacked":
            fakes, _ = sample(generator, STACKED_SAMPLES, seed=seed)
            metrics = stacked_mnist_modes(fakes, self.evaluator)
        else:
            fakes, _ = sample(generator, num_samples or self.config.eval.num_samples, seed=seed)
            self._check_shape(tuple(fakes.shape[1:]), "this generator")
            metrics = self._score(*self._features_and_logits(fakes, "generated"))
        return {"metrics": metrics, **self.about, "num_generated": len(fakes), "sample_seed": seed, "seconds": round(time.perf_counter() - start, 2)}

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


def _refuse_inception(choice: str | None, why: str) -> None:
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


def format_table(result: dict[str, Any]) -> str:
    """The metrics as aligned lines, then what they were computed with."""
    rows = [(key, f"{value:.4f}" if isinstance(value, float) else str(value)) for key, value in result["metrics"].items()]
    rows += [(key, str(value)) for key, value in result.items() if key != "metrics"]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)
