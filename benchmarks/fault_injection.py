"""Fault injection: SIGKILL a training run again and again, resume it each time, and check that nothing broke.

    python benchmarks/fault_injection.py                   # 20 kills (the issue's bar), prints the counts
    python benchmarks/fault_injection.py --kills 4 --json  # the short version tests/test_faults.py runs

A reference run trains uninterrupted first. Then the same config (deterministic, a checkpoint
every few steps) is started as `python -m gankit train` and killed with SIGKILL, in turn: at a
random moment after it started (start-up included); at a random moment after it saved a new
checkpoint; and, after a new checkpoint, the instant the next checkpoint's temporary file
(.part) appears in checkpoints/ (polled every millisecond), i.e. in the middle of a write.
Waiting for a new checkpoint in two kills of three makes the run progress however slow the
machine's start-up is (on a loaded machine, kills timed only from start-up all landed before
the first checkpoint).
After every kill each checkpoint on disk must load (gankit.training.checkpoint.load_checkpoint
checks its content hash) and the newest one must not be older than before; then the run
continues with --resume (or starts afresh when it was killed before its first checkpoint).
Finally it runs to the end, and its last checkpoint must equal the reference's bit for bit.
Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from gankit.errors import CheckpointError
from gankit.training.checkpoint import list_checkpoints, load_checkpoint

# A small, fully deterministic run; the 256-wide MLP makes each checkpoint a few MB, so a write
# takes long enough to be hit.
CONFIG = "toy-ring8"
CHECKPOINT_EVERY = 5
OVERRIDES = (
    "data.generated_samples=12800",
    "model.width=256",
    "train.epochs=4",  # 50 steps an epoch: 200 steps
    "train.deterministic=true",
    f"train.checkpoint_every={CHECKPOINT_EVERY}",
    "train.log_every=5",
    "train.keep_checkpoints=3",
)
POLL_S = 0.001


@dataclass
class Counts:
    kills: int = 0
    kills_during_write: int = 0
    resumes: int = 0
    fresh_restarts: int = 0
    failed_starts: int = 0
    finished_before_kill: int = 0
    files_checked: int = 0
    unreadable_files: int = 0
    went_backwards: int = 0
    temp_files_left: int = 0
    identical: bool = False

    @property
    def ok(self) -> bool:
        return self.identical and not (self.unreadable_files or self.failed_starts or self.went_backwards)


def train_command(run_dir: Path) -> list[str]:
    base = [sys.executable, "-m", "gankit", "train", "--device", "cpu"]
    if list_checkpoints(run_dir / "checkpoints"):
        return base + ["--resume", str(run_dir)]
    return base + ["--config", CONFIG, "--out", str(run_dir), *OVERRIDES]


def start(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(train_command(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_training(process: subprocess.Popen, run_dir: Path, started: float) -> bool:
    """True once the process has (re)written config.yaml, i.e. imported everything and begun; False if it exited."""
    config = run_dir / "config.yaml"
    while process.poll() is None:
        if config.exists() and config.stat().st_mtime >= started:
            return True
        time.sleep(0.01)
    return False


def wait_for_write(process: subprocess.Popen, folder: Path, timeout: float) -> None:
    """Return the moment a checkpoint temp file appears (or after `timeout`, or when the process ends)."""
    end = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < end:
        try:
            if any(name.endswith(".part") for name in os.listdir(folder)):
                return
        except FileNotFoundError:
            pass
        time.sleep(POLL_S)


def wait_for_progress(process: subprocess.Popen, folder: Path, before: int) -> None:
    """Return once a checkpoint newer than step `before` is complete (or when the process ends)."""
    while process.poll() is None and newest_step(folder) <= before:
        time.sleep(POLL_S)


def sleep_before_kill(process: subprocess.Popen, folder: Path, seconds: float, latest_step: int) -> None:
    """Sleep `seconds`, cut short when the run ends or its newest checkpoint reaches `latest_step`."""
    end = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < end and newest_step(folder) < latest_step:
        time.sleep(0.01)


def newest_step(folder: Path) -> int:
    found = list_checkpoints(folder)
    return int(found[-1].name[5:13]) if found else 0


def check_files(folder: Path, counts: Counts) -> None:
    for path in sorted(folder.glob("*.safetensors")):
        counts.files_checked += 1
        try:
            load_checkpoint(path)
        except CheckpointError as err:
            counts.unreadable_files += 1
            print(f"UNREADABLE: {err}", file=sys.stderr)


def run_to_end(run_dir: Path) -> None:
    done = subprocess.run(train_command(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"the run in {run_dir} failed: {done.stderr.strip()[-2000:]}")


def same_weights(a: Path, b: Path) -> bool:
    (first, _), (second, _) = load_checkpoint(a), load_checkpoint(b)
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


def inject(kills: int, workdir: Path, seed: int) -> Counts:
    rng = random.Random(seed)
    counts = Counts()
    reference, victim = workdir / "reference", workdir / "killed"
    run_to_end(reference)
    train_seconds = time.time() - (reference / "config.yaml").stat().st_mtime  # from the end of start-up to the end
    # Kill times follow the reference run's speed; a run that goes faster (a load that eased) would finish
    # before its timed kill, so a timed kill comes no later than three checkpoints before the end.
    latest_timed_kill_step = newest_step(reference / "checkpoints") - 3 * CHECKPOINT_EVERY
    checkpoints = victim / "checkpoints"
    while counts.kills < kills:
        resuming = bool(list_checkpoints(checkpoints))
        before = newest_step(checkpoints)
        launched = time.time()
        process = start(victim)
        if not wait_for_training(process, victim, launched):
            counts.failed_starts += process.returncode != 0
            counts.finished_before_kill += process.returncode == 0
            print(f"process exited by itself (rc {process.returncode}): {process.stderr.read().strip()[-500:]}", file=sys.stderr)
            break
        counts.resumes += resuming
        counts.fresh_restarts += not resuming
        mode = counts.kills % 3
        if mode:  # let this start save a checkpoint first, so the run makes progress however slow start-up is
            wait_for_progress(process, checkpoints, before)
        if mode == 2:
            wait_for_write(process, checkpoints, timeout=train_seconds)
        else:
            # all random kills together cost about half a run
            sleep_before_kill(process, checkpoints, rng.uniform(0, 2 * train_seconds / (kills + 2)), latest_timed_kill_step)
        if process.poll() is not None:
            counts.finished_before_kill += process.returncode == 0
            counts.failed_starts += process.returncode != 0
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        counts.kills += 1
        counts.kills_during_write += checkpoints.is_dir() and any(name.endswith(".part") and f".{process.pid}-" in name for name in os.listdir(checkpoints))
        check_files(checkpoints, counts)
        counts.went_backwards += newest_step(checkpoints) < before
    run_to_end(victim)
    check_files(checkpoints, counts)
    counts.temp_files_left = sum(name.endswith(".part") for name in os.listdir(checkpoints))
    counts.identical = same_weights(list_checkpoints(reference / "checkpoints")[-1], list_checkpoints(checkpoints)[-1])
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to deliver (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill times")
    parser.add_argument("--workdir", type=Path, help="keep the run folders here (default: a temporary folder, removed)")
    parser.add_argument("--json", action="store_true", help="print the counts as one JSON line")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gankit-faults-"))
    try:
        counts = inject(args.kills, workdir, args.seed)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(asdict(counts)))
    else:
        print(f"kills:                    {counts.kills} ({counts.kills_during_write} during a checkpoint write)")
        print(f"resumes:                  {counts.resumes} (+ {counts.fresh_restarts} fresh starts killed before their first checkpoint)")
        print(f"failed starts:            {counts.failed_starts} (runs that finished before their kill: {counts.finished_before_kill})")
        print(f"checkpoint files checked: {counts.files_checked}, unreadable: {counts.unreadable_files}")
        print(f"newest checkpoint older after a kill: {counts.went_backwards}")
        print(f"temp files left by kills: {counts.temp_files_left} (never listed as checkpoints)")
        print(f"final weights identical to the uninterrupted run: {'yes' if counts.identical else 'no'}")
    return 0 if counts.ok and counts.kills == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
