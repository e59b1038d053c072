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
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import accuracy, machine_description, mean_std, train_classifier  # noqa: E402

from gankit.apps.augment import synthesize_conditional  # noqa: E402
from gankit.config import DataConfig, load_config  # noqa: E402
from gankit.data import Dataset, load_dataset  # noqa: E402
from gankit.files import atomic_write  # noqa: E402
from gankit.training.trainer import Trainer, resolve_device  # noqa: E402

CONDITIONS = ("real", "real+synthetic", "synthetic")
RESULTS = Path(__file__).resolve().parent / "results" / "augmentation.json"


def train_gan(k: int, seed: int, args: argparse.Namespace, device: torch.device, run_dir: Path) -> tuple[nn.Module, Dataset]:
    """The cdcgan-fashion preset on k images per class, --gan-steps G steps; its sampling generator and the real subset."""
    overrides = [
        f"data.per_class={k}", f"data.subset_seed={seed}", f"train.seed={seed}", "train.epochs=1000000",
        f"train.checkpoint_every={args.gan_steps}", f"train.log_every={args.gan_steps}", *args.set,
    ]  # fmt: skip
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    config = load_config("cdcgan-fashion", overrides)
    real = load_dataset(config.data, seed)
    trainer = Trainer(config, real, device)
    trainer.fit(run_dir, [], max_steps=args.gan_steps)
    return trainer.sampler, real


def run_one(k: int, seed: int, args: argparse.Namespace, device: torch.device, test: Dataset) -> dict:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gankit-augment-") as scratch:
        run_dir = Path(args.keep) / f"k{k}-seed{seed}" if args.keep else Path(scratch)
        generator, real = train_gan(k, seed, args, device, run_dir)
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


def save(path: Path, args: argparse.Namespace, results: list[dict], complete: bool, device: torch.device) -> None:
    payload = {
        "command": shlex.join(["python", *sys.argv]),
        "device": str(device),
        "machine": machine_description(device),
        "settings": {key: value for key, value in vars(args).items() if key not in ("out", "keep")},
        "complete": complete,
        "accuracy_unit": "fraction of the 10,000 Fashion-MNIST test images (the table shows percent)",
        "table": table(results),
        "results": results,
    }
    with atomic_write(path) as out:
        out.write((json.dumps(payload, indent=1) + "\n").encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[10, 50, 100], help="real images per class (default 10 50 100)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds: pick of the k images, GAN and classifier (default 0 1 2)")
    parser.add_argument("--gan-steps", type=int, default=3000, help="G steps of the conditional GAN (default 3000)")
    parser.add_argument("--synthetic-per-class", type=int, default=1000, help="synthetic images per class (default 1000)")
    parser.add_argument("--clf-steps", type=int, default=2000, help="classifier optimizer steps, the same for every condition (default 2000)")
    parser.add_argument("--clf-batch", type=int, default=64, help="classifier batch size (default 64)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--data-dir", help="folder searched first for Fashion-MNIST")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override for the GAN config (repeatable)")
    parser.add_argument("--keep", help="keep the GAN run folders under this directory (default: temporary)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results (default benchmarks/results/augmentation.json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    test = load_dataset(DataConfig(dataset="fashion-mnist", split="test", data_dir=args.data_dir)).to(device)
    start, results = time.perf_counter(), []
    for k in args.k:
        for seed in args.seeds:
            results.append(run_one(k, seed, args, device, test))
            shown = ", ".join(f"{condition} {results[-1][condition]:.4f}" for condition in CONDITIONS)
            print(f"  k={k} seed {seed}: {shown} ({results[-1]['seconds']} s)", file=sys.stderr, flush=True)
            save(args.out, args, results, False, device)
    save(args.out, args, results, True, device)
    print(f"\nFashion-MNIST test accuracy (%), {args.gan_steps} GAN steps, {args.synthetic_per_class} synthetic per class, "
          f"{args.clf_steps} classifier steps, seeds {args.seeds}, {(time.perf_counter() - start) / 60:.1f} min on {device}\n")
    print(table(results))
    print(f"\nraw results: {args.out}")


if __name__ == "__main__":
    main()
