"""Faults: SIGKILL at any moment, a full disk, a divergence, a collapsing generator. Each ends in a clear
message or a recovery, and never in a damaged checkpoint."""

import json
import os
import subprocess
import sys

import pytest
import torch

from gankit.config import load_config
from gankit.data import describe
from gankit.data.toy import sample_toy, toy_modes
from gankit.errors import CheckpointError, GankitError, TrainingDiverged
from gankit.losses import Objective, build_objective
from gankit.runs import load
from gankit.training import checkpoint as ckpt
from gankit.training.callbacks import MetricsLog
from gankit.training.run import train
from gankit.training.watchdog import ModeCollapseWatchdog, ToyProbe

from .conftest import REPO

TOY = ["data.generated_samples=4096", "train.epochs=1", "train.checkpoint_every=2", "train.log_every=1"]  # 16 steps


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def lr_of(checkpoint):
    state = ckpt.load_checkpoint(checkpoint)[1]
    return state["opt_g_groups"][0]["lr"], state["opt_d_groups"][0]["lr"]


# --- divergence: roll back, lower the learning rates, go on ------------------------------------------
def nan_once_at(d_step: int, monkeypatch):
    """Make the D loss NaN at one D step of the process (counted across runs), real otherwise."""
    calls = {"n": 0}

    def patched(*args, **kwargs):
        objective = build_objective(*args, **kwargs)

        def d_loss(real, fake):
            calls["n"] += 1
            loss = objective.d_loss(real, fake)
            return loss * float("nan") if calls["n"] == d_step else loss

        return Objective(d_loss, objective.g_loss, objective.read_out)

    monkeypatch.setattr("gankit.training.trainer.build_objective", patched)


def test_divergence_rolls_back_lowers_the_learning_rates_and_the_lower_rates_survive_resume(tmp_path, monkeypatch):
    nan_once_at(6, monkeypatch)
    result = train("configs/toy-ring8.yaml", tmp_path / "run", overrides=TOY, max_steps=8, progress=False)
    assert result.step == 8
    warnings = [r for r in records(result.run_dir) if r.get("warning") == "divergence"]
    assert len(warnings) == 1 and warnings[0]["step"] == 4 and warnings[0]["rollback"] == 1
    assert "diverged by step 6" in warnings[0]["message"] and "lr_g=0.0005" in warnings[0]["message"]
    assert lr_of(result.checkpoint) == (5e-4, 5e-4)  # the preset's 1e-3, times train.divergence_lr_factor=0.5

    monkeypatch.undo()
    resumed = train(resume=result.run_dir, max_steps=8 + 2, progress=False)
    assert resumed.step == 10 and lr_of(resumed.checkpoint) == (5e-4, 5e-4)


def test_divergence_gives_up_after_the_configured_retries_with_one_clear_line(tmp_path):
    overrides = [*TOY, "train.max_abs_loss=1e-9", "train.divergence_retries=2", "train.divergence_lr_factor=0.1"]
    with pytest.raises(TrainingDiverged) as caught:
        train("configs/toy-ring8.yaml", tmp_path / "run", overrides=overrides, max_steps=8, progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "exceeds train.max_abs_loss=1e-09" in message and "gave up after 2 rollback(s)" in message
    assert "last tried lr_g=1e-05" in message  # 1e-3 lowered twice by 0.1
    rollbacks = [r for r in records(tmp_path / "run") if r.get("warning") == "divergence"]
    assert [r["rollback"] for r in rollbacks] == [1, 2]
    assert [r["step"] for r in rollbacks] == [0, 0]  # it diverged before its first checkpoint: a fresh start each time


def test_no_retries_keeps_the_plain_divergence_error(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"^training diverged by step 1: d_loss=.* exceeds train.max_abs_loss"):
        train("configs/toy-ring8.yaml", tmp_path / "run", overrides=[*TOY, "train.max_abs_loss=1e-9", "train.divergence_retries=0"],
              max_steps=8, progress=False)


def test_divergence_settings_are_validated():
    for override, pattern in (("train.divergence_lr_factor=1.5", "divergence_lr_factor"), ("train.max_abs_loss=-1", "max_abs_loss"),
                              ("watchdog.min_coverage=2", "min_coverage"), ("watchdog.every_epochs=-1", "every_epochs")):
        with pytest.raises(GankitError, match=pattern) as caught:
            load_config("configs/toy-ring8.yaml", [override])
        assert "\n" not in str(caught.value)


# --- a failing disk ----------------------------------------------------------------------------------
@pytest.mark.parametrize("failing", ["fsync", "temp file"])
def test_out_of_space_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failing):
    result = train("configs/toy-ring8.yaml", tmp_path / "run", overrides=TOY, max_steps=2, progress=False)
    before = result.checkpoint.read_bytes()

    def full_for_checkpoints(real, name_of):
        """`real`, failing with ENOSPC for a checkpoint's temp file (config.yaml is written first and must pass)."""

        def call(target, *args, **kwargs):
            if ".step-" in name_of(target):
                raise OSError(28, "No space left on device")
            return real(target, *args, **kwargs)

        return call

    if failing == "fsync":
        monkeypatch.setattr("gankit.files.os.fsync", full_for_checkpoints(os.fsync, lambda fd: os.readlink(f"/proc/self/fd/{fd}")))
    else:
        monkeypatch.setattr("gankit.files.open", full_for_checkpoints(open, str), raising=False)
    with pytest.raises(CheckpointError) as caught:
        train(resume=result.run_dir, max_steps=4, progress=False)
    assert "\n" not in str(caught.value) and "No space left on device; the previous checkpoint is untouched" in str(caught.value)
    assert ckpt.list_checkpoints(result.run_dir / "checkpoints") == [result.checkpoint]
    assert result.checkpoint.read_bytes() == before
    assert not [p for p in (result.run_dir / "checkpoints").iterdir() if p.name.startswith(".")]


