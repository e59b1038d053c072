"""best-fashion: configs/best-fashion.yaml trained as shipped, and its ablation rows.

Each row is trained for its own length (no --steps), then the final EMA generator is scored as
`gankit eval` scores it: 10,000 samples (labels cycling through the classes for a conditional G)
against 10,000 training images in the shipped Fashion-MNIST evaluator's features (FID, precision,
recall, coverage with k = 3). The table adds the wall-clock training minutes and the runs the
mode-collapse watchdog warned about.

    python benchmarks/best_fashion.py --only best-fashion --seeds 3 --out benchmarks/results/best_fashion-preset.json
    python benchmarks/best_fashion.py --only "without labels" --only "half the epochs" --seeds 2 --jobs 2 --threads 1 --out benchmarks/results/best_fashion-ablation.json

Rows: the preset; the preset without class labels (model.conditional=false: what the
projection discriminator and label embedding add); with half its epochs (what the length adds);
and fast-fashion as shipped (the starting point: unconditional, width 32, 5 epochs).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CONFIGS, Row, common_args, main_loop  # noqa: E402

from gankit.config import load_config  # noqa: E402

METRICS = ["fid", "precision", "recall", "coverage", "classes_covered"]
PRESET = "best-fashion.yaml"


def rows() -> list[Row]:
    epochs = load_config(CONFIGS / PRESET).train.epochs
    return [
        Row("best-fashion", PRESET),
        Row("without labels", PRESET, ("model.conditional=false",)),
        Row("half the epochs", PRESET, (f"train.epochs={epochs // 2}",)),
        Row("fast-fashion", "fast-fashion.yaml"),
    ]


def training_minutes(runs: list[dict]) -> str:
    minutes = [r["train_seconds"] / 60 for r in runs]
    return f"{statistics.mean(minutes):.1f} (max {max(minutes):.1f})" if minutes else "-"


def warned_runs(runs: list[dict]) -> str:
    return f"{sum(bool(r['watchdog_warnings']) for r in runs)}/{len(runs)}"


def main() -> None:
    parser = common_args(__doc__.splitlines()[0], default_seeds=3, default_steps=None)
    args = parser.parse_args()
    if args.steps:
        parser.error("--steps does not apply: every row trains for its own configured epochs")
    extra = {"training minutes": training_minutes, "watchdog warned": warned_runs}
    main_loop(args, rows(), METRICS, extra, title="best-fashion and its ablations,")


if __name__ == "__main__":
    main()
