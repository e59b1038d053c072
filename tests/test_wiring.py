"""Each loss and stabilizer is wired into the trainer's step: one step on a fixed setup, watched at D's
inputs and outputs, gives exactly the loss, penalty, perturbation or update size the option promises.

The expectations are computed here from the papers' formulas, not with gankit's own functions,
so a step that skips or mis-scales a piece fails."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gankit.config import load_config
from gankit.data import load_dataset
from gankit.training.hooks import Callback
from gankit.training.trainer import Trainer

BATCH = 1024
TOY = ["data.generated_samples=4096", f"train.batch_size={BATCH}", "model.width=32", "model.depth=2",
       "stabilizers.r1=0", "stabilizers.ema_decay=0", "watchdog.every_epochs=0", "train.log_every=1"]


class Recorder(Callback):
    """Keeps the logged records (one per step with train.log_every=1)."""

    def __init__(self):
        self.records = []

    def on_log(self, trainer, record):
        self.records.append(record)


class Watched:
    """A trainer with every D call (input, output) and every D update's total loss recorded, and D's
    and G's weights as they were before the step."""

    def __init__(self, tmp_path, overrides, preset="configs/toy-ring8.yaml"):
        config = load_config(preset, [*TOY, *overrides] if "toy" in preset else overrides)
        self.trainer = Trainer(config, load_dataset(config.data, 0), torch.device("cpu"))
        self.tmp_path = tmp_path
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.totals: list[torch.Tensor] = []
        self.D0 = copy.deepcopy(self.trainer.D)
        self.G0 = copy.deepcopy(self.trainer.G)
        self.trainer.D.register_forward_hook(lambda module, args, output: self.calls.append((args[0].detach().clone(), output.detach().clone())))
        step = self.trainer.update_d.step

        def record_total(loss):
            self.totals.append(loss.detach().clone())
            step(loss)

        self.trainer.update_d.step = record_total

    def run_one_step(self) -> dict:
        recorder = Recorder()
        self.trainer.fit(self.tmp_path, [recorder], max_steps=self.trainer.step + 1)
        return recorder.records[-1]

    def d_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(real, fake) scores of the D step's joint pass."""
        return self.calls[0][1].chunk(2)

    def d_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.calls[0][0].chunk(2)


def watch_g(watched: Watched) -> None:
    watched.g_output = None

    def keep(module, args, output):
        if watched.g_output is None:
            watched.g_output = output.detach().clone()

    watched.trainer.G.register_forward_hook(keep)


def input_gradients(D: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x)
    return grad.flatten(1)


def logsig(x):
    return F.logsigmoid(x)


LOSSES = {  # name: (D's loss of (real, fake) scores, G's loss of fake scores), as the papers write them
    "minimax": (lambda r, f: -logsig(r).mean() - logsig(-f).mean(), lambda f: logsig(-f).mean()),
    "non-saturating": (lambda r, f: -logsig(r).mean() - logsig(-f).mean(), lambda f: -logsig(f).mean()),
    "lsgan": (lambda r, f: 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f**2).mean(), lambda f: 0.5 * ((f - 1) ** 2).mean()),
    "wgan": (lambda r, f: f.mean() - r.mean(), lambda f: -f.mean()),
    "wgan-gp": (lambda r, f: f.mean() - r.mean(), lambda f: -f.mean()),
    "hinge": (lambda r, f: torch.relu(1 - r).mean() + torch.relu(1 + f).mean(), lambda f: -f.mean()),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_the_step_minimizes_the_named_loss_of_ds_scores(tmp_path, name):
    watched = Watched(tmp_path, [f"loss.name={name}", "stabilizers.gradient_penalty=0", "stabilizers.weight_clip=0"])
    record = watched.run_one_step()
    d_loss, g_loss = LOSSES[name]
    real, fake = watched.d_scores()
    assert record["d_loss"] == pytest.approx(d_loss(real, fake).item(), rel=1e-5, abs=1e-6)
    assert record["g_loss"] == pytest.approx(g_loss(watched.calls[-1][1]).item(), rel=1e-5, abs=1e-6)
    assert len(watched.calls) == 2, "one joint D pass in the D step, one in the G step"
    assert watched.totals[0].item() == pytest.approx(record["d_loss"], rel=1e-6), "nothing but the loss without stabilizers"


def test_a_sigmoid_d_is_read_as_probabilities(tmp_path, tiny_npz):
    """The reference D ends in Sigmoid: the BCE loss reads its outputs as D(x), not as logits."""
    watched = Watched(tmp_path, [f"data.dataset=npz:{tiny_npz}", "train.batch_size=32", "train.log_every=1", "watchdog.every_epochs=0"],
                      preset="configs/reference-fashion.yaml")
    record = watched.run_one_step()
    real, fake = watched.d_scores()
    assert 0 < real.min() and real.max() < 1
    assert record["d_loss"] == pytest.approx((-real.log().mean() - (1 - fake).log().mean()).item(), rel=1e-5)
    assert record["g_loss"] == pytest.approx(-watched.calls[-1][1].log().mean().item(), rel=1e-5)
    assert record["d_real"] == pytest.approx(real.mean().item(), rel=1e-5)