def test_unwritable_run_folder_is_one_line_and_the_checkpoint_survives(tmp_path, monkeypatch):
    result = train("configs/toy-ring8.yaml", tmp_path / "run", overrides=TOY, max_steps=2, progress=False)
    before = result.checkpoint.read_bytes()

    def denied(self, record):
        raise PermissionError(13, "Permission denied", str(self.path))

    monkeypatch.setattr(MetricsLog, "write", denied)
    with pytest.raises(GankitError) as caught:
        train(resume=result.run_dir, max_steps=4, progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert f"could not write {result.run_dir / 'metrics.jsonl'}: Permission denied" in message and f"--resume {result.run_dir}" in message
    assert result.checkpoint.read_bytes() == before


def test_an_out_folder_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(GankitError, match="cannot create run folder .*; choose a writable --out"):
        train("configs/toy-ring8.yaml", blocker / "run", overrides=TOY, max_steps=1, progress=False)


# --- SIGKILL -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_at_random_moments_and_during_writes_never_breaks_a_checkpoint(tmp_path):
    """The short version of benchmarks/fault_injection.py: 4 kills (one aimed at a checkpoint write), at least two resumes."""
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fault_injection.py"), "--kills", "4", "--json", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=1800)
    assert done.stdout.strip(), done.stderr[-2000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nfault injection: {counts}")
    assert counts["kills"] == 4 and counts["failed_starts"] == 0 and counts["resumes"] >= 2
    assert counts["files_checked"] > 0 and counts["unreadable_files"] == 0 and counts["went_backwards"] == 0
    assert counts["identical"], counts
    assert done.returncode == 0


# --- the mode-collapse watchdog ------------------------------------------------------------------------
class PointsTrainer:
    """What the watchdog reads from a trainer, with given samples."""

    def __init__(self, samples, step=100, epoch=1):
        self.samples, self.step, self.epoch = samples, step, epoch

    def fixed_samples(self):
        return self.samples


def watchdog_on(samples, tmp_path, checks=2, then=None):
    """The watchdog's log records after `checks` checks of `samples` (and one more check of `then`, if given)."""
    config = load_config("configs/toy-ring8.yaml", ["watchdog.every_epochs=1", "watchdog.patience=2"])
    log = MetricsLog(tmp_path / "metrics.jsonl")
    watchdog = ModeCollapseWatchdog(config.watchdog, ToyProbe(describe("toy:ring8").modes), log)
    for epoch in range(1, checks + 1):
        watchdog.on_epoch_end(PointsTrainer(samples, step=100 * epoch, epoch=epoch))
    if then is not None:
        watchdog.on_epoch_end(PointsTrainer(then, step=100 * (checks + 1), epoch=checks + 1))
    return [json.loads(line) for line in log.path.read_text().splitlines()] if log.path.exists() else []


def test_watchdog_warns_about_a_collapsed_generator_with_numbers_and_remedies(tmp_path, capsys):
    points, modes = sample_toy("ring8", 2500, seed=0)
    collapsed = points[modes < 2]  # all of the mass on 2 of the 8 modes
    warned = watchdog_on(collapsed, tmp_path)
    assert len(warned) == 1
    record = warned[0]
    assert record["warning"] == "mode-collapse" and record["step"] == 200 and record["epoch"] == 2
    assert record["modes_covered"] == 2 and record["modes_total"] == 8
    assert record["message"].startswith("mode collapse suspected at step 200 (epoch 2): 2/8 modes covered")
    assert "stabilizers.r1=" in record["message"] and "\n" not in record["message"]
    assert "gankit: warning: mode collapse suspected" in capsys.readouterr().err


def test_watchdog_says_when_a_warned_run_covers_the_modes_again(tmp_path, capsys):
    points, modes = sample_toy("ring8", 2500, seed=0)
    records = watchdog_on(points[modes < 2], tmp_path, checks=2, then=points)
    assert [r["warning"] for r in records] == ["mode-collapse", "mode-collapse-recovered"]
    assert records[1]["step"] == 300 and records[1]["modes_covered"] == 8
    assert records[1]["message"].startswith("mode coverage recovered at step 300 (epoch 3): 8/8 modes covered")
    assert "gankit: note: mode coverage recovered" in capsys.readouterr().err


def test_watchdog_is_quiet_on_a_healthy_generator_and_after_a_single_bad_check(tmp_path):
    points, _ = sample_toy("ring8", 2500, seed=0)
    assert watchdog_on(points, tmp_path / "healthy", checks=3) == []
    blurry = points + 0.05 * torch.randn(points.shape, generator=torch.Generator().manual_seed(0))  # still learning: few near a mode, all modes
    assert watchdog_on(blurry, tmp_path / "blurry", checks=3) == []
    assert watchdog_on(torch.zeros(2500, 2) + torch.tensor([1.0, 0.0]), tmp_path / "once", checks=1) == []  # patience 2


def test_watchdog_runs_inside_training_and_only_reads_the_generator(tmp_path):
    """A watched run trains bit for bit like an unwatched one, and a collapsing toy run gets its warning line."""
    overrides = [*TOY, "train.deterministic=true", "data.generated_samples=1024"]
    plain = train("configs/toy-ring8.yaml", tmp_path / "plain", overrides=[*overrides, "watchdog.every_epochs=0"], progress=False)
    watched = train("configs/toy-ring8.yaml", tmp_path / "watched", overrides=[*overrides, "watchdog.every_epochs=1", "watchdog.patience=1"], progress=False)
    a, b = ckpt.load_checkpoint(plain.checkpoint)[0], ckpt.load_checkpoint(watched.checkpoint)[0]
    assert all(torch.equal(a[name], b[name]) for name in a)
    warnings = [r for r in records(watched.run_dir) if r.get("warning") == "mode-collapse"]
    assert len(warnings) == 1 and warnings[0]["step"] == 4  # 4 untrained steps: nothing near the modes yet


# Metz et al. 2017's ring setting (2 hidden layers of 128, z of 64, Adam 1e-4, batch 512, the plain
# non-saturating loss, no stabilizers): G sits on one mode at a time and hops between them.
METZ_RING = ["model.z_dim=64", "model.width=128", "model.depth=2", "optim.lr_g=1e-4", "optim.lr_d=1e-4", "train.batch_size=512",
             "stabilizers.r1=0", "stabilizers.ema_decay=0", "data.generated_samples=76800", "train.epochs=10", "watchdog.every_epochs=1"]


@pytest.mark.slow
def test_watchdog_flags_a_gan_that_really_collapses(tmp_path):
    """Trained, not staged: the run ends on one or two modes, and the watchdog said so on the way."""
    result = train("configs/toy-ring8.yaml", tmp_path / "metz", overrides=METZ_RING, progress=False)
    generator = load(result.run_dir)
    with torch.no_grad():
        samples = generator(torch.randn(2500, generator.z_dim, generator=torch.Generator().manual_seed(0)))
    nearest_mode = torch.cdist(samples, toy_modes("ring8")[0]).argmin(1)
    top_two_share = torch.bincount(nearest_mode, minlength=8).sort(descending=True).values[:2].sum() / 2500
    assert top_two_share > 0.9, f"the run did not collapse: only {top_two_share:.0%} of samples nearest to 2 modes"
    warnings = [r for r in records(result.run_dir) if r.get("warning") == "mode-collapse"]
    assert warnings and warnings[-1]["modes_covered"] <= 2, warnings
