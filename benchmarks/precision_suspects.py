"""Where a bf16 training step loses quality: each suspect measured on its own, on Fashion-MNIST.

1. BatchNorm running statistics (fast-fashion's DCGAN G): after --steps bf16 steps, the median
   relative error of G's running mean and variance against the batch statistics its own weights
   produce on 2,048 fresh z, when the compute copy's buffers are (a) reset from the master after
   every step (gankit before the fix), (b) bfloat16, (c) float32 (now).
2. Sigmoid in bf16 (reference-fashion's D, trained --reference-steps fp32 steps): the share of D's outputs
   on real and fake images that bfloat16 rounds to exactly 0 or 1, and the relative error of the
   BCE gradient dL/dlogit computed from a bfloat16 Sigmoid.
3. Tanh in bf16 (the same run's G): the relative error of Tanh's gradient 1 - y^2 from bfloat16 y.
4. z rounded to bf16: the relative change of G(z) against G's own bf16 arithmetic error.
5. Adam and EMA read the float32 masters: the share of master weights that are not bf16 values
   after bf16 training (if the optimizer read rounded copies, all would be).
6. Losses and reductions: the dtypes of the logged losses and of D's scores in the step.

    python benchmarks/precision_suspects.py [--steps 600] [--reference-steps 2811] [--threads 1] [--out benchmarks/results/precision_suspects.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

from _common import machine_description

from gankit.config import load_config
from gankit.data import load_dataset, to_model_range
from gankit.training import precision
from gankit.training.trainer import Trainer


def trainer_for(preset: str, name: str) -> Trainer:
    config = load_config(preset, [f"train.precision={name}", "train.precision_fallback=false", "train.log_every=1000000"])
    return Trainer(config, load_dataset(config.data), torch.device("cpu"))


def median_relative_error(estimate: Tensor, truth: Tensor) -> float:
    return float(((estimate - truth).abs() / truth.abs().clamp_min(1e-6)).median())


def batchnorm_errors(steps: int, variant: str) -> dict[str, float]:
    """Suspect 1: median relative error of G's running statistics after `steps` bf16 steps."""
    saved = precision.NORMALIZATIONS
    if variant == "bf16 buffers":
        precision.NORMALIZATIONS = ()
    try:
        trainer = trainer_for("fast-fashion", "bf16")
    finally:
        precision.NORMALIZATIONS = saved
    update = trainer.update_g
    if variant == "reset after each step":
        step = update.step
        update.step = lambda loss: (step(loss), update.sync_compute(buffers=True))
    for _ in range(steps):
        trainer.train_step()
    update.sync_master_buffers()
    norms = [m for m in trainer.G.modules() if isinstance(m, nn.BatchNorm2d)]
    batch_stats: list[tuple[Tensor, Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: batch_stats.append((i[0].mean((0, 2, 3)), i[0].var((0, 2, 3))))) for m in norms]
    running = [(m.running_mean.clone(), m.running_var.clone()) for m in norms]
    with torch.no_grad():
        trainer.G.train()(torch.randn(2048, trainer.G.z_dim, generator=torch.Generator().manual_seed(5)))
    for hook in hooks:
        hook.remove()
    means = torch.tensor([median_relative_error(r[0], b[0]) for r, b in zip(running, batch_stats)])
    variances = torch.tensor([median_relative_error(r[1], b[1]) for r, b in zip(running, batch_stats)])
    return {"running_mean_error": float(means.median()), "running_var_error": float(variances.median())}


@torch.no_grad()
def saturation(trainer: Trainer) -> dict[str, float]:
    """Suspects 2-4 on an fp32-trained reference pair."""
    D, G = trainer.D, trainer.G
    real = to_model_range(trainer.data.samples[:4096]).float()
    z = torch.randn(4096, G.z_dim, generator=torch.Generator().manual_seed(6))
    fake = G(z)
    logits = torch.cat([D.head(D.features(x.flatten(1))).squeeze(1) for x in (real, fake)])
    exact = torch.sigmoid(logits)
    rounded = torch.sigmoid(logits.bfloat16()).float()
    # dL/dlogit of BCE through a Sigmoid is (p - target); a bf16 p rounds it.
    targets = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))])
    grad_error = ((rounded - targets) - (exact - targets)).abs() / (exact - targets).abs().clamp_min(1e-12)
    pre_tanh = G.body[:-1](z)
    y = torch.tanh(pre_tanh)
    tanh_grad_error = ((1 - y.bfloat16().float() ** 2) - (1 - y**2)).abs() / (1 - y**2).clamp_min(1e-12)
    near_saturation = y.abs() > 0.9  # where G draws the background and strokes of a trained image
    rounded_z = G(z.bfloat16().float())
    bf16_fake = precision.NetworkUpdate(G, trainer.opt_g, "bf16", torch.device("cpu"))(z)
    return {
        "sigmoid_outputs_rounded_to_0_or_1": float(((rounded == 0) | (rounded == 1)).float().mean()),
        "bce_logit_grad_relative_error_median": float(grad_error.median()),
        "bce_logit_grad_relative_error_p99": float(grad_error.quantile(0.99)),
        "tanh_grad_relative_error_median": float(tanh_grad_error.median()),
        "tanh_grad_relative_error_p99": float(tanh_grad_error.flatten()[:1_000_000].quantile(0.99)),
        "tanh_outputs_beyond_0.9": float(near_saturation.float().mean()),
        "tanh_grad_relative_error_median_beyond_0.9": float(tanh_grad_error[near_saturation].median()) if near_saturation.any() else 0.0,
        "z_rounding_pixel_change_median": float((rounded_z - fake).abs().median()),
        "bf16_forward_pixel_change_median": float((bf16_fake - fake).abs().median()),
    }


def masters_and_losses(trainer: Trainer) -> dict[str, object]:
    """Suspects 5-6 on a bf16-trained trainer."""
    def not_bf16(module: nn.Module) -> float:
        values = torch.cat([p.detach().flatten() for p in module.parameters()])
        return float((values != values.bfloat16().float()).float().mean())

    real = to_model_range(trainer.data.samples[:8]).float()
    return {
        "G_master_weights_not_bf16_values": not_bf16(trainer.G),
        "D_master_weights_not_bf16_values": not_bf16(trainer.D),
        "G_ema_weights_not_bf16_values": not_bf16(trainer.ema.shadow),
        "logged_loss_dtype": str(trainer._window.sums.dtype),
        "d_scores_dtype": str(trainer._critic(None)(real).dtype),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--reference-steps", type=int, default=2811, help="fp32 steps of the reference pair for suspects 2-4 (3 epochs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/precision_suspects.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, object] = {"command": " ".join(sys.argv), "machine": machine_description(torch.device("cpu")), "steps": args.steps,
                                  "reference_steps": args.reference_steps}
    for variant in ("reset after each step", "bf16 buffers", "float32 buffers"):
        result[f"batchnorm, {variant}"] = batchnorm_errors(args.steps, variant)
        print(f"1. BatchNorm running statistics, {variant}: {result[f'batchnorm, {variant}']}", flush=True)
    reference = trainer_for("reference-fashion", "fp32")
    for _ in range(args.reference_steps):
        reference.train_step()
    result["output layers"] = saturation(reference)
    print(f"2-4. output layers and z: {result['output layers']}", flush=True)
    dcgan = trainer_for("fast-fashion", "bf16")
    for _ in range(args.steps):
        dcgan.train_step()
    result["masters and losses"] = masters_and_losses(dcgan)
    print(f"5-6. masters and losses: {result['masters and losses']}", flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
