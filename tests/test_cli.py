"""The CLI as a user meets it: outputs land where it says, and mistakes get one line and exit 2."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gankit.cli import main
from gankit.config import DataConfig
from gankit.data import load_dataset, save_npz


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    save_npz(root / "tiny.npz", rng.integers(0, 256, (64, 1, 28, 28), dtype=np.uint8))
    run = root / "run"
    code = main(["train", "--config", "configs/reference-fashion.yaml", "--out", str(run), "--max-steps", "3",
                 f"data.dataset=npz:{root / 'tiny.npz'}", "train.batch_size=16"])
    assert code == 0
    return run


def test_train_prints_where_things_are(image_run, capsys):
    code = main(["train", "--config", "configs/toy-ring8.yaml", "--out", str(image_run.parent / "toy"), "--max-steps", "2", "data.generated_samples=1024"])
    out = capsys.readouterr().out
    assert code == 0
    for label in ("run folder:", "samples:", "loss plot:", "checkpoint:"):
        assert label in out
    assert (image_run.parent / "toy" / "samples" / "final.png").exists()


def test_sample_writes_what_it_says(image_run, tmp_path, capsys):
    code = main(["sample", str(image_run), "-n", "10", "--grid", str(tmp_path / "grid.png"),
                 "--out-dir", str(tmp_path / "pngs"), "--npz", str(tmp_path / "s.npz")])
    assert code == 0
    out = capsys.readouterr().out
    assert "grid of 10" in out and "10 PNGs" in out
    assert Image.open(tmp_path / "grid.png").size == (4 * 30 + 2, 3 * 30 + 2)  # 4 x 3 tiles of 28 px + 2 px gaps
    singles = sorted((tmp_path / "pngs").iterdir())
    assert len(singles) == 10 and all(Image.open(p).size == (28, 28) for p in singles)
    again = load_dataset(DataConfig(dataset=f"npz:{tmp_path / 's.npz'}"))
    assert again.samples.shape == (10, 1, 28, 28) and again.labels is None
    # the PNGs and the arrays hold the same pixels
    assert np.array_equal(np.asarray(Image.open(singles[3])), again.samples[3, 0].numpy())


def test_sample_is_repeatable_by_seed(image_run, tmp_path):
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main(["sample", str(image_run), "-n", "4", "--seed", seed, "--npz", str(tmp_path / f"{name}.npz")]) == 0
    a, b, c = (np.load(tmp_path / f"{name}.npz")["images"] for name in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_info(image_run, capsys):
    assert main(["info", str(image_run)]) == 0
    out = capsys.readouterr().out
    assert "mlp-reference" in out and "step" in out and "1486352" in out
    assert "fp32 (asked: fp32)" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--config", "configs/reference-fashion.yaml", "train.epochz=1"], "unknown config key 'train.epochz'"),
        (["train", "--config", "configs/reference-fashion.yaml", "data.dataset=idx:/no/such/folder"], "/no/such/folder"),
        (["train", "--config", "configs/reference-fashion.yaml", "data.dataset=cifar"], "unknown dataset 'cifar'"),
        (["train", "--config", "nope.yaml"], "config file nope.yaml not found"),
        (["train"], "give --config"),
        (["sample", "/no/such/run", "--grid", "x.png"], "neither a run folder nor a checkpoint file"),
        (["info", "/no/such/run"], "neither a run folder nor a checkpoint file"),
    ],
)
def test_mistakes_get_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gankit: error: ") and message in err and err.count("\n") == 1


def test_best_checkpoint_absent_and_unwritable_output(image_run, tmp_path, capsys):
    assert main(["sample", str(image_run), "--checkpoint", "best", "--grid", str(tmp_path / "g.png")]) == 2
    assert "no best checkpoint" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    argv = ["train", "--config", "configs/toy-ring8.yaml", "--out", str(blocker / "run"), "data.generated_samples=1024"]
    assert main(argv) == 2
    assert "cannot create run folder" in capsys.readouterr().err


def test_installed_entry_point_exit_code(tmp_path):
    done = subprocess.run([sys.executable, "-m", "gankit", "info", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("gankit: error:") and len(done.stderr.strip().splitlines()) == 1


class Trap:
    """Unpickling this runs a shell command: what a booby-trapped checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickled_checkpoints_are_refused_and_never_executed(image_run, tmp_path, capsys):
    import torch

    marker = tmp_path / "pwned"
    trap = tmp_path / "trap.pt"
    torch.save({"body.0.weight": Trap(marker)}, trap)
    grid = str(tmp_path / "g.png")
    assert main(["sample", str(image_run), "--checkpoint", str(trap), "--grid", grid]) == 2
    assert "pickle" in capsys.readouterr().err
    assert main(["sample", str(image_run), "--checkpoint", str(trap), "--grid", grid, "--trust"]) == 2
    assert "refused even with --trust" in capsys.readouterr().err
    assert not marker.exists()

    from gankit.runs import load

    generator = load(image_run)
    plain = tmp_path / "g.pt"
    torch.save({name: value + 1 for name, value in generator.state_dict().items()}, plain)
    assert main(["sample", str(image_run), "--checkpoint", str(plain), "--npz", str(tmp_path / "a.npz")]) == 2
    assert main(["sample", str(image_run), "--checkpoint", str(plain), "--npz", str(tmp_path / "a.npz"), "--trust"]) == 0
    assert main(["sample", str(image_run), "--npz", str(tmp_path / "b.npz")]) == 0
    assert not np.array_equal(np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "b.npz")["images"])
