"""Evaluate a generator against its run's data, with the scorer its kind of data has (SCORERS):
mode counts for 2-D points and Stacked MNIST, feature-space metrics for images. A scorer
prepares the real side once, so periodic evaluation during training costs only the generated side.

Every result names what it was computed with: feature_extractor, weights_sha256, num_real,
real_split and num_generated ("none" / 0 where a kind has no network or no real sample).
A new kind of data is scored by a class with this shape (built from (config, structure,
evaluator choice, trust, say); called with the generated samples -> metrics; `about`, and
`sample_count`: the number of samples its measure is defined on, None where the caller picks) and
one line in SCORERS. RunEvaluator draws the samples, with the run's sampling settings."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from gankit.config import Config
from gankit.data import Structure, describe
from gankit.data.dataset import POINTS_EVALUATION_SIZE, DatasetKind
from gankit.metrics.evaluator import load_evaluator
from gankit.metrics.image_scoring import ImageScorer, refuse_inception
from gankit.metrics.stacked import stacked_mnist_modes
from gankit.metrics.toy import toy_metrics
from gankit.models.sampling import sample

STACKED_SAMPLES = 26_000  # the Stacked MNIST literature's evaluation size


class PointsScorer:
    """2-D points against the mixture's known modes (no network, no real sample)."""

    sample_count = POINTS_EVALUATION_SIZE

    def __init__(self, config: Config, structure: Structure, choice: str | None, trust: bool, say: Callable[[str], None]):
        refuse_inception(choice, "2-D toys are scored against their known modes")
        self.modes = structure.modes
        self.about: dict[str, Any] = {
            "feature_extractor": "none (2-D points against the mixture's known modes)",
            "weights_sha256": "none",
            "num_real": 0,
            "real_split": "none: the mixture's modes and std are known exactly",
        }

    def __call__(self, fakes: Tensor) -> dict[str, Any]:
        return toy_metrics(fakes, self.modes.centers, self.modes.std)


class StackedScorer:
    """Digit triples read channel by channel with the family's classifier, against the uniform 1000 modes."""

    sample_count = STACKED_SAMPLES

    def __init__(self, config: Config, structure: Structure, choice: str | None, trust: bool, say: Callable[[str], None]):
        refuse_inception(choice, "Stacked MNIST is scored by counting digit triples with the MNIST classifier")
        self.evaluator, info = load_evaluator(structure.family)
        self.about = {
            "feature_extractor": f"gankit evaluator '{info.name}' ({self.evaluator.num_features} penultimate features)",
            "weights_sha256": info.sha256,
            "evaluator_held_out_accuracy": info.test_accuracy,
            "num_real": 0,
            "real_split": "none: digit triples are scored against the uniform distribution over 1000 modes",
        }

    def __call__(self, fakes: Tensor) -> dict[str, Any]:
        return stacked_mnist_modes(fakes, self.evaluator)


SCORERS: dict[DatasetKind, Callable[..., Any]] = {"points": PointsScorer, "images": ImageScorer, "stacked": StackedScorer}


class RunEvaluator:
    """Scores generators trained on `config`'s data; call it with a generator.

    evaluator: a shipped classifier name, a .safetensors path, or "inception:PATH" (images only; see
    ImageScorer); None: config.eval.evaluator, else the classifier of the data's family."""

    def __init__(self, config: Config, evaluator: str | None = None, *, trust: bool = False, say: Callable[[str], None] = print):
        structure = describe(config.data.dataset)
        self.scorer = SCORERS[structure.kind](config, structure, evaluator or config.eval.evaluator, trust, say)
        self.sampling = config.sampling.model_dump()
        self.default_count = config.eval.num_samples

    def __call__(self, generator: nn.Module, *, num_samples: int | None = None, seed: int = 0) -> dict[str, Any]:
        """{"metrics": {...}, plus what they were computed with: extractor, hashes, counts, seconds}.
        num_samples applies to images (default eval.num_samples); the other kinds have their fixed count."""
        start = time.perf_counter()
        fakes, _ = sample(generator, self.scorer.sample_count or num_samples or self.default_count, seed=seed, **self.sampling)
        metrics = self.scorer(fakes)
        return {
            "metrics": metrics, **self.scorer.about, "num_generated": len(fakes), "sample_seed": seed, "sampling": self.sampling,
            "seconds": round(time.perf_counter() - start, 2),
        }  # fmt: skip


def format_table(result: dict[str, Any]) -> str:
    """The metrics as aligned lines, then what they were computed with."""
    rows = [(key, f"{value:.4f}" if isinstance(value, float) else str(value)) for key, value in result["metrics"].items()]
    rows += [(key, str(value)) for key, value in result.items() if key != "metrics"]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)
