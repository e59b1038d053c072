"""Parameter counts and per-image FLOPs of each image architecture at each size it builds.

    python benchmarks/model_sizes.py                     # prints the table, writes benchmarks/results/model_sizes.json
    python benchmarks/model_sizes.py --widths 64 16 8    # these widths for every architecture

For RGB images, z_dim 100, unconditional, each architecture's implied stabilizers (resnet: spectral
norm in D). FLOPs are torch.utils.flop_counter's count (2 per multiply-add of the matrix products and
convolutions; element-wise work is not counted) of one G forward and one D forward in eval mode,
per image. The networks are built on the meta device: nothing is allocated or run, so 256 px at
width 64 costs no more than 32 px.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from gankit.config import load_config
from gankit.models import BUILDERS, build_models

RESULTS = Path(__file__).resolve().parent / "results" / "model_sizes.json"
DEFAULT_WIDTH = 64  # model.width's default
CPU_WIDTHS = {"dcgan": 32, "resnet": 16, "stylegan2": 8}  # what docs/models.md suggests for training on a CPU
BATCH = 2  # FLOPs are counted on this many images and divided by it


def measure(name: str, side: int, width: int) -> dict:
    config = load_config(None, [f"model.name={name}", f"model.width={width}"])
    with torch.device("meta"):
        generator, discriminator = build_models(config.model, config.stabilizers, (3, side, side), None)
        generator.eval(), discriminator.eval()
        z = torch.randn(BATCH, generator.z_dim)
        with FlopCounterMode(display=False) as g_count:
            images = generator(z)
        with FlopCounterMode(display=False) as d_count:
            discriminator(images)
    return {
        "model": name,
        "size": side,
        "width": width,
        "g_params": sum(p.numel() for p in generator.parameters()),
        "d_params": sum(p.numel() for p in discriminator.parameters()),
        "g_flops": g_count.get_total_flops() // BATCH,
        "d_flops": d_count.get_total_flops() // BATCH,
    }


def human(count: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g}{unit}"
    return str(int(count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", help="model.width values for every architecture (default: 64 and its CPU_WIDTHS entry)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = [
        measure(name, side, width)
        for name, cpu_width in CPU_WIDTHS.items()
        for width in args.widths or (DEFAULT_WIDTH, cpu_width)
        for side in BUILDERS[name].sizes
    ]
    print("| model | size | width | G params | D params | G FLOPs/image | D FLOPs/image |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['model']} | {row['size']} | {row['width']} | {human(row['g_params'])} | {human(row['d_params'])} | {human(row['g_flops'])} | {human(row['d_flops'])} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"torch_version": torch.__version__, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
