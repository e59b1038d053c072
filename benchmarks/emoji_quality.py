"""Colour folder data at a fixed CPU budget: dcgan vs resnet vs stylegan2 on emoji-noto-64, each
without and with augmentation for D (DiffAugment as the preset ships it, with cutout added, or
ADA-controlled), on the whole folder (3,781 images) and on a stratified 10% subset (378 images).

Every run trains for `--seconds` of its own CPU time (so other work on the machine does not shorten
it; on one torch thread, `--threads 1`, that is core-seconds), then its final generator
(EMA when the row keeps one) is scored by gankit's RunEvaluator: FID, KID, precision, recall and
coverage in the features of an evaluator trained on the same folder (`--evaluator`, made by
`gankit evaluator train --dataset folder:DIR`). Subset runs are scored against the whole folder,
as the data-efficient GAN papers score their subsets against the full training set.

    python benchmarks/emoji_quality.py --seconds 240 --seeds 2 --threads 1 --jobs 2 \\
        --evaluator benchmarks/evaluators/emoji-noto-64.safetensors --out benchmarks/results/emoji-64.json
    python benchmarks/emoji_quality.py --list

The subset is a folder of symbolic links (made once under --subset-dir): for each class the first
10% (at least one image) of its files in a seeded shuffle.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CPU_ARCHITECTURES, REPO, Row, common_args, main_loop  # noqa: E402

METRICS = ["fid", "kid_mean", "precision", "recall", "coverage"]
EMOJI = REPO.parent / "shared" / "datasets" / "emoji-noto-64"
SUBSET_FRACTION = 0.1
AUGMENTATIONS = {
    "plain": (  # dcgan as it was before folder data: no labels, no augmentation, no EMA, Adam at 2e-4, fp32
        "model.conditional=false", "stabilizers.diffaugment=[]", "stabilizers.ema_decay=0", "optim.lr_g=2e-4", "optim.lr_d=2e-4", "train.precision=fp32",
    ),
    "none": ("stabilizers.diffaugment=[]",),
    "diffaugment": ("stabilizers.diffaugment=color,translation",),  # what emoji-64.yaml ships
    "cutout": ("stabilizers.diffaugment=color,translation,cutout",),
    "ada": ("stabilizers.diffaugment=color,translation,cutout", "stabilizers.ada_target=0.6"),
}


def stratified_subset(source: Path, target: Path, fraction: float, seed: int = 0) -> Path:
    """`fraction` of each class folder of `source` as symbolic links under `target` (kept if it exists)."""
    if target.is_dir():
        return target
    rng = random.Random(seed)
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.png"))
        rng.shuffle(files)
        (target / folder.name).mkdir(parents=True)
        for file in files[: max(1, round(fraction * len(files)))]:
            (target / folder.name / file.name).symlink_to(file.resolve())
    return target


def rows(seconds: float | None, steps: int | None, evaluator: str, subset: Path, only_augmentations: list[str]) -> list[Row]:
    whole = f"data.dataset=folder:{EMOJI}"
    scoring = (whole, f"eval.evaluator={evaluator}")
    out = []
    for data_name, data in (("all", whole), ("10%", f"data.dataset=folder:{subset}")):
        for arch, arch_overrides in CPU_ARCHITECTURES.items():
            for aug in only_augmentations:
                overrides = (data, *arch_overrides, *AUGMENTATIONS[aug], "train.epochs=100000", f"eval.evaluator={evaluator}")
                out.append(Row(f"{data_name}/{arch}/{aug}", "emoji-64.yaml", overrides, steps, seconds, clock="cpu", score_overrides=scoring))
    return out


def main() -> None:
    parser = common_args(__doc__.splitlines()[0], default_seeds=2, default_steps=None)
    parser.add_argument("--seconds", type=float, default=240.0, help="training CPU seconds per run (default 240; ignored with --steps)")
    parser.add_argument("--evaluator", required=True, help="the emoji evaluator (.safetensors) all runs are scored with")
    parser.add_argument("--subset-dir", type=Path, default=Path("/tmp/gankit-emoji-10pct"), help="where the 10%% subset's links go")
    parser.add_argument("--augmentations", default="none,diffaugment,ada", help=f"comma list of {', '.join(AUGMENTATIONS)} (default: none,diffaugment,ada)")
    args = parser.parse_args()
    seconds = None if args.steps else args.seconds
    subset = stratified_subset(EMOJI, args.subset_dir, SUBSET_FRACTION)
    augmentations = args.augmentations.split(",")
    budget = f"{args.steps} G steps" if args.steps else f"{seconds:g} CPU s training"
    main_loop(args, rows(seconds, args.steps, str(Path(args.evaluator).resolve()), subset, augmentations), METRICS, title=f"emoji-noto-64 at 64 px, {budget} per run,")


if __name__ == "__main__":
    main()
