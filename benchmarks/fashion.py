"""Fashion-MNIST at a fixed CPU budget: the reference MLP and DCGAN with the main losses.

Each run trains for a fixed wall-clock budget (--seconds, on --threads torch threads) or a fixed
number of G steps (--steps), then the final generator (EMA when the preset keeps one) is scored
by gankit's RunEvaluator on 10,000 samples against 10,000 training images: FID and KID in the
shipped Fashion-MNIST evaluator's feature space (not Inception), precision, recall, classes covered.

    python benchmarks/fashion.py --seeds 2 --seconds 120 --threads 1 --jobs 2 --out benchmarks/results/fashion.json
    python benchmarks/fashion.py --only dcgan --steps 2000 --seeds 1

Rows: reference MLP (configs/reference-fashion.yaml; its Sigmoid D for the BCE loss, raw
logits for the others) and DCGAN (configs/dcgan-fashion.yaml, width 32, EMA 0.999) with
non-saturating, hinge and WGAN-GP. WGAN-GP uses its paper's recipe: 5 critic steps per G step,
lambda 10, Adam 1e-4 (0.5, 0.9), and no batch norm in DCGAN's D (the penalty is per sample).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Row, common_args, main_loop  # noqa: E402

METRICS = ["fid", "kid_mean", "precision", "recall", "classes_covered"]
WGAN_GP = ("loss.name=wgan-gp", "stabilizers.n_critic=5", "optim.lr_g=1e-4", "optim.lr_d=1e-4", "optim.beta2=0.9")


def rows(steps: int | None, seconds: float | None) -> list[Row]:
    long = ("train.epochs=100", "train.checkpoint_every=0")
    spec = [
        ("reference-mlp/non-saturating", "reference-fashion.yaml", ()),
        ("reference-mlp/hinge", "reference-fashion.yaml", ("model.d_output=logits", "loss.name=hinge")),
        ("reference-mlp/wgan-gp", "reference-fashion.yaml", ("model.d_output=logits", *WGAN_GP)),
        ("dcgan/non-saturating", "dcgan-fashion.yaml", ()),
        ("dcgan/hinge", "dcgan-fashion.yaml", ("loss.name=hinge",)),
        ("dcgan/wgan-gp", "dcgan-fashion.yaml", ("model.d_norm=none", *WGAN_GP)),
    ]
    return [Row(name, config, (*over, *long), steps, seconds) for name, config, over in spec]


def main() -> None:
    parser = common_args(__doc__.splitlines()[0], default_seeds=2, default_steps=None)
    parser.add_argument("--seconds", type=float, default=120.0, help="training wall clock per run (default 120; ignored with --steps)")
    args = parser.parse_args()
    seconds = None if args.steps else args.seconds
    main_loop(args, rows(args.steps, seconds), METRICS, title=f"Fashion-MNIST, {'%d G steps' % args.steps if args.steps else '%g s training' % seconds} per run,")


if __name__ == "__main__":
    main()
