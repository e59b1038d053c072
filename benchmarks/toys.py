"""2-D mixtures (toy:ring8, toy:grid25): every loss plain, then with the main stabilizers.

Modes captured, high-quality fraction and reverse KL on 2,500 samples (gankit's RunEvaluator),
mean +- std over seeds, and how many seeds reach the target (all modes, >= 95% HQ).

    python benchmarks/toys.py --seeds 3 --steps 1000 --jobs 2 --threads 1 --out benchmarks/results/toys.json
    python benchmarks/toys.py --only ring8/non-saturating --seeds 1      # a few rows
    python benchmarks/toys.py --list                                      # what the rows are

All rows share one network (configs/toy-ring8.yaml's MLP: 3 hidden layers of 128, z_dim 2,
Adam 1e-3 (0.5, 0.999), batch 256) so that the losses and stabilizers are what differ. WGAN and
WGAN-GP keep their papers' 5 critic steps per G step and get --steps/5 G steps, so every row
gets the same number of D steps (the table's "steps" column counts G steps). The `best-*`
rows are the tuned presets configs/best-ring8.yaml and configs/best-grid25.yaml as they are.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Row, common_args, main_loop  # noqa: E402

LOSSES = ("minimax", "non-saturating", "lsgan", "wgan", "wgan-gp", "hinge")
TOYS = ("ring8", "grid25")
PLAIN = ("stabilizers.r1=0", "stabilizers.ema_decay=0")
STABILIZERS = {
    "plain": (),
    "R1+EMA": ("stabilizers.r1=0.1", "stabilizers.ema_decay=0.99"),
    "pack4": ("stabilizers.pack=4",),
    "SN": ("stabilizers.spectral_norm=true",),
}
METRICS = ["modes_captured", "high_quality_fraction", "reverse_kl"]


def loss_overrides(loss: str) -> tuple[str, ...]:
    extra = ("stabilizers.n_critic=5",) if loss in ("wgan", "wgan-gp") else ()
    return (f"loss.name={loss}", *extra)


def rows(steps: int, stabilizers: list[str]) -> list[Row]:
    out = []
    for toy in TOYS:
        for loss in LOSSES:
            for stab in stabilizers:
                over = (f"data.dataset=toy:{toy}", *PLAIN, *loss_overrides(loss), *STABILIZERS[stab], "train.epochs=1000", "train.log_every=100")
                g_steps = steps // 5 if loss in ("wgan", "wgan-gp") else steps  # the same number of D steps
                out.append(Row(f"{toy}/{loss}/{stab}", "toy-ring8.yaml", over, g_steps))
        out.append(Row(f"{toy}/best", f"best-{toy}.yaml", ("train.log_every=100",), None))
    return out


def at_target(ok: list[dict]) -> str:
    hits = sum(r["metrics"]["modes_captured"] == r["metrics"]["modes_total"] and r["metrics"]["high_quality_fraction"] >= 0.95 for r in ok)
    return f"{hits}/{len(ok)}"


def main() -> None:
    parser = common_args(__doc__.splitlines()[0], default_seeds=3, default_steps=1000)
    parser.add_argument("--stabilizers", default=",".join(STABILIZERS), help=f"comma list of {', '.join(STABILIZERS)} (default all)")
    args = parser.parse_args()
    main_loop(args, rows(args.steps, args.stabilizers.split(",")), METRICS, {"seeds at target": at_target}, title="2-D toys")


if __name__ == "__main__":
    main()
