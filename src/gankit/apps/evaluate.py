"""Evaluate a generator against its run's data: feature-space metrics for images, mode counts for
2-D toys and Stacked MNIST. The real side is computed once and reused, so periodic evaluation
during training costs only the generated side."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from gankit.apps.sample import sample
from gankit.config import Config
from gankit.data import load_dataset
from gankit.data.toy import toy_modes
from gankit.errors import GankitError
from gankit.metrics.evaluator import evaluator_for_dataset, load_evaluator
from gankit.metrics.features import extract
from gankit.metrics.image import evaluate_features
from gankit.metrics.stacked import stacked_mnist_modes
from gankit.metrics.toy import toy_metrics

TOY_SAMPLES = 2_500  # the mode-collapse literature's evaluation sizes
STACKED_SAMPLES = 26_000
REAL_SUBSET_SEED = 0


class RunEvaluator:
    """Scores generators trained on `config`'s data; call it with a generator."""

    def __init__(self, config: Config, evaluator: str | None = None):
        self.config = config
        spec = config.data.dataset
        self.about: dict[str, Any] = {}
        if spec.startswith("toy:"):
            self.kind = "toy"
            self.modes, self.std = toy_modes(spec.removeprefix("toy:"))
            self.about["feature_extractor"] = "none (2-D points against the mixture's known modes)"
            return
        self.kind = "stacked" if spec.startswith("stacked-mnist") else "image"
        name = "mnist" if self.kind == "stacked" else evaluator or config.eval.evaluator or evaluator_for_dataset(spec)
        if name is None:
            raise GankitError(f"no shipped evaluator fits dataset {spec}; pass --evaluator fashion-mnist|mnist|PATH.safetensors (see `gankit evaluator train`)")
        self.evaluator, info = load_evaluator(name)
        self.about |= {
            "feature_extractor": f"gankit evaluator '{info.name}' ({self.evaluator.num_features} penultimate features)",
            "weights_sha256": info.sha256,
            "evaluator_held_out_accuracy": info.test_accuracy,
        }
        if self.kind == "image":
            self._prepare_real()

    def _prepare_real(self) -> None:
        data = load_dataset(self.config.data.model_copy(update={"split": "train"}), self.config.train.seed)
        if data.sample_shape != (1, 28, 28):
            raise GankitError(f"the evaluator takes 1x28x28 images but {data.name} has {'x'.join(map(str, data.sample_shape))}")
        count = min(self.config.eval.num_real, len(data))
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(REAL_SUBSET_SEED))[:count]
        self.real_features, self.real_logits = extract(self.evaluator, data.samples[order])
        self.about |= {"num_real": count, "real_split": f"{self.config.data.dataset} train split: {count} of {len(data)} images (torch.randperm seeded {REAL_SUBSET_SEED})"}

    def __call__(self, generator: nn.Module, *, num_samples: int | None = None, seed: int = 0) -> dict[str, Any]:
        """{"metrics": {...}, plus what they were computed with: extractor, hashes, counts, seconds}."""
        start = time.perf_counter()
        if self.kind == "toy":
            fakes, _ = sample(generator, TOY_SAMPLES, seed=seed)
            metrics = toy_metrics(fakes, self.modes, self.std)
        elif self.kind == "stacked":
            fakes, _ = sample(generator, STACKED_SAMPLES, seed=seed)
            metrics = stacked_mnist_modes(fakes, self.evaluator)
        else:
            fakes, _ = sample(generator, num_samples or self.config.eval.num_samples, seed=seed)
            if tuple(fakes.shape[1:]) != (1, 28, 28):
                raise GankitError(f"the evaluator takes 1x28x28 images but this generator makes {'x'.join(map(str, fakes.shape[1:]))}")
            fake_features, fake_logits = extract(self.evaluator, fakes)
            metrics = evaluate_features(self.real_features, self.real_logits, fake_features, fake_logits, self.evaluator.num_classes)
        return {"metrics": metrics, **self.about, "num_generated": len(fakes), "sample_seed": seed, "seconds": round(time.perf_counter() - start, 2)}


def format_table(result: dict[str, Any]) -> str:
    """The metrics as aligned lines, then what they were computed with."""
    rows = [(key, f"{value:.4f}" if isinstance(value, float) else str(value)) for key, value in result["metrics"].items()]
    rows += [(key, str(value)) for key, value in result.items() if key != "metrics"]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)
