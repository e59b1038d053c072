"""Issue 16: a run folder is never lost or silently wrong (locking, honest resume, Ctrl-C, bad configs),
and bad input to the CLI is one line, never a traceback."""

import os
import signal
import subprocess
import sys
import time

import pytest

from gankit.cli import main
from gankit.training import checkpoint as ckpt
from gankit.training.run import train

from .conftest import REPO

TOY_CONFIG = str(REPO / "configs" / "toy-ring8.yaml")
TOY = ["data.generated_samples=1024", "train.epochs=1", "train.checkpoint_every=1", "watchdog.every_epochs=0"]  # 4 steps
ENDLESS = ["data.generated_samples=1024", "train.epochs=100000", "train.log_every=1", "watchdog.every_epochs=0"]


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gankit: error:"), err
    return lines[0]


def start_training(run_dir, *extra):
    """A `gankit train` in its own process that runs until stopped; returns once it has logged a step."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "gankit", "train", "--config", TOY_CONFIG, "--out", str(run_dir), "--device", "cpu", *ENDLESS, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    deadline = time.monotonic() + 120
    while not (run_dir / "metrics.jsonl").is_file() or not (run_dir / "metrics.jsonl").read_text().strip():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training did not log a step in 120 s"
        time.sleep(0.2)
    return process


def stop(process) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


@pytest.fixture
def toy_run(tmp_path):
    return train(TOY_CONFIG, tmp_path / "run", overrides=TOY, max_steps=2, progress=False).run_dir


# --- item 1: one trainer per run folder -------------------------------------------------------------
def test_a_second_trainer_or_a_resume_on_a_folder_in_training_stops_with_one_line(tmp_path, capsys):
    run_dir = tmp_path / "busy"
    process = start_training(run_dir)
    try:
        for argv in (["train", "--config", TOY_CONFIG, "--out", str(run_dir), *TOY], ["train", "--resume", str(run_dir)]):
            assert main(argv) == 2
            assert "is in use by another `gankit train`" in one_error_line(capsys.readouterr().err)
    finally:
        stop(process)


# --- item 5: Ctrl-C saves ------------------------------------------------------------------------------
def test_ctrl_c_saves_a_checkpoint_and_says_where(tmp_path):
    run_dir = tmp_path / "interrupted"
    process = start_training(run_dir)
    status, err = stop(process)
    assert status == 130, err
    assert "Traceback" not in err
    saved = ckpt.list_checkpoints(run_dir / "checkpoints")
    assert len(saved) == 1, err
    assert f"saved {saved[0]}" in err.strip().splitlines()[-1]
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    step = ckpt.load_checkpoint(saved[0])[1]["step"]
    assert train(resume=run_dir, max_steps=step + 1, progress=False).step == step + 1


# --- item 2: overrides on --resume ------------------------------------------------------------------
def test_resume_with_a_new_learning_rate_trains_with_it(toy_run):
    resumed = train(resume=toy_run, overrides=["optim.lr_g=0.5", "optim.beta1=0.1"], max_steps=3, progress=False)
    state = ckpt.load_checkpoint(resumed.checkpoint)[1]
    assert state["opt_g_groups"][0]["lr"] == 0.5
    assert state["opt_d_groups"][0]["lr"] == 1e-3
    assert state["opt_g_groups"][0]["betas"][0] == 0.1


@pytest.mark.parametrize("override", ["model.width=256", "loss.name=hinge", "optim.optimizer=rmsprop", "data.dataset=toy:grid25"])
def test_resume_refuses_an_override_that_cannot_apply_and_leaves_config_untouched(toy_run, override, capsys):
    before = (toy_run / "config.yaml").read_bytes()
    assert main(["train", "--resume", str(toy_run), override]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{override.split('=')[0]} cannot change when resuming" in line
    assert (toy_run / "config.yaml").read_bytes() == before
    assert main(["train", "--resume", str(toy_run), "--max-steps", "3"]) == 0


def test_a_failing_restore_leaves_config_untouched(toy_run):
    before = (toy_run / "config.yaml").read_bytes()
    last = ckpt.list_checkpoints(toy_run / "checkpoints")[-1]
    last.write_bytes(last.read_bytes()[:-10])
    assert main(["train", "--resume", str(toy_run), "train.log_every=7"]) == 2
    assert (toy_run / "config.yaml").read_bytes() == before


# --- item 4: a bad config leaves nothing behind -------------------------------------------------------
@pytest.mark.parametrize("bad", ["data.dataset=npz:missing.npz", "data.generated_samples=100", "model.width=0"])
def test_a_bad_config_value_leaves_no_run_folder(tmp_path, monkeypatch, bad, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", TOY_CONFIG, bad]) == 2
    assert main(["train", "--config", TOY_CONFIG, "--out", "deep/new/run", bad]) == 2
    one_error_line(capsys.readouterr().err.splitlines()[0])
    assert list(tmp_path.iterdir()) == []


# --- smaller: picking the checkpoint a resume starts from ----------------------------------------------
def test_resume_from_an_earlier_checkpoint_sets_the_later_ones_aside(toy_run, capsys):
    assert main(["train", "--resume", str(toy_run), "--max-steps", "3"]) == 0
    assert main(["train", "--resume", str(toy_run), "--checkpoint", "2", "--max-steps", "4"]) == 0
    steps = [ckpt.load_checkpoint(p)[1]["step"] for p in ckpt.list_checkpoints(toy_run / "checkpoints")]
    assert steps[-1] == 4
    assert (toy_run / "checkpoints" / "superseded" / "step-00000003.safetensors").is_file()
    capsys.readouterr()
    assert main(["train", "--resume", str(toy_run), "--checkpoint", "99"]) == 2
    assert "no checkpoint of step 99" in one_error_line(capsys.readouterr().err)


def test_no_false_claim_of_a_previous_checkpoint(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("gankit.files.os.replace", disk_full)
    with pytest.raises(Exception) as caught:
        ckpt.save_checkpoint(tmp_path / "checkpoints" / "step-00000001.safetensors", {}, {})
    assert "no checkpoint had been saved yet" in str(caught.value)
    assert "previous" not in str(caught.value)


# --- new-user friction ------------------------------------------------------------------------------
def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path, monkeypatch, capsys):
    from gankit.training.callbacks import ProgressBar

    monkeypatch.setattr(ProgressBar, "every_s", 0.0)
    train(TOY_CONFIG, tmp_path / "run", overrides=[*TOY, "train.log_every=1"], max_steps=3)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gankit: step")]
    assert len(lines) == 3
    assert lines[-1].startswith("gankit: step 3/3, epoch 0, ") and "images/s, d_loss " in lines[-1] and ", ETA " in lines[-1]


def test_report_is_rewritten_after_every_epoch(toy_run):
    from gankit.training.callbacks import HtmlReport

    (toy_run / "report.html").unlink()
    HtmlReport(toy_run).on_epoch_end(None)
    assert "<html" in (toy_run / "report.html").read_text().lower()


def test_no_preset_depends_on_files_outside_the_repository():
    from gankit.config import load_config, preset_names

    for name in preset_names():
        assert "../" not in load_config(name).data.dataset, f"{name} reads a path outside a lone clone"
    assert {load_config(name).data.dataset for name in preset_names() if name.endswith("stacked-mnist")} == {"stacked-mnist"}


def test_a_damaged_newest_checkpoint_points_to_the_way_back(toy_run, capsys):
    assert main(["train", "--resume", str(toy_run), "--max-steps", "3"]) == 0
    newest = ckpt.list_checkpoints(toy_run / "checkpoints")[-1]
    payload = newest.read_bytes()
    newest.write_bytes(payload[:-1] + bytes([payload[-1] ^ 0xFF]))
    capsys.readouterr()
    assert main(["train", "--resume", str(toy_run), "--max-steps", "4"]) == 2
    assert "--checkpoint STEP" in one_error_line(capsys.readouterr().err)
    assert main(["train", "--resume", str(toy_run), "--checkpoint", "2", "--max-steps", "4"]) == 0
