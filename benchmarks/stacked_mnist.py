"""Stacked MNIST (1000 modes): DCGAN against the stabilized presets (PacDCGAN and others).

Modes captured and KL(generated triples || uniform) in nats over 26,000 samples, each channel
classified by gankit's shipped MNIST evaluator (RunEvaluator), mean +- std over seeds.

    python benchmarks/stacked_mnist.py --seeds 2 --steps 3000 --jobs 2 --threads 1 --out benchmarks/results/stacked_mnist.json
    python benchmarks/stacked_mnist.py --only pacdcgan --seeds 1 --steps 500

The digits come from data.dataset=stacked-mnist:idx:../shared/datasets/mnist-10k (10,000
MNIST training digits; change it with --set data.dataset=stacked-mnist for the full MNIST when it
is reachable). Rows: configs/dcgan-stacked-mnist.yaml (DCGAN at 28 px, 3 channels, width 32,
non-saturating loss, no stabilizer), configs/pacdcgan-stacked-mnist.yaml (the same with
pack=2, PacDCGAN), and the DCGAN with pack=4, with spectral norm + EMA, and with R1 + EMA; `best` is
configs/best-stacked-mnist.yaml trained for its own length (8 epochs: 12,496 D and 24,992 G updates; --steps does not apply).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CONFIGS, Row, common_args, main_loop  # noqa: E402

METRICS = ["stacked_modes", "stacked_kl", "stacked_digit_kl", "stacked_unsure_fraction"]
SHARED_DIGITS = "data.dataset=stacked-mnist:idx:../shared/datasets/mnist-10k"  # the presets default to the named (downloaded) MNIST


def rows(steps: int) -> list[Row]:
    return [
        Row("dcgan", "dcgan-stacked-mnist.yaml", (SHARED_DIGITS,), steps),
        Row("pacdcgan (pack 2)", "pacdcgan-stacked-mnist.yaml", (SHARED_DIGITS,), steps),
        Row("dcgan + pack 4", "dcgan-stacked-mnist.yaml", (SHARED_DIGITS, "stabilizers.pack=4"), steps),
        Row("dcgan + SN + EMA", "dcgan-stacked-mnist.yaml", (SHARED_DIGITS, "stabilizers.spectral_norm=true", "stabilizers.ema_decay=0.999"), steps),
        Row("dcgan + R1 + EMA", "dcgan-stacked-mnist.yaml", (SHARED_DIGITS, "stabilizers.r1=1.0", "stabilizers.r1_every=4", "stabilizers.ema_decay=0.999"), steps),
        Row("best", "best-stacked-mnist.yaml", (SHARED_DIGITS,), None),
    ]


def at_target(ok: list[dict]) -> str:
    hits = sum(r["metrics"]["stacked_modes"] >= 990 and r["metrics"]["stacked_kl"] < 0.1 for r in ok)
    return f"{hits}/{len(ok)}"


def real_data_reference(overrides: list[str], count: int = 26_000) -> dict[str, float | int]:
    """The counter on `count` freshly stacked real triples: what a perfect generator would score (the measure's floor)."""
    from gankit.config import load_config
    from gankit.data import load_dataset, to_model_range
    from gankit.metrics.evaluator import load_evaluator
    from gankit.metrics.stacked import stacked_mnist_modes

    config = load_config(CONFIGS / "best-stacked-mnist.yaml", [SHARED_DIGITS, *overrides, f"data.generated_samples={count}"])
    evaluator, _ = load_evaluator("mnist")
    return stacked_mnist_modes(to_model_range(load_dataset(config.data).samples), evaluator)


def main() -> None:
    parser = common_args(__doc__.splitlines()[0], default_seeds=2, default_steps=3000)
    parser.add_argument("--real", action="store_true", help="first score 26,000 real stacked triples (the floor of KL, the ceiling of modes)")
    args = parser.parse_args()
    if args.real:
        print(f"real data, 26,000 stacked triples: {real_data_reference(args.set)}", flush=True)
    main_loop(args, rows(args.steps), METRICS, {"seeds at target (>=990, KL<0.1)": at_target}, title=f"Stacked MNIST, {args.steps} G steps per run,")


if __name__ == "__main__":
    main()
