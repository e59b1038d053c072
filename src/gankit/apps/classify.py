"""Using a semi-supervised classifier run (task: classify): predictions for a user's images, and the
test accuracy `gankit eval` reports. The classifier is the run's D; its logits are the K class scores."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from gankit.data import load_dataset, to_model_range
from gankit.data.forms import has_test_split, read_input_images
from gankit.errors import DataError
from gankit.files import atomic_write
from gankit.runs import LoadedRun, open_checkpoint

PREDICT_BATCH = 1000


@torch.no_grad()
def predict(classifier: nn.Module, images: Tensor, batch_size: int = PREDICT_BATCH) -> Tensor:
    """(N, K) class probabilities for images in [-1, 1], in eval mode (D's noise off)."""
    classifier.eval()
    parameters = next(classifier.parameters())
    parts = [classifier(chunk.to(parameters.device, parameters.dtype)).float().softmax(1) for chunk in images.split(batch_size)]
    return torch.cat(parts).cpu()


@dataclass
class Accuracy:
    accuracy: float
    balanced_accuracy: float
    per_class: list[float]
    images: int

    def as_dict(self) -> dict[str, object]:
        """In `gankit eval`'s form: the scores under "metrics", then what they were measured on."""
        metrics = {"test_accuracy": self.accuracy, "test_balanced_accuracy": self.balanced_accuracy}
        return {"metrics": metrics, "test_per_class_accuracy": [round(value, 4) for value in self.per_class], "test_images": self.images}


def accuracy_of(probabilities: Tensor, labels: Tensor, num_classes: int) -> Accuracy:
    """Accuracy, and balanced accuracy: the mean over classes of each class's recall (classes absent from `labels` skipped)."""
    correct = probabilities.argmax(1) == labels
    per_class = [float(correct[labels == label].float().mean()) if (labels == label).any() else float("nan") for label in range(num_classes)]
    present = [value for value in per_class if value == value]
    return Accuracy(float(correct.float().mean()), sum(present) / len(present), per_class, len(labels))


def held_out_accuracy(loaded: LoadedRun, device: str = "cpu") -> Accuracy:
    """The run's classifier on its dataset's whole test split (data.split=test: a named set's own, or data.holdout's),
    however the run cut its training images by class."""
    data_config = loaded.config.data
    if not (data_config.holdout or has_test_split(data_config.dataset)):
        raise DataError(f"{data_config.dataset} has no test split to measure accuracy on; train with data.holdout=0.2 to hold one out")
    test = load_dataset(data_config.model_copy(update={"split": "test", "per_class": None, "class_counts": None}))
    probabilities = predict(loaded.discriminator.to(device), to_model_range(test.samples))
    return accuracy_of(probabilities, test.labels, loaded.discriminator.num_classes)


def classify_run(run_or_checkpoint: str | Path, input_path: str | Path, out: str | Path | None = None, checkpoint: str = "last", device: str = "cpu") -> list[dict[str, object]]:
    """One row per input image (its file name or index, the predicted class and its probability), written to `out` as CSV when given."""
    loaded = open_checkpoint(run_or_checkpoint, checkpoint, device=device, task="classify")
    images, names = read_input_images(Path(input_path), tuple(loaded.state["sample_shape"]))
    probabilities = predict(loaded.discriminator, images)
    class_names = loaded.state.get("class_names") or [str(label) for label in range(probabilities.shape[1])]
    confidence, predicted = probabilities.max(1)
    rows = [
        {"input": name, "label": int(label), "class": class_names[int(label)], "probability": round(float(p), 4)}
        for name, label, p in zip(names, predicted, confidence)
    ]
    if out is not None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        with atomic_write(Path(out)) as file:
            file.write(text.getvalue().encode())
    return rows
