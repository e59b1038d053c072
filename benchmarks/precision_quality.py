"""Precision parity: a preset trained for the same steps from the same seed in each precision,
scored exactly as `gankit eval` scores it (the shipped evaluator: FID, precision, recall,
coverage, classes covered, collapse_suspected on 10,000 samples of the EMA/plain generator
against 10,000 training images).

bf16 and bf16-mixed run even where this machine's bf16 products are slower than fp32
(train.precision_fallback=false): the point is their numerics; the CPU's flags and the measured
speed-up are recorded beside the figures.

    python benchmarks/precision_quality.py [--presets reference-fashion fast-fashion] [--precisions fp32 bf16 bf16-mixed]
                                           [--seeds 0 1 2] [--epochs N] [--device cpu|cuda] [--out benchmarks/results/precision_quality.json]

On one GPU, the bf16/fp16 comparison is
    python benchmarks/precision_quality.py --device cuda --precisions fp32 bf16 bf16-mixed fp16-mixed
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from _common import machine_description

from gankit.metrics.suite import RunEvaluator
from gankit.config import load_config
from gankit.data import load_dataset
from gankit.training.precision import bf16_speedup
from gankit.training.trainer import Trainer

REPORTED = ("fid", "precision", "recall", "coverage", "classes_covered", "collapse_suspected")


def train_and_score(preset: str, precision: str, seed: int, epochs: int | None, device: torch.device, scorers: dict) -> dict:
    overrides = [f"train.precision={precision}", "train.precision_fallback=false", f"train.seed={seed}", "train.log_every=1000000"]
    if epochs:
        overrides.append(f"train.epochs={epochs}")
    config = load_config(preset, overrides)
    trainer = Trainer(config, load_dataset(config.data, seed), device)
    start = time.perf_counter()
    while trainer.step < trainer.total_steps:
        trainer.train_step()
    seconds = time.perf_counter() - start
    if preset not in scorers:
        scorers[preset] = RunEvaluator(config, say=lambda line: None)
    trainer.update_g.sync_master_buffers()
    metrics = scorers[preset](trainer.sampler)["metrics"]
    return {"preset": preset, "train_precision": trainer.precision, "seed": seed, "steps": trainer.step, "train_seconds": round(seconds, 1),
            "images_per_s": round(trainer.step * config.train.batch_size * config.stabilizers.n_critic / seconds, 1),
            **{key: metrics[key] for key in REPORTED}}


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and spread of FID per (preset, precision), and the ratio to fp32's mean."""
    groups: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        groups.setdefault((row["preset"], row["train_precision"]), []).append(row["fid"])
    summary = []
    for (preset, precision), fids in groups.items():
        fp32 = groups.get((preset, "fp32"))
        summary.append({"preset": preset, "precision": precision, "fid_mean": statistics.mean(fids), "fid_min": min(fids), "fid_max": max(fids),
                        "seeds": len(fids), "vs_fp32": statistics.mean(fids) / statistics.mean(fp32) if fp32 else None})
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["reference-fashion", "fast-fashion"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "bf16-mixed"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="train this many epochs instead of the preset's")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default="benchmarks/results/precision_quality.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = {"command": " ".join(sys.argv), "machine": machine_description(device), "threads": torch.get_num_threads(),
              "bf16_matmul_speedup": round(bf16_speedup(device.type), 2), "rows": []}
    print(f"{json.dumps(result['machine'])}, {result['threads']} threads, bf16 products at {result['bf16_matmul_speedup']}x fp32", flush=True)
    scorers: dict = {}
    for preset in args.presets:
        for seed in args.seeds:
            for precision in args.precisions:
                row = train_and_score(preset, precision, seed, args.epochs, device, scorers)
                result["rows"].append(row)
                print(f"  {preset:<18} {precision:<10} seed {seed}: {row['steps']} steps in {row['train_seconds']:6.0f} s  FID {row['fid']:7.2f}  "
                      f"precision {row['precision']:.2f} recall {row['recall']:.2f} coverage {row['coverage']:.2f}  "
                      f"classes {row['classes_covered']}  collapse {row['collapse_suspected']}", flush=True)
                Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    result["summary"] = summarize(result["rows"])
    for line in result["summary"]:
        ratio = "" if line["vs_fp32"] is None else f"  {line['vs_fp32']:.3f}x fp32"
        print(f"{line['preset']:<18} {line['precision']:<10} FID {line['fid_mean']:7.2f} ({line['fid_min']:.2f}-{line['fid_max']:.2f}, {line['seeds']} seeds){ratio}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
