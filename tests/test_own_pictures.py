"""README's "Train on your own pictures": its commands, run as written on a folder of colour emoji."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from gankit.cli import main

from .conftest import REPO

EMOJI = REPO.parent / "shared" / "datasets" / "emoji-noto-64"
PER_CLASS = 12


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """A few emoji of three classes, copied as a user's folder would hold them (transparent PNGs)."""
    if not EMOJI.is_dir():
        pytest.skip(f"the emoji folder is not at {EMOJI}")
    root = tmp_path_factory.mktemp("pictures")
    for category in ("flags", "smileys-and-emotion", "food-and-drink"):
        (root / category).mkdir()
        for path in sorted((EMOJI / category).glob("*.png"))[:PER_CLASS]:
            shutil.copy(path, root / category / path.name)
    return root


def test_folder_to_samples_to_scores(pictures, tmp_path, capsys):
    run = tmp_path / "runs" / "pictures"
    main(["train", "--config", "emoji-64", f"data.dataset=folder:{pictures}", "train.batch_size=12", "--out", str(run), "--max-steps", "3"])
    main(["sample", str(run), "-n", "16", "--grid", str(tmp_path / "pictures.png")])
    grid = np.asarray(Image.open(tmp_path / "pictures.png"))
    assert grid.ndim == 3 and grid.shape[2] == 3  # colour, as the folder is
    main(["eval", str(run), "-n", "36"])
    scores = json.loads((run / "eval.json").read_text())
    assert {"pixel_memorized_fraction", "pixel_diversity"} <= scores["metrics"].keys()
    assert "gankit evaluator train --dataset folder:" in capsys.readouterr().out  # says how to get FID and the rest

    evaluator = tmp_path / "pictures.safetensors"
    main(["evaluator", "train", "--dataset", f"folder:{pictures}", "--out", str(evaluator), "--epochs", "1"])
    main(["eval", str(run), "--evaluator", str(evaluator), "-n", "36"])
    scores = json.loads((run / "eval.json").read_text())["metrics"]
    assert {"fid", "kid_mean", "precision", "recall", "coverage"} <= scores.keys()
