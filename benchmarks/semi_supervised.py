"""Semi-supervised classification with a GAN (task=classify) against the same classifier trained on the
labelled images alone, with standard augmentation.

For each dataset and seed, data.labels_per_class=10 keeps 10 labels per class (picked by
data.subset_seed=seed) and leaves every other training image unlabelled. Then:

  semi-supervised   the dataset's semi-* preset for --steps steps (gankit's Trainer, no run-folder
                    callbacks): the K+1 D learns from the labels, all images and G's fakes
  supervised+aug    the same D network (same Gaussian noise) trained by cross-entropy on the labelled
                    images alone for --supervised-steps steps, Adam at the preset's learning rate,
                    each batch randomly shifted by up to 2 px (and mirrored left-right for clothes)

Both are measured on the test split: Fashion-MNIST's own 10,000 images; for MNIST-10k
(../shared/datasets/mnist-10k, which has no test split) the 2,000 images data.holdout=0.2 keeps out.

    python benchmarks/semi_supervised.py --threads 1                        # both datasets, seeds 0 1 2
    python benchmarks/semi_supervised.py --datasets mnist-10k --seeds 0 --steps 200 --supervised-steps 100   # smoke test
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, mean_std, write_results  # noqa: E402

from gankit.apps.classify import accuracy_of, predict  # noqa: E402
from gankit.config import Config, load_config  # noqa: E402
from gankit.data import Dataset, load_dataset, to_model_range  # noqa: E402
from gankit.data.dataset import UNLABELLED  # noqa: E402
from gankit.training.semi import SemiSupervisedTrainer  # noqa: E402

DATASETS = {  # name: (preset, overrides, mirror images in the supervised baseline's augmentation)
    "fashion-mnist": ("semi-fashion", [], True),
    "mnist-10k": ("semi-mnist", [f"data.dataset=idx:{REPO.parent / 'shared' / 'datasets' / 'mnist-10k'}", "data.holdout=0.2"], False),
}
CONDITIONS = ("semi-supervised", "supervised+aug")
RESULTS = Path(__file__).resolve().parent / "results" / "semi_supervised.json"
ACCURACY_UNIT = "fraction of the test split (the table shows percent)"
SHIFT = 2  # pixels of random translation in the baseline's augmentation


def config_for(dataset: str, seed: int, args: argparse.Namespace) -> Config:
    preset, overrides, _ = DATASETS[dataset]
    return load_config(preset, [*overrides, f"data.subset_seed={seed}", f"train.seed={seed}", *args.set])


def test_accuracy(classifier: torch.nn.Module, test: Dataset) -> dict[str, float]:
    result = accuracy_of(predict(classifier, to_model_range(test.samples)), test.labels, test.num_classes)
    classifier.train()
    return {"accuracy": result.accuracy, "balanced_accuracy": result.balanced_accuracy}


def semi_supervised(config: Config, data: Dataset, test: Dataset, steps: int) -> dict[str, float]:
    trainer = SemiSupervisedTrainer(config, data, torch.device("cpu"))
    for _ in range(steps):
        trainer.train_step()
    return test_accuracy(trainer.D, test)


def augmented(images: torch.Tensor, mirror: bool, rng: torch.Generator) -> torch.Tensor:
    """Each image shifted by up to SHIFT px (the border filled with the background, -1) and, with `mirror`, flipped half the time."""
    count, _, height, width = images.shape
    padded = F.pad(images, (SHIFT,) * 4, value=-1.0)
    dy, dx = (torch.randint(0, 2 * SHIFT + 1, (count,), generator=rng) for _ in range(2))
    rows = (dy.view(-1, 1) + torch.arange(height)).view(count, 1, height, 1).expand(-1, images.shape[1], -1, width + 2 * SHIFT)
    shifted = padded.gather(2, rows)
    columns = (dx.view(-1, 1) + torch.arange(width)).view(count, 1, 1, width).expand(-1, images.shape[1], height, -1)
    shifted = shifted.gather(3, columns)
    if mirror:
        flip = torch.rand(count, generator=rng) < 0.5
        shifted = torch.where(flip.view(-1, 1, 1, 1), shifted.flip(-1), shifted)
    return shifted


def supervised(config: Config, data: Dataset, test: Dataset, steps: int, mirror: bool) -> dict[str, float]:
    """The semi-supervised run's D network, trained on the labelled images only."""
    torch.manual_seed(config.train.seed)
    _, classifier = SemiSupervisedTrainer.build_networks(config, data.sample_shape, data.num_classes)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=config.optim.lr_d, betas=(config.optim.beta1, config.optim.beta2))
    known = data.labels != UNLABELLED
    images, labels = to_model_range(data.samples[known]), data.labels[known]
    rng = torch.Generator().manual_seed(config.train.seed)
    for _ in range(steps):
        pick = torch.randint(len(images), (config.train.batch_size,), generator=rng)
        loss = F.cross_entropy(classifier(augmented(images[pick], mirror, rng)), labels[pick])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return test_accuracy(classifier, test)


