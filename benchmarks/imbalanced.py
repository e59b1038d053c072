"""Imbalanced Fashion-MNIST: do a conditional GAN's samples of the scarce classes help a classifier
more than random oversampling or classical augmentation of those classes' few real images?

For each seed: the training split with the --scarce classes cut to --scarce-count images each
(data.class_counts, picked by data.subset_seed=seed) and the other classes whole; the
cdcgan-fashion preset trained on that set for --gan-steps G steps, with class-balanced real
batches (train.class_balance, so G and D see the scarce classes as often as the rest) and
DiffAugment translation,cutout steered by ADA (GAN_SETTINGS; --set adds to them); then one fixed
small CNN trained five ways, every one for --clf-steps optimizer steps, and measured on the
10,000-image test split by balanced accuracy (mean recall over the 10 classes) and by the recall
of each scarce class:

  real               the imbalanced set as it is
  oversampled        the scarce classes' images repeated (drawn with replacement) up to the largest class
  classical          oversampled, and every scarce-class image in a batch randomly flipped left-right
                     and shifted by up to --shift pixels (zero fill)
  gan                the scarce classes filled up to the largest class with the GAN's samples
  classical+gan      each batch half from `oversampled`, half from `gan`, scarce images augmented as
                     in `classical` (real or synthetic)

    python benchmarks/imbalanced.py --threads 1                                   # seeds 0 1 2
    python benchmarks/imbalanced.py --seeds 0 --gan-steps 20 --clf-steps 20 --out /tmp/i.json   # a smoke test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_gan_classifier_args, parse_gan_classifier_args, train_conditional_gan, BatchTransform, mean_std, predict, train_classifier, write_results  # noqa: E402

from gankit.apps.classify import accuracy_of  # noqa: E402
from gankit.apps.augment import synthesize_conditional  # noqa: E402
from gankit.data import Dataset, to_model_range  # noqa: E402
from gankit.report.plots import image_grid  # noqa: E402

CONDITIONS = ("real", "oversampled", "classical", "gan", "classical+gan")
RESULTS = Path(__file__).resolve().parent / "results" / "imbalanced.json"
UNIT = "fractions of the 10,000 Fashion-MNIST test images (1,000 per class); the table shows percent, mean +- std over seeds"
# pullover, coat, shirt: the three upper-body garments the classifier confuses most with each other and with T-shirts
DEFAULT_SCARCE = (2, 4, 6)
GAN_SETTINGS = ("train.class_balance=true", "stabilizers.diffaugment=translation,cutout", "stabilizers.ada_target=0.6")
STRIP_COLUMNS = 12


def oversample(data: Dataset, classes: list[int], target: int, seed: int) -> Dataset:
    """data plus random repeats of each listed class's images (drawn with replacement) up to `target` images of it."""
    rng = torch.Generator().manual_seed(seed)
    extra = []
    for label in classes:
        members = torch.nonzero(data.labels == label).flatten()
        extra.append(members[torch.randint(len(members), (target - len(members),), generator=rng)])
    index = torch.cat([torch.arange(len(data.samples)), *extra])
    return replace(data, samples=data.samples[index], labels=data.labels[index], name=f"{data.name} oversampled")


def joined(data: Dataset, synthetic: Dataset) -> Dataset:
    return replace(data, samples=torch.cat([data.samples, synthetic.samples]), labels=torch.cat([data.labels, synthetic.labels]), name=f"{data.name} + GAN")


