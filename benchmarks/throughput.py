"""Training throughput: a textbook PyTorch GAN loop against gankit's trainer, in fp32 and bf16,
against the machine's GEMM bound, and over batch sizes with peak memory.

Part 1 (reference MLP pair, batch --batch-size): images/s of the textbook loop and of gankit's
trainer in each --precisions entry (median of --repeats timed windows after warm-up), the ratio,
the FLOPs one step needs (from the layer shapes), the GEMM rate at those shapes (fp32 and bf16),
and the fraction of the bound reached. Part 2 (--sweep): images/s and peak memory of the
reference and DCGAN presets for each batch size, each measured in a fresh process so its peak
memory is its own. Part 3 (--profile N): where gankit's step spends its time, a torch.profiler
table over N steps of the first --precisions entry, with the matrix products' and Adam's shares.

    python benchmarks/throughput.py [--device cpu|cuda] [--batch-size 64] [--precisions fp32 bf16 bf16-mixed]
                                    [--sweep 64 256 1024] [--profile 100] [--threads N] [--out benchmarks/results/throughput-MACHINE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import D_WIDTHS, G_WIDTHS, PRESETS, TextbookGAN, gankit_loop, machine_description, peak_memory_mb  # noqa: E402

from gankit.config import load_config  # noqa: E402
from gankit.data import load_dataset  # noqa: E402
from gankit.training.precision import synchronize  # noqa: E402

def images_per_second(run: Callable[[int], int], steps: int, repeats: int) -> float:
    run(max(10, steps // 5))  # warm-up: allocator, Adam state, caches
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = run(steps)
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def linear_shapes(batch_size: int) -> list[tuple[int, int, int]]:
    """(batch, in, out) of every Linear in G and D."""
    return [(batch_size, a, b) for widths in (G_WIDTHS, D_WIDTHS) for a, b in zip(widths, widths[1:])]


def step_flops(batch_size: int) -> float:
    """FLOPs of one textbook step, counting 2*B*in*out per Linear forward and twice that per backward.

    D step: G forward, D forward on real and on fake, D backward for both (weights and inputs).
    G step: D forward on the fake again, D backward (inputs and weights, as the textbook loop
    computes them), G backward.
    """
    g_forward = sum(2 * b * i * o for b, i, o in linear_shapes(batch_size)[: len(G_WIDTHS) - 1])
    d_forward = sum(2 * b * i * o for b, i, o in linear_shapes(batch_size)[len(G_WIDTHS) - 1 :])
    return g_forward + 2 * d_forward + 2 * (2 * d_forward) + d_forward + 2 * d_forward + 2 * g_forward


def gemm_flops_per_second(batch_size: int, dtype: torch.dtype, device: torch.device, repeats: int = 30) -> float:
    """The machine's matrix-product rate at the step's shapes: for every Linear, its forward product
    (B x in) @ (in x out) and both backward ones, timed together."""
    flops, seconds = 0.0, 0.0
    for b, i, o in linear_shapes(batch_size):
        x, w, y = (torch.randn(*shape, dtype=dtype, device=device) for shape in ((b, i), (o, i), (b, o)))
        products = (lambda: x @ w.T, lambda: y @ w, lambda: y.T @ x)
        for product in products:
            product()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            for product in products:
                product()
        synchronize(device)
        seconds += time.perf_counter() - start
        flops += repeats * 3 * 2 * b * i * o
    return flops / seconds


def measure_one(args: argparse.Namespace) -> None:
    """--one PRESET:BATCH:PRECISION in this (fresh) process: print images/s and peak memory as JSON."""
    preset, batch, precision = args.one.split(":")
    device = torch.device(args.device)
    dataset = load_dataset(load_config(PRESETS[preset], [f"data.dataset={args.dataset}"]).data)
    run, ran = gankit_loop(PRESETS[preset], dataset, int(batch), precision, device)
    rate = images_per_second(run, max(20, args.steps * 64 // int(batch)), args.repeats)
    print(json.dumps({"preset": preset, "batch": int(batch), "precision": ran, "images_per_s": rate, "peak_memory_mb": peak_memory_mb(device)}))


def sweep(args: argparse.Namespace) -> list[dict]:
    rows = []
    for preset in PRESETS:
        for precision in args.precisions:
            for batch in args.sweep:
                command = [sys.executable, __file__, "--one", f"{preset}:{batch}:{precision}", "--device", args.device,
                           "--dataset", args.dataset, "--steps", str(args.steps), "--repeats", str(args.repeats)]
                if args.threads:
                    command += ["--threads", str(args.threads)]
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]))
                row = rows[-1]
                print(f"  {preset:<9} {row['precision']:<10} batch {batch:>5}  {row['images_per_s']:9.0f} images/s  peak {row['peak_memory_mb']:7.0f} MB", flush=True)
    return rows


PROFILE_GROUPS = {"matrix products": ("aten::mm", "aten::addmm"), "Adam": ("aten::_fused_adam_",)}


def profile(config_path: str, dataset, batch_size: int, precision: str, device: torch.device, steps: int) -> dict[str, float]:
    """Print the ops that take gankit's step time and return the shares of PROFILE_GROUPS (of all op self time)."""
    run, _ = gankit_loop(config_path, dataset, batch_size, precision, device)
    run(max(10, steps // 5))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as profiled:
        run(steps)
    events = profiled.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=15))
    total = sum(event.self_cpu_time_total for event in events)
    shares = {group: sum(e.self_cpu_time_total for e in events if e.key in names) / total for group, names in PROFILE_GROUPS.items()}
    shares["everything else"] = 1 - sum(shares.values())
    print("  ".join(f"{group}: {share:.0%}" for group, share in shares.items()))
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=150, help="steps per timed window (at batch 64; scaled for others)")
    parser.add_argument("--repeats", type=int, default=5, help="timed windows per loop (the median is reported)")
    parser.add_argument("--dataset", default="fashion-mnist", help="any gankit dataset spec of 28x28 grayscale images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "bf16-mixed"])
    parser.add_argument("--sweep", nargs="*", type=int, default=[], help="batch sizes for the images/s and peak-memory table")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS", help="profile this many gankit steps (first --precisions entry)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        measure_one(args)
        return
    device = torch.device(args.device)
    dataset = load_dataset(load_config(PRESETS["reference"], [f"data.dataset={args.dataset}"]).data)
    machine = machine_description(device)
    print(f"reference GAN, batch {args.batch_size}, {len(dataset)} images, {torch.get_num_threads()} threads, {json.dumps(machine)}")
    flops = step_flops(args.batch_size)
    result = {"command": " ".join(sys.argv), "machine": machine, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
              "step_gflop": flops / 1e9, "loops": {}}
    textbook = images_per_second(TextbookGAN(dataset.samples, args.batch_size, device).run, args.steps, args.repeats)
    result["loops"]["textbook fp32"] = textbook
    for precision in args.precisions:
        run, ran = gankit_loop(PRESETS["reference"], dataset, args.batch_size, precision, device)
        result["loops"][f"gankit {precision}" + ("" if ran == precision else f" (ran {ran})")] = images_per_second(run, args.steps, args.repeats)
    print(f"FLOPs per step (layer shapes)      {flops / 1e9:.2f} GFLOP")
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rate = gemm_flops_per_second(args.batch_size, dtype, device)
        result[f"gemm_gflops_{dtype_name}"] = rate / 1e9
        result[f"bound_images_per_s_{dtype_name}"] = rate / flops * args.batch_size
        print(f"GEMM rate at these shapes, {dtype_name}    {rate / 1e9:8.0f} GFLOP/s  -> bound {rate / flops * args.batch_size:8.0f} images/s")
    bound = result["bound_images_per_s_fp32"]
    for loop, rate in result["loops"].items():
        print(f"{loop:<34} {rate:8.0f} images/s  {rate / textbook:5.2f}x textbook  {rate / bound:5.0%} of the fp32 bound")
    if args.sweep:
        print("batch sweep (each in a fresh process):")
        result["sweep"] = sweep(args)
    if args.profile:
        result["profile_shares"] = profile(PRESETS["reference"], dataset, args.batch_size, args.precisions[0], device, args.profile)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
