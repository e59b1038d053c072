"""Stacked MNIST (1000 modes): DCGAN against the stabilized presets (PacDCGAN and others).

Modes captured and KL(generated triples || uniform) in nats over 26,000 samples, each channel
classified by gankit's shipped MNIST evaluator (RunEvaluator), mean +- std over seeds.

    python benchmarks/stacked_mnist.py --seeds 2 --steps 3000 --jobs 2 --threads 1 --out benchmarks/results/stacked_mnist.json
    python benchmarks/stacked_mnist.py --only pacdcgan --seeds 1 --steps 500

The digits come from data.dataset=stacked-mnist:idx:../shared/datasets/mnist-10k (10,000
MNIST training digits; change it with --set data.dataset=stacked-mnist for the full MNIST when it
is reachable). Rows: configs/dcgan-stacked-mnist.yaml (DCGAN at 28 px, 3 channels, width 32,
non-saturating loss, no stabilizer), configs/pacdcgan-stacked-mnist.yaml (the same with
pack=2, PacDCGAN), and the DCGAN with pack=4, with spectral norm + EMA, and with R1 + EMA.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Row, common_args, main_loop  # noqa: E402

METRICS = ["stacked_modes", "stacked_kl"]


def rows(steps: int) -> list[Row]:
    return [
        Row("dcgan", "dcgan-stacked-mnist.yaml", (), steps),
        Row("pacdcgan (pack 2)", "pacdcgan-stacked-mnist.yaml", (), steps),
        Row("dcgan + pack 4", "dcgan-stacked-mnist.yaml", ("stabilizers.pack=4",), steps),
        Row("dcgan + SN + EMA", "dcgan-stacked-mnist.yaml", ("stabilizers.spectral_norm=true", "stabilizers.ema_decay=0.999"), steps),
        Row("dcgan + R1 + EMA", "dcgan-stacked-mnist.yaml", ("stabilizers.r1=1.0", "stabilizers.r1_every=4", "stabilizers.ema_decay=0.999"), steps),
    ]


def at_target(ok: list[dict]) -> str:
    hits = sum(r["metrics"]["stacked_modes"] >= 990 and r["metrics"]["stacked_kl"] < 0.1 for r in ok)
    return f"{hits}/{len(ok)}"


def main() -> None:
    parser = common_args(__doc__.splitlines()[0], default_seeds=2, default_steps=3000)
    args = parser.parse_args()
    main_loop(args, rows(args.steps), METRICS, {"seeds at target (>=990, KL<0.1)": at_target}, title=f"Stacked MNIST, {args.steps} G steps per run,")


if __name__ == "__main__":
    main()
