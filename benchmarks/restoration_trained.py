"""Restoration on held-out Fashion-MNIST by trained restorers (task: restore) against the best classical method.

    # three restorer trainings, one after the other, each on one core:
    for S in 0 1 2; do taskset -c 1 env OMP_NUM_THREADS=1 gankit train --config restore-fashion train.seed=$S --out runs/restore-fashion-s$S; done
    python benchmarks/restoration_trained.py --runs runs/restore-fashion-s0 runs/restore-fashion-s1 runs/restore-fashion-s2

The first --n images of the t10k split (never seen in training) are degraded five ways, noise drawn from --seed:
  inpaint            a centre square hole of half the image side (as benchmarks/restoration.py)
  denoise            Gaussian noise, sigma 0.3 on the [-1, 1] scale (as restoration.py)
  deblur             Gaussian blur, sigma 1.5 px, + noise sigma 0.02 (as restoration.py)
  deblur-wide        blur sigma 2.5 px + noise 0.02: wider than any blur in training (the preset draws 0.5-2.0)
  inpaint-ring       a ring-shaped hole (radii 5 to 9 px around the centre): a mask shape never drawn in training
Classical methods (skimage, the PSF known to the deconvolutions, the restorers are blind) run on every task of
their kind; their parameters are restoration.py's, except deblur-wide's Wiener balance and Richardson-Lucy
iterations, picked here for the best PSNR on the last 50 t10k images (outside any --n up to 9950). The best
classical method of a task is the one with the highest PSNR. Each restorer restores in one forward pass
(gankit.apps.restore.restore_forward); the table gives the mean +- std over the runs (one per training seed).
Speed: images/s of one restorer over the --n images of a task, best of 3, with torch using every core this
process may run on. Results: benchmarks/results/restoration_trained.json; strips (degraded | restored by the
first run | best classical | truth): benchmarks/results/restoration_trained-TASK.png.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from gankit.apps.restore import restore_forward, write_png
from gankit.config import DataConfig
from gankit.data import load_dataset, to_model_range
from gankit.degradations import Degradation, center_hole
from gankit.report.plots import image_grid
from gankit.runs import open_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    apply_classical,
    classical_restorers,
    fashion_classifier,
    from_unit,
    hole_of,
    machine_description,
    report_restoration,
    restoration_scores,
    to_unit,
)

RESULTS = Path(__file__).resolve().parent / "results"
TUNING_IMAGES = 50  # the last t10k images pick deblur-wide's deconvolution parameters
STRIP_IMAGES = 8
SPEED_REPEATS = 3
RING_RADII = (5.0, 9.0)


def ring_hole(inner: float, outer: float, height: int, width: int) -> torch.Tensor:
    """keep (1, 1, H, W) without the pixels whose centre lies inner <= r < outer px from the image centre."""
    rows = torch.arange(height).view(-1, 1) - (height - 1) / 2
    cols = torch.arange(width).view(1, -1) - (width - 1) / 2
    radius = (rows**2 + cols**2).sqrt()
    return (~((radius >= inner) & (radius < outer))).float().view(1, 1, height, width)


def tasks(side: int) -> dict[str, tuple[Degradation, str, dict[str, float]]]:
    """task -> (degradation, kind of classical method, the classical methods' knowledge of it)."""
    return {
        "inpaint": (Degradation(center_hole(side // 2, side, side)), "inpaint", {}),
        "denoise": (Degradation(noise_sigma=0.3), "denoise", {"noise_sigma": 0.3}),
        "deblur": (Degradation(blur_sigma=1.5, noise_sigma=0.02), "deblur", {"blur_sigma": 1.5}),
        "deblur-wide (unseen)": (Degradation(blur_sigma=2.5, noise_sigma=0.02), "deblur", {"blur_sigma": 2.5}),
        "inpaint-ring (unseen)": (Degradation(ring_hole(*RING_RADII, side, side)), "inpaint", {}),
    }


def tune_deconvolution(images: torch.Tensor, degradation: Degradation, blur_sigma: float, seed: int) -> dict[str, float]:
    """The Wiener balance and Richardson-Lucy iteration count with the best PSNR on `images`."""
    observed01, truth01 = to_unit(degradation.corrupt(images, torch.Generator().manual_seed(seed))), to_unit(images)
    hole = hole_of(degradation, images)

    def psnr_of(method: str, **parameters: float) -> float:
        restorer = classical_restorers("deblur", blur_sigma=blur_sigma, **parameters)[method]
        return restoration_scores(apply_classical(restorer, observed01, hole), truth01)["psnr"]

    balance = max((0.001, 0.003, 0.01, 0.03, 0.1, 0.3), key=lambda value: psnr_of("Wiener", wiener_balance=value))
    iterations = max((5, 10, 20, 30, 50), key=lambda value: psnr_of("Richardson-Lucy", rl_iterations=value))
    return {"wiener_balance": balance, "rl_iterations": iterations}


def images_per_second(restorer: torch.nn.Module, observed: torch.Tensor, degradation: Degradation) -> float:
    best = float("inf")
    for _ in range(SPEED_REPEATS):
        start = time.perf_counter()
        restore_forward(restorer, observed, degradation)
        best = min(best, time.perf_counter() - start)
    return len(observed) / best


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "runs": values}


def run_task(name, degradation, kind, knowledge, truth, tail, runs, seed, classify):
    observed = degradation.corrupt(truth, torch.Generator().manual_seed(seed))
    truth01, observed01, hole = to_unit(truth), to_unit(observed), hole_of(degradation, truth)
    if name.startswith("deblur-wide"):
        knowledge = knowledge | tune_deconvolution(tail, degradation, knowledge["blur_sigma"], seed)
    classical = {}
    for method, restorer in classical_restorers(kind, **knowledge).items():
        start = time.perf_counter()
        restored = apply_classical(restorer, observed01, hole)
        classical[method] = (restoration_scores(restored, truth01, classify) | {"images_per_s": len(truth) / (time.perf_counter() - start)}, restored)
    best_name = max(classical, key=lambda method: classical[method][0]["psnr"])
    trained = [restore_forward(loaded.generator, observed, degradation, loaded.config.restore.paste_known) for loaded in runs]
    per_run = [restoration_scores(to_unit(images), truth01, classify) for images in trained]
    row = {
        "degraded input": restoration_scores(observed01, truth01, classify),
        "restorer": {metric: spread([scores[metric] for scores in per_run]) for metric in per_run[0]},
        "classical": {method: scores for method, (scores, _) in classical.items()},
        "best classical": best_name,
        "classical parameters": knowledge,
        "restorer images_per_s": images_per_second(runs[0].generator, observed, degradation),
    }
    strips = [observed[:STRIP_IMAGES], trained[0][:STRIP_IMAGES], from_unit(classical[best_name][1][:STRIP_IMAGES]), truth[:STRIP_IMAGES]]
    print(f"  {name}: done", file=sys.stderr, flush=True)
    return row, strips


def table(results: dict[str, dict]) -> str:
    lines = [
        "| task | degraded PSNR / SSIM | restorer PSNR (dB) | restorer SSIM | best classical | its PSNR / SSIM | PSNR gain | restorer images/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, row in results.items():
        best = row["classical"][row["best classical"]]
        psnr, ssim = row["restorer"]["psnr"], row["restorer"]["ssim"]
        lines.append(
            f"| {task} | {row['degraded input']['psnr']:.2f} / {row['degraded input']['ssim']:.3f} | {psnr['mean']:.2f} +- {psnr['std']:.2f} | "
            f"{ssim['mean']:.3f} +- {ssim['std']:.3f} | {row['best classical']} | {best['psnr']:.2f} / {best['ssim']:.3f} | "
            f"{psnr['mean'] - best['psnr']:+.2f} | {row['restorer images_per_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="restorer run folders (task: restore on Fashion-MNIST), one per training seed")
    parser.add_argument("--n", type=int, default=500, help="test images (default 500; at most 9950)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the noise of the degraded inputs")
    parser.add_argument("--data-dir", help="folder searched first for fashion-mnist")
    parser.add_argument("--out", type=Path, default=RESULTS / "restoration_trained.json")
    args = parser.parse_args()
    if not 1 <= args.n <= 10_000 - TUNING_IMAGES:
        raise SystemExit(f"--n must be in 1..{10_000 - TUNING_IMAGES} (the last {TUNING_IMAGES} test images tune the deconvolutions)")
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    runs = [open_checkpoint(run, task="restore") for run in args.runs]
    shape = tuple(runs[0].generator.sample_shape)
    data = load_dataset(DataConfig(dataset="fashion-mnist", split="test", data_dir=args.data_dir, image_size=shape[1], channels=shape[0]))
    truth, labels = to_model_range(data.samples[: args.n]), data.labels[: args.n]
    tail = to_model_range(data.samples[-TUNING_IMAGES:])
    classify = fashion_classifier(labels, shape)
    results, started = {}, time.perf_counter()
    for name, (degradation, kind, knowledge) in tasks(shape[1]).items():
        results[name], strips = run_task(name, degradation, kind, knowledge, truth, tail, runs, args.seed, classify)
        slug = name.split(" ")[0]
        write_png(args.out.parent / f"restoration_trained-{slug}.png", image_grid(torch.stack(strips, 1).flatten(0, 1), columns=len(strips)))
    text = table(results)
    fields = {
        "runs": [{"checkpoint": str(run.path), "step": run.state["step"], "seed": run.config.train.seed} for run in runs],
        "images": args.n,
        "machine": machine_description("cpu") | {"torch_threads": threads, "load_average": os.getloadavg()},
        "results": results,
    }
    heading = f"Fashion-MNIST t10k, first {args.n} images, {len(runs)} restorer runs, torch threads {threads}"
    report_restoration(args.out, fields, started, text, heading, f"{args.out.parent}/restoration_trained-TASK.png (degraded | restorer | best classical | truth)")


if __name__ == "__main__":
    main()
