"""Few-shot Fashion-MNIST: does a conditional GAN trained on k labelled images per class help a
classifier that has only those images?

For each k and seed: pick k images per class from the training split (data.per_class=k,
data.subset_seed=seed), train the cdcgan-fashion preset on them alone for --gan-steps G steps,
draw --synthetic-per-class images of each class from its EMA generator, then train one fixed
small CNN three ways and measure it on the 10,000-image test split:

  real            the k-per-class real images only
  real+synthetic  every batch half real, half synthetic
  synthetic       synthetic only: the Classification Accuracy Score (CAS) of the GAN

Every classifier takes the same number of optimizer steps (--clf-steps) whatever its data size,
so the conditions differ in data only. The GAN is trained with gankit's Trainer directly, without
the run-folder callbacks: with 100 images an epoch is one step, and a loss plot and a sample grid
per epoch would cost more than the training.

    python benchmarks/augmentation.py                                  # k 10 50 100, seeds 0 1 2
    python benchmarks/augmentation.py --k 10 --seeds 0 --gan-steps 50 --clf-steps 100   # a smoke test
    python benchmarks/augmentation.py --device cuda --gan-steps 10000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_gan_classifier_args, parse_gan_classifier_args, train_conditional_gan, accuracy, mean_std, train_classifier, write_results  # noqa: E402

from gankit.apps.augment import synthesize_conditional  # noqa: E402
from gankit.data import Dataset  # noqa: E402

CONDITIONS = ("real", "real+synthetic", "synthetic")
RESULTS = Path(__file__).resolve().parent / "results" / "augmentation.json"
ACCURACY_UNIT = "fraction of the 10,000 Fashion-MNIST test images (the table shows percent)"


def run_one(k: int, seed: int, args: argparse.Namespace, device: torch.device, test: Dataset) -> dict:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gankit-augment-") as scratch:
        run_dir = Path(args.keep) / f"k{k}-seed{seed}" if args.keep else Path(scratch)
        generator, real = train_conditional_gan([f"data.per_class={k}"], seed, args, device, run_dir)
    gan_seconds = time.perf_counter() - started
    synthetic = synthesize_conditional(generator, args.synthetic_per_class, seed=seed)
    synthetic_data = Dataset(torch.from_numpy(synthetic.images), torch.from_numpy(synthetic.labels), 10, "synthetic")
    training_sets = {"real": [real], "real+synthetic": [real, synthetic_data], "synthetic": [synthetic_data]}
    result = {"k": k, "seed": seed, "real_images": len(real), "synthetic_images": len(synthetic_data), "gan_seconds": round(gan_seconds, 1)}
    for condition in CONDITIONS:
        model = train_classifier(training_sets[condition], args.clf_steps, args.clf_batch, seed, device)
        result[condition] = accuracy(model, test)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| k per class | seeds | real only | real + synthetic | synthetic only (CAS) | CAS / real |",
        "|---|---|---|---|---|---|",
    ]
    for k in sorted({r["k"] for r in results}):
        rows = [r for r in results if r["k"] == k]
        cells = [mean_std([100 * r[condition] for r in rows]) for condition in CONDITIONS]
        ratio = mean_std([r["synthetic"] / r["real"] for r in rows])
        lines.append(f"| {k} | {len(rows)} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[10, 50, 100], help="real images per class (default 10 50 100)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds: pick of the k images, GAN and classifier (default 0 1 2)")
    add_gan_classifier_args(parser)
    parser.add_argument("--synthetic-per-class", type=int, default=1000, help="synthetic images per class (default 1000)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results (default benchmarks/results/augmentation.json)")
    args, device, test = parse_gan_classifier_args(parser)
    start, results = time.perf_counter(), []
    for k in args.k:
        for seed in args.seeds:
            results.append(run_one(k, seed, args, device, test))
            shown = ", ".join(f"{condition} {results[-1][condition]:.4f}" for condition in CONDITIONS)
            print(f"  k={k} seed {seed}: {shown} ({results[-1]['seconds']} s)", file=sys.stderr, flush=True)
            write_results(args.out, args, results, False, table(results), device, accuracy_unit=ACCURACY_UNIT)
    write_results(args.out, args, results, True, table(results), device, accuracy_unit=ACCURACY_UNIT)
    print(f"\nFashion-MNIST test accuracy (%), {args.gan_steps} GAN steps, {args.synthetic_per_class} synthetic per class, "
          f"{args.clf_steps} classifier steps, seeds {args.seeds}, {(time.perf_counter() - start) / 60:.1f} min on {device}\n")
    print(table(results))
    print(f"\nraw results: {args.out}")


if __name__ == "__main__":
    main()