def classical_augmentation(classes: list[int], shift: int) -> BatchTransform:
    """Flip left-right with probability 1/2 and shift by up to `shift` pixels each way (zero fill: Fashion-MNIST's
    background), each image of the listed classes on its own; the other images pass unchanged."""

    def transform(images: torch.Tensor, labels: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        chosen = torch.nonzero(torch.isin(labels, torch.tensor(classes, device=labels.device))).flatten().tolist()
        flips = torch.rand(len(chosen), generator=rng) < 0.5
        offsets = torch.randint(2 * shift + 1, (len(chosen), 2), generator=rng).tolist()
        images = images.clone()
        height, width = images.shape[-2:]
        padded = F.pad(images[chosen], (shift, shift, shift, shift))
        for slot, (index, flip, (top, left)) in enumerate(zip(chosen, flips, offsets)):
            moved = padded[slot, :, top : top + height, left : left + width]
            images[index] = moved.flip(-1) if flip else moved
        return images

    return transform


def scores(model: nn.Module, test: Dataset, scarce: list[int]) -> dict[str, float]:
    """Balanced accuracy (mean per-class recall) on the test split and the recall of each scarce class."""
    result = accuracy_of(F.one_hot(predict(model, test), test.num_classes).float(), test.labels, test.num_classes)
    return {"balanced_accuracy": result.balanced_accuracy, **{f"recall_{label}": result.per_class[label] for label in scarce}}


def write_strip(real: Dataset, synthetic: Dataset, scarce: list[int], path: Path) -> None:
    """Per scarce class a row of real training images, then a row of the GAN's samples of it."""
    rows = []
    for label in scarce:
        rows += [real.samples[real.labels == label][:STRIP_COLUMNS], synthetic.samples[synthetic.labels == label][:STRIP_COLUMNS]]
    image_grid(to_model_range(torch.cat(rows)), columns=STRIP_COLUMNS).save(path)


def run_one(seed: int, args: argparse.Namespace, device: torch.device, test: Dataset) -> dict:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gankit-imbalanced-") as scratch:
        run_dir = Path(args.keep) / f"seed{seed}" if args.keep else Path(scratch)
        counts = ", ".join(f"{label}: {args.scarce_count}" for label in args.scarce)
        generator, real = train_conditional_gan([f"data.class_counts={{{counts}}}", *GAN_SETTINGS], seed, args, device, run_dir)
    gan_seconds = time.perf_counter() - started
    largest = int(torch.bincount(real.labels).max())
    synthetic = synthesize_conditional(generator, largest - args.scarce_count, classes=args.scarce, seed=seed)
    synthetic_data = Dataset(torch.from_numpy(synthetic.images), torch.from_numpy(synthetic.labels), 10, "synthetic")
    if args.strip and seed == args.seeds[0]:
        write_strip(real, synthetic_data, args.scarce, args.strip)
    oversampled, filled = oversample(real, args.scarce, largest, seed), joined(real, synthetic_data)
    augmented = classical_augmentation(args.scarce, args.shift)
    setups = {
        "real": ([real], None),
        "oversampled": ([oversampled], None),
        "classical": ([oversampled], augmented),
        "gan": ([filled], None),
        "classical+gan": ([oversampled, filled], augmented),
    }
    result = {"seed": seed, "real_images": len(real), "synthetic_images": len(synthetic_data), "gan_seconds": round(gan_seconds, 1)}
    for condition in CONDITIONS:
        sources, transform = setups[condition]
        model = train_classifier(sources, args.clf_steps, args.clf_batch, seed, device, transform)
        result[condition] = scores(model, test, args.scarce)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def table(results: list[dict], scarce: list[int]) -> str:
    recalls = [f"recall {label}" for label in scarce]
    lines = ["| condition | seeds | balanced accuracy | " + " | ".join(recalls) + " |", "|---|---|---|" + "---|" * len(scarce)]
    for condition in CONDITIONS:
        cells = [mean_std([100 * r[condition]["balanced_accuracy"] for r in results], digits=1)]
        cells += [mean_std([100 * r[condition][f"recall_{label}"] for r in results], digits=1) for label in scarce]
        lines.append(f"| {condition} | {len(results)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save(args: argparse.Namespace, results: list[dict], complete: bool, device: torch.device, started: float) -> None:
    minutes = round((time.perf_counter() - started) / 60, 2)
    write_results(args.out, args, results, complete, table(results, args.scarce), device, gan_settings=["cdcgan-fashion", *GAN_SETTINGS, *args.set], minutes=minutes, unit=UNIT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scarce", type=int, nargs="+", default=list(DEFAULT_SCARCE), help="the scarce classes (default 2 4 6: pullover, coat, shirt)")
    parser.add_argument("--scarce-count", type=int, default=60, help="training images kept of each scarce class (default 60, 1%%)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds: pick of the scarce images, GAN and classifier (default 0 1 2)")
    add_gan_classifier_args(parser)
    parser.add_argument("--shift", type=int, default=2, help="classical augmentation: largest shift in pixels (default 2)")
    parser.add_argument("--strip", type=Path, help="write real and GAN images of the scarce classes (first seed) to this PNG")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results (default benchmarks/results/imbalanced.json)")
    args, device, test = parse_gan_classifier_args(parser)
    started, results = time.perf_counter(), []
    for seed in args.seeds:
        results.append(run_one(seed, args, device, test))
        shown = ", ".join(f"{condition} {results[-1][condition]['balanced_accuracy']:.4f}" for condition in CONDITIONS)
        print(f"  seed {seed}: balanced accuracy {shown} ({results[-1]['seconds']} s)", file=sys.stderr, flush=True)
        save(args, results, False, device, started)
    save(args, results, True, device, started)
    print(f"\nbalanced accuracy and scarce-class recall (%) on the Fashion-MNIST test split; classes {args.scarce} cut to {args.scarce_count}, "
          f"{args.gan_steps} GAN steps, {args.clf_steps} classifier steps, seeds {args.seeds}, {(time.perf_counter() - started) / 60:.1f} min on {device}\n")
    print(table(results, args.scarce))
    print(f"\nraw results: {args.out}")


if __name__ == "__main__":
    main()
