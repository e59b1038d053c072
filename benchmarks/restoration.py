"""Restoration on held-out Fashion-MNIST: gankit restore (GAN inversion) against classical baselines.

    python benchmarks/restoration.py --run RUN_DIR [--n 500] [--device cpu] [--steps 300] [--restarts 4]

The first --n images of the t10k split (never seen in training) are degraded three ways, each
with its noise drawn from --seed:
  inpaint  a centre square hole of half the image side     baseline: biharmonic inpainting
  denoise  Gaussian noise, sigma 0.3 on the [-1, 1] scale   baselines: non-local means, total variation
  deblur   Gaussian blur, sigma 1.5 px, + noise sigma 0.02  baselines: Richardson-Lucy, Wiener (known PSF)
Baselines come from skimage.restoration; their parameters were picked once for the best PSNR on
the last 50 t10k images (outside any --n up to 9950). PSNR and SSIM (skimage.metrics) are
computed on [0, 1] images. "class acc" is the shipped Fashion-MNIST evaluator's accuracy on the
restored images against the true labels (the clean images score about 0.92): a cheap check of
whether the restored garment is still recognisably the right one. Results go to
benchmarks/results/restoration.json, comparison strips (degraded | gankit | baselines | truth)
to benchmarks/results/restoration-TASK.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gankit.apps.restore import Degradation, InversionSettings, parse_mask, restore, write_png
from gankit.config import DataConfig
from gankit.data import load_dataset, to_model_range
from gankit.report.plots import image_grid
from gankit.runs import open_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RestorationBaseline,
    apply_classical,
    classical_restorers,
    fashion_classifier,
    from_unit,
    hole_of,
    report_restoration,
    restoration_scores,
    to_unit,
)

RESULTS = Path(__file__).resolve().parent / "results"
NOISE_SIGMA = 0.3
BLUR_SIGMA, BLUR_NOISE = 1.5, 0.02
STRIP_IMAGES = 8


def baselines(task: str) -> dict[str, RestorationBaseline]:
    """Per task, skimage methods on one [0, 1] grayscale image (parameters: see the module docstring)."""
    return classical_restorers(task, noise_sigma=NOISE_SIGMA, blur_sigma=BLUR_SIGMA)


def degradations(count: int, side: int) -> dict[str, Degradation]:
    hole = parse_mask(f"center:{side // 2}", count, side, side, torch.Generator())
    return {
        "inpaint": Degradation(hole),
        "denoise": Degradation(noise_sigma=NOISE_SIGMA),
        "deblur": Degradation(blur_sigma=BLUR_SIGMA, noise_sigma=BLUR_NOISE),
    }


def run_task(task, degradation, truth, loaded, settings, seed, classify) -> tuple[dict[str, dict[str, float]], list[torch.Tensor]]:
    observed = degradation.corrupt(truth, torch.Generator().manual_seed(seed))
    truth01, observed01 = to_unit(truth), to_unit(observed)
    hole = hole_of(degradation, truth)
    rows = {"degraded input": restoration_scores(observed01, truth01, classify)}
    start = time.perf_counter()
    result = restore(loaded.generator, observed, degradation, settings, discriminator=loaded.discriminator, seed=seed)
    rows["gankit restore"] = restoration_scores(to_unit(result.images), truth01, classify) | {"seconds": round(time.perf_counter() - start, 1)}
    strips = [observed[:STRIP_IMAGES], result.images[:STRIP_IMAGES]]
    for name, method in baselines(task).items():
        start = time.perf_counter()
        restored = apply_classical(method, observed01, hole)
        rows[name] = restoration_scores(restored, truth01, classify) | {"seconds": round(time.perf_counter() - start, 1)}
        strips.append(from_unit(restored[:STRIP_IMAGES]))
    rows["ground truth"] = restoration_scores(truth01, truth01, classify) if classify else {}
    print(f"  {task}: done", file=sys.stderr, flush=True)
    return rows, [*strips, truth[:STRIP_IMAGES]]


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = ["| task | method | PSNR (dB) | SSIM | class acc | seconds |", "|---|---|---|---|---|---|"]
    for task, rows in results.items():
        for method, row in rows.items():
            if method == "ground truth" and not row:
                continue
            cells = [f"{row['psnr']:.2f}" if "psnr" in row and np.isfinite(row["psnr"]) else "-", f"{row['ssim']:.3f}" if "ssim" in row else "-"]
            cells += [f"{row['class_acc']:.3f}" if "class_acc" in row else "-", str(row.get("seconds", "-"))]
            lines.append(f"| {task} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run folder (or checkpoint) of a GAN trained on Fashion-MNIST (28, 32 or 64 px)")
    parser.add_argument("--n", type=int, default=500, help="test images (default 500; at most 9950)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, help="inversion steps (default: gankit restore's)")
    parser.add_argument("--restarts", type=int, help="inversion restarts (default: gankit restore's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="folder searched first for fashion-mnist")
    parser.add_argument("--out", type=Path, default=RESULTS / "restoration.json")
    args = parser.parse_args()
    if not 1 <= args.n <= 9950:
        raise SystemExit("--n must be in 1..9950 (the last 50 test images tuned the baselines)")
    settings = InversionSettings.create(**{k: v for k, v in (("steps", args.steps), ("restarts", args.restarts)) if v is not None})
    loaded = open_checkpoint(args.run, device=args.device)
    shape = tuple(loaded.generator.sample_shape)
    if len(shape) != 3 or loaded.generator.num_classes:
        raise SystemExit(f"{args.run}: the benchmark needs an unconditional image GAN, not sample shape {shape} with {loaded.generator.num_classes} classes")
    data = load_dataset(DataConfig(dataset="fashion-mnist", split="test", data_dir=args.data_dir, image_size=shape[1], channels=shape[0]))
    truth, labels = to_model_range(data.samples[: args.n]).to(args.device), data.labels[: args.n]
    classify = fashion_classifier(labels, shape)
    results, started = {}, time.perf_counter()
    for task, degradation in degradations(args.n, shape[1]).items():
        results[task], strips = run_task(task, degradation, truth, loaded, settings, args.seed, classify)
        write_png(args.out.parent / f"restoration-{task}.png", image_grid(torch.stack([s.cpu() for s in strips], 1).flatten(0, 1), columns=len(strips)))
    text = table(results)
    fields = {"run": str(loaded.path), "step": loaded.state["step"], "images": args.n, "settings": settings.model_dump(), "results": results}
    heading = f"Fashion-MNIST t10k, first {args.n} images, {loaded.path} (step {loaded.state['step']})"
    report_restoration(args.out, fields, started, text, heading, f"{args.out.parent}/restoration-TASK.png (degraded | gankit | baselines | truth)")


if __name__ == "__main__":
    main()
