"""Time to quality: how long gankit's fastest preset needs to reach the FID that the textbook loop
reaches after --textbook-epochs epochs of Fashion-MNIST, on this machine.

Both are scored the same way: FID of --samples generated images against --samples training
images in the feature space of gankit's shipped Fashion-MNIST evaluator. The clock runs only
while training (scoring pauses it). The textbook loop trains the reference MLP pair
(benchmarks/_common.py TextbookGAN) and is scored every epoch; gankit trains --preset in
chunks of --chunk-epochs and stops at the first score at or below the textbook's final FID (or
when it has used as much time as the textbook). Prints both times, the ratio and both FID
curves, and writes JSON and a plot.

    python benchmarks/time_to_quality.py [--textbook-epochs 15] [--preset fast-fashion] [--plot docs/time_to_quality.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from _common import Z_DIM, TextbookGAN, machine_description  # noqa: E402

from gankit.config import load_config  # noqa: E402
from gankit.data import load_dataset, to_model_range  # noqa: E402
from gankit.metrics.evaluator import load_evaluator  # noqa: E402
from gankit.metrics.features import extract  # noqa: E402
from gankit.metrics.image import fid  # noqa: E402
from gankit.models.sampling import eval_mode  # noqa: E402
from gankit.training.trainer import Trainer  # noqa: E402


class FidScorer:
    """FID against a fixed set of real training images; the real features are computed once."""

    def __init__(self, real_images: Tensor, samples: int):
        self.evaluator, self.info = load_evaluator("fashion-mnist")
        self.samples = samples
        pick = torch.randperm(len(real_images), generator=torch.Generator().manual_seed(0))[:samples]
        self.real_features, _ = extract(self.evaluator, to_model_range(real_images[pick]))

    @torch.no_grad()
    def __call__(self, draw: Callable[[Tensor], Tensor]) -> float:
        z = torch.randn(self.samples, Z_DIM, generator=torch.Generator().manual_seed(1))
        images = torch.cat([draw(chunk) for chunk in z.split(1000)]).view(-1, 1, 28, 28)
        fake_features, _ = extract(self.evaluator, images.float())
        return fid(self.real_features, fake_features)


def eval_mode_draw(generator: nn.Module) -> Callable[[Tensor], Tensor]:
    def draw(z: Tensor) -> Tensor:
        with eval_mode(generator) as sampler:
            return sampler(z)

    return draw


def textbook_curve(images: Tensor, epochs: int, score: FidScorer) -> list[tuple[float, float]]:
    """(training seconds, FID) after each epoch of the textbook loop."""
    gan = TextbookGAN(images, 64, torch.device("cpu"))
    steps_per_epoch = len(images) // 64
    elapsed, curve = 0.0, []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        gan.run(steps_per_epoch)
        elapsed += time.perf_counter() - start
        curve.append((elapsed, score(eval_mode_draw(gan.generator))))
        print(f"  textbook epoch {epoch:2d}: {elapsed:7.1f} s  FID {curve[-1][1]:.1f}", flush=True)
    return curve


def gankit_curve(preset: str, overrides: list[str], dataset, score: FidScorer, target: float, budget: float, chunk_epochs: float) -> tuple[list[tuple[float, float]], str]:
    """(training seconds, FID) after each chunk, until FID <= target or the time budget is spent."""
    config = load_config(preset, overrides)
    trainer = Trainer(config, dataset, torch.device("cpu"))
    chunk = max(1, int(chunk_epochs * trainer.batches_per_epoch / config.stabilizers.n_critic))
    elapsed, curve = 0.0, []
    while elapsed < budget:
        start = time.perf_counter()
        for _ in range(chunk):
            trainer.train_step()
        elapsed += time.perf_counter() - start
        curve.append((elapsed, score(eval_mode_draw(trainer.sampler))))
        print(f"  gankit step {trainer.step:6d}: {elapsed:7.1f} s  FID {curve[-1][1]:.1f}", flush=True)
        if curve[-1][1] <= target:
            break
    return curve, trainer.precision


def plot(textbook: list[tuple[float, float]], ours: list[tuple[float, float]], label: str, target: float, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    for curve, name in ((textbook, "textbook loop (reference MLP)"), (ours, label)):
        axes.plot([t / 60 for t, _ in curve], [f for _, f in curve], marker="o", markersize=3, label=name)
    axes.axhline(target, color="grey", linestyle="--", linewidth=1, label="textbook's final FID")
    axes.set(xlabel="training wall-clock (minutes, scoring excluded)", ylabel="FID (gankit Fashion-MNIST evaluator)", yscale="log")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--textbook-epochs", type=int, default=15)
    parser.add_argument("--preset", default="fast-fashion")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for the preset")
    parser.add_argument("--chunk-epochs", type=float, default=0.25, help="gankit is scored after every this many epochs")
    parser.add_argument("--samples", type=int, default=10_000, help="generated and real images per FID")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default="benchmarks/results/time_to_quality.json", help="name it by the machine, e.g. time_to_quality-xeon-bf16.json")
    parser.add_argument("--plot", default="docs/time_to_quality.png")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_dataset(load_config(args.preset, args.set).data)
    score = FidScorer(dataset.samples, args.samples)
    print(f"{len(dataset)} images, {torch.get_num_threads()} threads, FID on {args.samples} samples with evaluator {score.info.sha256[:12]}")
    textbook = textbook_curve(dataset.samples, args.textbook_epochs, score)
    target, textbook_seconds = textbook[-1][1], textbook[-1][0]
    ours, precision = gankit_curve(args.preset, args.set, dataset, score, target, textbook_seconds, args.chunk_epochs)
    reached = next((t for t, f in ours if f <= target), None)
    label = f"gankit {Path(args.preset).stem} ({precision})"
    print(f"textbook: {args.textbook_epochs} epochs in {textbook_seconds:.0f} s, FID {target:.1f}")
    if reached is None:
        print(f"{label}: did not reach FID {target:.1f} within {textbook_seconds:.0f} s (best {min(f for _, f in ours):.1f})")
    else:
        print(f"{label}: reached FID <= {target:.1f} after {reached:.0f} s: {reached / textbook_seconds:.2f} of the textbook's time "
              f"({textbook_seconds / reached:.1f}x faster to the same quality)")
    plot(textbook, ours, label, target, Path(args.plot))
    result = {"command": " ".join(sys.argv), "machine": machine_description(torch.device("cpu")), "threads": torch.get_num_threads(), "samples": args.samples,
              "evaluator_sha256": score.info.sha256, "textbook": textbook, "gankit": ours, "preset": args.preset,
              "overrides": args.set, "precision": precision, "target_fid": target, "textbook_seconds": textbook_seconds,
              "gankit_seconds_to_target": reached, "time_ratio": None if reached is None else reached / textbook_seconds}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