@pytest.mark.parametrize("name", ["non-saturating", "lsgan"])
def test_label_smoothing_lowers_the_real_target(tmp_path, name):
    watched = Watched(tmp_path, [f"loss.name={name}", "stabilizers.label_smoothing=0.2"])
    record = watched.run_one_step()
    real, fake = watched.d_scores()
    if name == "lsgan":
        expected = 0.5 * ((real - 0.8) ** 2).mean() + 0.5 * (fake**2).mean()
    else:
        expected = -(0.8 * logsig(real) + 0.2 * logsig(-real)).mean() - logsig(-fake).mean()
    assert record["d_loss"] == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("anneal_steps, step, std", [(0, 0, 0.3), (10, 5, 0.15)])
def test_instance_noise_perturbs_every_d_input_by_the_scheduled_std(tmp_path, anneal_steps, step, std):
    watched = Watched(tmp_path, ["stabilizers.instance_noise=0.3", f"stabilizers.instance_noise_anneal_steps={anneal_steps}"])
    watch_g(watched)
    watched.trainer.step = step
    real, _ = watched.trainer._real_batch(step)
    watched.run_one_step()
    real_in, fake_in = watched.d_inputs()
    fake = watched.g_output
    for noise in (real_in - real, fake_in - fake, watched.calls[-1][0] - fake):  # D step real and fake, G step fake
        assert noise.mean().abs() < 0.1 * std
        assert noise.std().item() == pytest.approx(std, rel=0.05)
    assert not torch.equal(real_in - real, fake_in - fake), "real and fake get independent noise"


@pytest.mark.parametrize("every, batch_index", [(1, 0), (4, 0), (4, 1)])
def test_r1_adds_gamma_over_2_times_the_real_gradient_norm_every_k_steps(tmp_path, every, batch_index):
    gamma = 3.0
    watched = Watched(tmp_path, [f"stabilizers.r1={gamma}", f"stabilizers.r1_every={every}"])
    watched.trainer.step = batch_index
    record = watched.run_one_step()
    real_in, _ = watched.d_inputs()
    penalty = input_gradients(watched.D0, real_in).pow(2).sum(1).mean()
    expected = gamma / 2 * every * penalty if batch_index % every == 0 else torch.tensor(0.0)
    assert (watched.totals[0] - record["d_loss"]).item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-7)
    if batch_index % every == 0:
        assert expected > 1e-3, "the penalty must be large enough for the test to see it"


def test_wgan_gp_adds_lambda_10_times_the_gradient_penalty_on_interpolates(tmp_path):
    watched = Watched(tmp_path, ["loss.name=wgan-gp"])
    assert watched.trainer.config.stabilizers.gradient_penalty == 10  # implied by the loss
    record = watched.run_one_step()
    real_in, fake_in = watched.d_inputs()
    interpolates = watched.calls[1][0]
    alpha = (interpolates - fake_in)[:, 0] / (real_in - fake_in)[:, 0]
    assert ((alpha >= 0) & (alpha <= 1)).all()
    assert torch.allclose(interpolates, alpha[:, None] * real_in + (1 - alpha[:, None]) * fake_in, atol=1e-5)
    penalty = (input_gradients(watched.D0, interpolates).norm(dim=1) - 1).pow(2).mean()
    assert (watched.totals[0] - record["d_loss"]).item() == pytest.approx(10 * penalty.item(), rel=1e-4)


def test_wgan_clips_every_d_weight_after_each_update(tmp_path):
    watched = Watched(tmp_path, ["loss.name=wgan"])
    assert watched.trainer.config.stabilizers.weight_clip == 0.01  # implied by the loss
    assert max(p.abs().max().item() for p in watched.trainer.D.parameters()) > 0.01
    watched.run_one_step()
    biggest = max(p.abs().max().item() for p in watched.trainer.D.parameters())
    assert biggest == pytest.approx(0.01)


def test_ttur_each_optimizer_steps_with_its_own_learning_rate(tmp_path):
    """Adam's first update moves a weight by lr times g / (|g| + eps): the largest move is the learning rate."""
    watched = Watched(tmp_path, ["optim.lr_d=4e-4", "optim.lr_g=1e-4"])
    watched.run_one_step()
    for before, after, lr in ((watched.D0, watched.trainer.D, 4e-4), (watched.G0, watched.trainer.G, 1e-4)):
        moved = max((a - b).abs().max().item() for a, b in zip(after.parameters(), before.parameters()))
        assert moved == pytest.approx(lr, rel=0.02)


