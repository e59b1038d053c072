"""Seconds per stage of a 10k-vs-10k image evaluation: feature extraction, then each metric.

The evaluator is the shipped Fashion-MNIST one (gankit.metrics.evaluator); the images are
random, which costs the same as real ones.

    python benchmarks/metrics_speed.py [--count 10000] [--threads N] [--device cuda] [--batch-size B]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from gankit.metrics.evaluator import load_evaluator
from gankit.metrics.features import EXTRACT_BATCH, extract
from gankit.metrics.image import (
    class_histogram,
    class_kl,
    density_coverage,
    evaluate_features,
    fid,
    inception_score,
    kid,
    memorization,
    precision_recall,
)


def timed(label: str, work: Callable[[], object]) -> object:
    start = time.perf_counter()
    result = work()
    print(f"{label:<34} {time.perf_counter() - start:6.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="real and fake images each (default 10000)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="where the evaluator runs (metrics run on the CPU)")
    parser.add_argument("--batch-size", type=int, default=EXTRACT_BATCH, help=f"extraction batch (default {EXTRACT_BATCH})")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    evaluator, _ = load_evaluator("fashion-mnist", args.device)
    real = torch.randint(0, 256, (args.count, 1, 28, 28), dtype=torch.uint8)
    fake = torch.rand(args.count, 1, 28, 28) * 2 - 1
    print(f"{args.count} real (uint8) + {args.count} fake (float) images, torch {torch.__version__}, {torch.get_num_threads()} threads")
    timed(f"warm-up: extract 1000 on {args.device}", lambda: extract(evaluator, real[:1000], args.batch_size))
    real_feats, real_logits = timed("extract real (features + logits)", lambda: extract(evaluator, real, args.batch_size))
    fake_feats, fake_logits = timed("extract fake (features + logits)", lambda: extract(evaluator, fake, args.batch_size))
    timed("fid", lambda: fid(real_feats, fake_feats))
    timed("kid (100 subsets of 1000)", lambda: kid(real_feats, fake_feats))
    timed("precision_recall (k=3)", lambda: precision_recall(real_feats, fake_feats))
    timed("density_coverage (k=5)", lambda: density_coverage(real_feats, fake_feats))
    timed("memorization", lambda: memorization(real_feats, fake_feats))
    timed("inception_score + class_kl", lambda: (inception_score(fake_logits), class_kl(class_histogram(fake_logits, 10), class_histogram(real_logits, 10))))
    timed("evaluate_features (all of them)", lambda: evaluate_features(real_feats, real_logits, fake_feats, fake_logits, 10))


if __name__ == "__main__":
    main()
