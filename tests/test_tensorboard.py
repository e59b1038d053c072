"""TensorBoard logging (optional extra): the scalars, evaluations and sample grids land in event files."""

import os

import pytest

from gankit.training.run import train

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError:
    EventAccumulator = None
    if os.environ.get("CI"):
        raise

pytestmark = pytest.mark.skipif(EventAccumulator is None, reason="the tensorboard extra is not installed")


def test_scalars_and_sample_grids_follow_the_metrics_schedule(tmp_path, tiny_npz):
    result = train("dcgan-fashion", tmp_path / "run", overrides=[
        f"data.dataset=npz:{tiny_npz}", "model.width=8", "train.batch_size=16", "train.epochs=2", "train.log_every=2",
        "train.tensorboard=true", "watchdog.every_epochs=0"], progress=False)
    events = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    steps = [event.step for event in events.Scalars("train/d_loss")]
    logged = [line for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(logged)
    assert {"train/g_loss", "train/d_real", "train/images_per_s"} <= set(events.Tags()["scalars"])
    assert len(events.Images("samples")) == 2  # one grid per epoch


def test_adas_readings_become_scalars(tmp_path):
    from gankit.records import ADA_FIELDS, train_record
    from gankit.report.tensorboard import TensorBoardWriter

    writer = TensorBoardWriter(tmp_path)
    writer.train_record(train_record(4, 0, {"d_loss": 1.0, "augment_p": 0.1, "ada_rt": 0.7}))
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert {f"train/{name}" for name in ADA_FIELDS} <= set(events.Tags()["scalars"])
    assert events.Scalars("train/augment_p")[0].value == pytest.approx(0.1)
