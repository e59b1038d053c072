"""Why the EMA generator measures its own BatchNorm statistics: kept runs' generators scored three ways.

- `G`: the live generator, with its own running statistics;
- `EMA, live statistics`: the averaged weights reading the live G's running statistics (what sampling
  the EMA copy did before `training/ema.py` re-estimated them);
- `EMA, own statistics`: the averaged weights with statistics re-estimated from their own activations
  (what gankit samples now).

Each is scored with the run's RunEvaluator on the same samples' seed, so only the weights and the
statistics differ.

    python benchmarks/ema_batchnorm.py runs/emoji/all-dcgan-diffaugment-seed0 ... --num-samples 2000 \\
        --set data.dataset=folder:../shared/datasets/emoji-noto-64 --set eval.evaluator=benchmarks/evaluators/emoji-noto-64.safetensors \\
        --out benchmarks/results/ema_batchnorm-emoji.json
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402

from gankit.config import apply_overrides, from_dict
from gankit.metrics.suite import RunEvaluator
from gankit.runs import LoadedRun, open_checkpoint

WAYS = ("G", "EMA, live statistics", "EMA, own statistics")


def generators(averaged: LoadedRun) -> dict[str, torch.nn.Module]:
    """The three ways of WAYS, from a run opened with its EMA copy."""
    if not averaged.has_ema:
        raise SystemExit(f"{averaged.path} keeps no EMA generator (stabilizers.ema_decay=0); pick a run trained with EMA")
    live = open_checkpoint(averaged.path, ema=False).generator
    with_live_statistics = copy.deepcopy(averaged.generator)
    live_buffers = dict(live.named_buffers())
    with torch.no_grad():
        for name, buffer in with_live_statistics.named_buffers():
            buffer.copy_(live_buffers[name])
    return dict(zip(WAYS, (live, with_live_statistics, averaged.generator)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders trained with EMA")
    parser.add_argument("--num-samples", type=int, help="images per score (default: the run's eval.num_samples)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override of the run's config for scoring, e.g. the whole folder a subset run is scored against")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, help="write the scores here as JSON")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results, lines = [], ["| run | step | " + " | ".join(WAYS) + " |", "|---|---|" + "---|" * len(WAYS)]
    for run in args.runs:
        loaded = open_checkpoint(run)
        scoring = from_dict(apply_overrides(loaded.config.model_dump(mode="json"), args.set))
        evaluate = RunEvaluator(scoring)
        scores = {way: evaluate(generator, num_samples=args.num_samples, seed=0)["metrics"] for way, generator in generators(loaded).items()}
        results.append({"run": run, "step": loaded.state.get("step"), "scores": scores})
        lines.append(f"| {Path(run).name} | {loaded.state.get('step')} | " + " | ".join(f"{scores[way]['fid']:.1f}" for way in WAYS) + " |")
        print(lines[-1], flush=True)
    text = "FID\n" + "\n".join(lines)
    print("\n" + text)
    if args.out:
        write_results(args.out, args, results, True, text)


if __name__ == "__main__":
    main()