def run_one(dataset: str, seed: int, args: argparse.Namespace) -> dict:
    config = config_for(dataset, seed, args)
    data = load_dataset(config.data)
    config.train.epochs = math.ceil(args.steps / (len(data) // config.train.batch_size))  # the schedule (and any lr decay) spans --steps
    test = load_dataset(config.data.model_copy(update={"split": "test"}))
    result = {"dataset": dataset, "seed": seed, "labelled": int((data.labels != UNLABELLED).sum()), "unlabelled": len(data), "test_images": len(test)}
    started = time.process_time()
    result["supervised+aug"] = supervised(config, data, test, args.supervised_steps, DATASETS[dataset][2])
    result["supervised_cpu_seconds"] = round(time.process_time() - started, 1)
    started = time.process_time()
    result["semi-supervised"] = semi_supervised(config, data, test, args.steps)
    result["semi_cpu_seconds"] = round(time.process_time() - started, 1)
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| dataset | seeds | labels | supervised + aug: accuracy | semi-supervised GAN: accuracy | gain (points) | semi-supervised: balanced accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        rows = [r for r in results if r["dataset"] == dataset]
        cells = [mean_std([100 * r[condition]["accuracy"] for r in rows]) for condition in ("supervised+aug", "semi-supervised")]
        gain = mean_std([100 * (r["semi-supervised"]["accuracy"] - r["supervised+aug"]["accuracy"]) for r in rows], digits=1)
        balanced = mean_std([100 * r["semi-supervised"]["balanced_accuracy"] for r in rows])
        lines.append(f"| {dataset} | {len(rows)} | {rows[0]['labelled']} | {cells[0]} | {cells[1]} | {gain} | {balanced} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds: the labelled pick, the weights and the batches (default 0 1 2)")
    parser.add_argument("--steps", type=int, default=12000, help="semi-supervised GAN steps (default 12000)")
    parser.add_argument("--supervised-steps", type=int, default=3000, help="steps of the supervised baseline (default 3000)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override for the semi-supervised config (repeatable)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results (default benchmarks/results/semi_supervised.json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start, results = time.perf_counter(), []
    for dataset in args.datasets:
        for seed in args.seeds:
            results.append(run_one(dataset, seed, args))
            shown = ", ".join(f"{condition} {results[-1][condition]['accuracy']:.4f}" for condition in CONDITIONS)
            print(f"  {dataset} seed {seed}: {shown}", file=sys.stderr, flush=True)
            write_results(args.out, args, results, False, table(results), accuracy_unit=ACCURACY_UNIT)
    write_results(args.out, args, results, True, table(results), accuracy_unit=ACCURACY_UNIT)
    print(f"\ntest accuracy (%), 10 labels per class, {args.steps} semi-supervised steps, {args.supervised_steps} supervised steps, "
          f"seeds {args.seeds}, {(time.perf_counter() - start) / 60:.1f} min\n")
    print(table(results))
    print(f"\nraw results: {args.out}")


if __name__ == "__main__":
    main()
