"""Folder loading: a first run (decoding, in worker processes, into the cache) against a second run
(the cached array), each in a fresh process as `gankit train` would be: seconds to load the data and
from process start to the end of the first training step, and the process's peak resident memory
against the size of the decoded array.

    python benchmarks/folder_loading.py [--folder DIR] [--image-size 64] [--workers N] [--out benchmarks/results/folder_loading.json]
    python benchmarks/folder_loading.py --synthetic 100000 --image-size 128 --model resnet   # 4.9 GB as uint8

--synthetic N builds a folder of N images (tiny emoji, or noise when the emoji folder is absent,
hard-linked N times over 9 class folders, so it costs seconds and almost no disk) and upscales them
at decode. The cache goes to a temporary folder that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_description  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EMOJI = REPO.parent / "shared" / "datasets" / "emoji-noto-64"
SOURCES = 64  # distinct small images the synthetic folder repeats
CLASSES = 9


def synthetic_folder(root: Path, count: int, source_px: int = 16) -> Path:
    """root holding `count` PNGs in CLASSES class folders: SOURCES distinct source_px-pixel RGBA images
    (emoji when the shared folder is there, else noise), hard-linked over and over."""
    sources = root / ".sources"  # hidden: the folder reader skips it
    sources.mkdir(parents=True)
    emoji = sorted(EMOJI.glob("*/*.png"))
    emoji = emoji[:: max(1, len(emoji) // SOURCES)][:SOURCES]
    rng = np.random.default_rng(0)
    for index in range(SOURCES):
        if index < len(emoji):
            image = Image.open(emoji[index]).convert("RGBA").resize((source_px, source_px), Image.Resampling.BOX)
        else:
            image = Image.fromarray(rng.integers(0, 256, (source_px, source_px, 4), dtype=np.uint8), "RGBA")
        image.save(sources / f"{index}.png")
    for label in range(CLASSES):
        (root / f"class{label}").mkdir()
    for index in range(count):
        os.link(sources / f"{index % SOURCES}.png", root / f"class{index % CLASSES}" / f"{index:06d}.png")
    return root


def child(args: argparse.Namespace) -> None:
    """One run as `gankit train` does it: load the folder, build the trainer, take one step; prints timings."""
    import torch  # noqa: PLC0415  (imported here so the parent's figures do not pay for it)

    from gankit.config import load_config  # noqa: PLC0415
    from gankit.data import load_dataset  # noqa: PLC0415
    from gankit.training.trainer import Trainer  # noqa: PLC0415

    imported = time.time()
    overrides = [f"data.dataset=folder:{args.folder}", f"data.image_size={args.image_size}", f"model.name={args.model}",
                 "model.width=8", "train.batch_size=16", *([f"data.workers={args.workers}"] if args.workers else [])]
    config = load_config("configs/dcgan-fashion.yaml", overrides)
    loading = time.time()
    dataset = load_dataset(config.data)
    loaded = time.time()
    trainer = Trainer(config, dataset, torch.device("cpu"))
    built = time.time()
    trainer.train_step()
    stepped = time.time()
    print(json.dumps({
        "imports_s": round(imported - args.started, 2), "load_s": round(loaded - loading, 2),
        "build_trainer_s": round(built - loaded, 2), "first_step_s": round(stepped - built, 2),
        "start_to_first_step_s": round(stepped - args.started, 2),
        "images": len(dataset.samples), "array_mb": round(dataset.samples.nbytes / 2**20), "memory_mapped": dataset.host_resident,
        "load_average_1min": round(os.getloadavg()[0], 1),
    }))


def measure(args: argparse.Namespace, cache: Path) -> dict:
    """A child run in a fresh process; its figures plus its peak resident memory (MB)."""
    command = [sys.executable, __file__, "--child", "--started", str(time.time()), "--folder", str(args.folder),
               "--image-size", str(args.image_size), "--model", args.model, "--workers", str(args.workers or 0)]
    env = {**os.environ, "GANKIT_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO / "src")}
    wrapper = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)")
    done = subprocess.run([sys.executable, "-c", wrapper, *command], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    figures, peak_kb = done.stdout.strip().splitlines()[-2:]
    return json.loads(figures) | {"peak_rss_mb": round(int(peak_kb) / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=EMOJI)
    parser.add_argument("--synthetic", type=int, default=0, help="build a folder of this many images instead")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--model", default="dcgan")
    parser.add_argument("--workers", type=int, default=0, help="0: one per core")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/folder_loading[-synthetic-N-SIZE].json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    scratch = Path(tempfile.mkdtemp(prefix="gankit-folder-bench-"))
    try:
        if args.synthetic:
            args.folder = synthetic_folder(scratch / "images", args.synthetic)
        first = measure(args, scratch / "cache")
        cached = measure(args, scratch / "cache")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {"folder": "synthetic" if args.synthetic else str(args.folder), "image_size": args.image_size, "model": args.model,
              "first_run": first, "cached_run": cached, "machine": machine_description("cpu")}
    for name, run in (("first run (decoding)", first), ("second run (cache)", cached)):
        print(f"{name:22s} load {run['load_s']:6.2f} s   start to first step {run['start_to_first_step_s']:6.2f} s "
              f"(imports {run['imports_s']:.2f} s, load average {run['load_average_1min']})   "
              f"peak RSS {run['peak_rss_mb']} MB for a {run['array_mb']} MB array{' (memory-mapped)' if run['memory_mapped'] else ''}")
    suffix = f"-synthetic-{args.synthetic}-{args.image_size}" if args.synthetic else ""
    out = args.out or REPO / "benchmarks" / "results" / f"folder_loading{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
