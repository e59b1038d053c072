"""What a perfect generator would score: a dataset's held-out images scored as if generated, against the same
training reference `gankit eval` uses. FID, precision, recall and coverage have a ceiling (or floor) below the
ideal 0 or 1 that depends on the sample count; a target such as "coverage >= 0.7" reads against it.

    python benchmarks/metrics_ceiling.py --config fast-fashion --num-samples 5000 10000 \
        --out benchmarks/results/metrics_ceiling-fashion-mnist.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402

from gankit.config import Config, load_config  # noqa: E402
from gankit.data import load_dataset, to_model_range  # noqa: E402
from gankit.metrics.image_scoring import ImageScorer  # noqa: E402

SHOWN = ("fid", "kid_mean", "precision", "recall", "density", "coverage", "pixel_nn_distance_ratio", "pixel_diversity")


def ceiling(config: Config, counts: list[int], evaluator: str | None = None) -> list[dict]:
    """One row per count: the first `count` held-out images (the test split) scored as generated images."""
    held_out = load_dataset(config.data.model_copy(update={"split": "test"}))
    if max(counts) > len(held_out):
        raise SystemExit(f"--num-samples {max(counts)} is more than the {len(held_out)} held-out images; ask for at most that many")
    scorer = ImageScorer(config, None, evaluator, False, lambda _: None)
    rows = []
    for count in counts:
        metrics = scorer(to_model_range(held_out.samples[:count]).float())
        rows.append({"num_samples": count, "num_real": scorer.about.get("num_real"), "metrics": metrics})
    return rows


def table(rows: list[dict]) -> str:
    keys = [key for key in SHOWN if key in rows[0]["metrics"]]
    lines = ["| held-out images | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {row['num_samples']} | " + " | ".join(f"{row['metrics'][key]:.3f}" for key in keys) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="fast-fashion", help="preset or YAML whose data and eval settings are used (default fast-fashion)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable), e.g. data.holdout=0.2 for data without a test split")
    parser.add_argument("--num-samples", type=int, nargs="+", default=[5000, 10000], help="held-out images scored per row (default 5000 10000)")
    parser.add_argument("--evaluator", help="as gankit eval --evaluator (default: the dataset's shipped evaluator, or pixel metrics only)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "metrics_ceiling.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = ceiling(load_config(args.config, args.set), args.num_samples, args.evaluator)
    write_results(args.out, args, rows, True, table(rows))
    print(table(rows))
    print(f"\nraw results: {args.out}")


if __name__ == "__main__":
    main()