def test_ema_sampler_trails_g_by_the_warmed_up_decay(tmp_path):
    watched = Watched(tmp_path, ["stabilizers.ema_decay=0.99"])
    watched.run_one_step()
    weight = 1 - min(0.99, 1 / 10)  # the first update's decay is ramped: (1 + 0) / (10 + 0)
    for shadow, before, after in zip(watched.trainer.sampler.parameters(), watched.G0.parameters(), watched.trainer.G.parameters()):
        assert torch.allclose(shadow, before + weight * (after - before), atol=1e-7)
    assert watched.trainer.sampler is not watched.trainer.G


def test_d_structure_stabilizers_are_built_into_the_trained_d(tmp_path):
    watched = Watched(tmp_path, ["stabilizers.spectral_norm=true", "stabilizers.d_dropout=0.3", "stabilizers.pack=4"])
    D = watched.trainer.D
    linears = [m for m in D.modules() if isinstance(m, nn.Linear)]
    assert linears and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in linears)
    assert [m.p for m in D.modules() if isinstance(m, nn.Dropout)] == [0.3] * watched.trainer.config.model.depth
    watched.run_one_step()
    real_scores, _ = watched.d_scores()
    assert len(real_scores) == BATCH // 4, "D judges packs of 4"


def test_n_critic_takes_that_many_d_updates_on_successive_batches(tmp_path):
    watched = Watched(tmp_path, ["stabilizers.n_critic=3"])
    watched.run_one_step()
    assert len(watched.totals) == 3
    d_step_inputs = [watched.calls[i][0].chunk(2)[0] for i in range(3)]
    expected = [watched.trainer._real_batch(i)[0] for i in range(3)]
    assert all(torch.equal(got, want) for got, want in zip(d_step_inputs, expected))
    assert math.isfinite(watched.totals[-1].item())


def image_watched(tmp_path, images, overrides, preset="configs/dcgan-fashion.yaml") -> Watched:
    """A trainer on a small image set; D without batch norm, so real and fake go through it as one batch."""
    common = [f"data.dataset=npz:{images}", "model.width=8", "model.d_norm=none", "train.batch_size=32", "train.log_every=1", "watchdog.every_epochs=0"]
    return Watched(tmp_path, [*common, *overrides], preset=preset)


def assert_cut_out(seen: torch.Tensor, clean: torch.Tensor) -> None:
    """`seen` is `clean` with a square of at most half the side zeroed in each image (clean has no exact zeros)."""
    assert (clean != 0).all()
    assert torch.equal(seen, clean * (seen != 0))
    zeros = (seen == 0).flatten(1).sum(1)
    side = clean.shape[-1] // 2
    assert (zeros > 0).all() and (zeros <= side * side * clean.shape[1]).all()


def test_diffaugment_reaches_every_d_input_real_and_fake_in_both_steps(tmp_path, tiny_npz):
    watched = image_watched(tmp_path, tiny_npz, ["stabilizers.diffaugment=cutout", "stabilizers.r1=1"])
    watch_g(watched)
    real, _ = watched.trainer._real_batch(0)
    watched.run_one_step()
    real_in, fake_in = watched.d_inputs()
    g_step_in = watched.calls[-1][0]
    assert_cut_out(real_in, real)
    assert_cut_out(fake_in, watched.g_output)
    assert_cut_out(g_step_in, watched.g_output)
    assert not torch.equal(fake_in, g_step_in), "G's step draws its own augmentation"
    assert torch.equal(watched.calls[1][0], real_in), "R1 is taken on the augmented reals D was trained on"


def force_scores(watched: Watched, scores) -> None:
    """Make D's outputs `scores(output)` from now on (keeping the graph), after Watched has recorded the real ones."""
    watched.trainer.D.register_forward_hook(lambda module, args, output: scores(output))


def test_ada_steps_p_every_interval_by_batch_times_interval_over_speed(tmp_path, tiny_npz):
    ada = ["stabilizers.diffaugment=color", "stabilizers.ada_target=0.6", "stabilizers.ada_interval=2", "stabilizers.ada_speed_images=3200"]
    watched = image_watched(tmp_path, tiny_npz, ada)
    force_scores(watched, lambda output: output + 100)  # D calls every real real: r_t = 1 > 0.6
    first, second = watched.run_one_step(), watched.run_one_step()
    assert (first["augment_p"], second["augment_p"]) == (0.0, pytest.approx(32 * 2 / 3200))
    assert second["ada_rt"] == 1.0


def test_ada_reads_a_sigmoid_ds_outputs_in_logit_space(tmp_path, tiny_npz):
    """Probabilities of 0.4 are logits below 0: r_t = -1, however positive the raw outputs are."""
    ada = ["stabilizers.diffaugment=color", "stabilizers.ada_target=0.6", "stabilizers.ada_interval=1"]
    watched = image_watched(tmp_path, tiny_npz, ada, preset="configs/reference-fashion.yaml")
    force_scores(watched, lambda output: output * 0 + 0.4)
    record = watched.run_one_step()
    assert (record["ada_rt"], record["augment_p"]) == (-1.0, 0.0)
