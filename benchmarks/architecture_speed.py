"""Training speed and peak memory of each image architecture at 64 and 128 px: images/s of gankit's
trainer (D step + G step, batch --batch-size, RGB, unconditional, fp32) and the process's peak memory,
each configuration in a fresh process so its peak is its own. Widths are those benchmarks/emoji_quality.py trains.

    python benchmarks/architecture_speed.py [--threads 1] [--out benchmarks/results/architecture_speed.json]
    python benchmarks/architecture_speed.py --device cuda --batch-size 64     # the same table on a GPU

Data are random uint8 images (speed does not depend on content), so nothing is loaded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CONFIGS, CPU_ARCHITECTURES, machine_description, make_trainer, peak_memory_mb, trainer_steps  # noqa: E402

from gankit.data import Dataset  # noqa: E402

SIZES = {"dcgan": (64,), "resnet": (64, 128), "stylegan2": (64, 128)}
SYNTHETIC_IMAGES = 256
UNLABELLED_FP32 = ("stabilizers.diffaugment=[]", "model.conditional=false", "train.precision=fp32")  # random images have no classes; the table is fp32


def measure_one(arch: str, size: int, batch_size: int, device: torch.device, steps: int) -> dict:
    images = torch.randint(0, 256, (SYNTHETIC_IMAGES, 3, size, size), dtype=torch.uint8)
    dataset = Dataset(images, None, None, f"random {size} px")
    trainer = make_trainer(str(CONFIGS / "emoji-64.yaml"), dataset, batch_size, device, [*CPU_ARCHITECTURES[arch], *UNLABELLED_FP32])
    run = trainer_steps(trainer)
    run(1)  # warm-up: allocator, optimizer state
    start = time.perf_counter()
    count = run(steps)
    rate = count / (time.perf_counter() - start)
    params = {name: sum(p.numel() for p in net.parameters()) for name, net in (("G", trainer.G), ("D", trainer.D))}
    return {"model": arch, "overrides": list(CPU_ARCHITECTURES[arch]), "size": size, "batch": batch_size, "images_per_s": rate,
            "peak_memory_mb": peak_memory_mb(device), "parameters": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per configuration, after one warm-up step")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # ARCH:SIZE, measured in this process
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.one:
        arch, size = args.one.split(":")
        print(json.dumps(measure_one(arch, int(size), args.batch_size, device, args.steps)))
        return
    rows = []
    for arch, sizes in SIZES.items():
        for size in sizes:
            command = [sys.executable, __file__, "--one", f"{arch}:{size}", "--device", args.device, "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
            command += ["--threads", str(args.threads)] if args.threads else []
            rows.append(json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]))
            row = rows[-1]
            print(f"  {arch:<10} {size:>4} px  {row['images_per_s']:8.1f} images/s  peak {row['peak_memory_mb']:7.0f} MB", flush=True)
    result = {"command": " ".join(sys.argv), "machine": machine_description(device), "threads": torch.get_num_threads(), "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
