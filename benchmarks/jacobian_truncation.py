"""Jacobian truncation at sampling, on trained runs: each run scored (gankit's RunEvaluator, as
`gankit eval`) with several fractions of z dropped where G is steepest, 0 being plain sampling.
The ablation row of the option: the same generators, only the sampling differs.

    python benchmarks/toys.py --only ring8/best --seed-list 0,1,2,3,4 --threads 1 --keep runs/toys
    python benchmarks/jacobian_truncation.py runs/toys/ring8-best-seed* --out benchmarks/results/jacobian_truncation-ring8.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import mean_std, write_results  # noqa: E402

from gankit.metrics.suite import RunEvaluator  # noqa: E402
from gankit.runs import open_checkpoint  # noqa: E402


def score(run: Path, fraction: float) -> dict:
    loaded = open_checkpoint(run)
    loaded.config.sampling.jacobian_truncation = fraction
    result = RunEvaluator(loaded.config)(loaded.generator)
    return {"run": run.name, "step": loaded.state["step"], "jacobian_truncation": result["sampling"]["jacobian_truncation"], **result["metrics"]}


def table(results: list[dict], metrics: list[str]) -> str:
    lines = [f"| jacobian_truncation | runs | {' | '.join(metrics)} |", "|---" * (len(metrics) + 2) + "|"]
    for fraction in dict.fromkeys(r["jacobian_truncation"] for r in results):
        rows = [r for r in results if r["jacobian_truncation"] == fraction]
        lines.append(f"| {fraction:g} | {len(rows)} | " + " | ".join(mean_std([r[m] for r in rows]) for m in metrics) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (e.g. kept by benchmarks/toys.py --keep)")
    parser.add_argument("--fractions", type=lambda s: [float(x) for x in s.split(",")], default=[0.0, 0.02, 0.05, 0.1], help="comma list (default 0,0.02,0.05,0.1)")
    parser.add_argument("--metrics", default="modes_captured,high_quality_fraction,reverse_kl", help="comma list of metrics in the table (default: the toys')")
    parser.add_argument("--out", type=Path, required=True, help="JSON results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = [score(run, fraction) for fraction in args.fractions for run in args.runs]
    text = table(results, args.metrics.split(","))
    write_results(args.out, args, results, True, text)
    print(text)


if __name__ == "__main__":
    main()
