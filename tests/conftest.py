import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent
SHARED_MNIST = REPO.parent / "shared" / "datasets" / "mnist-10k"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session", autouse=True)
def folder_cache_dir(tmp_path_factory) -> Path:
    """Decoded image folders are cached in this session's temp folder, not in ~/.cache (subprocesses inherit it)."""
    folder = tmp_path_factory.mktemp("folder-cache")
    os.environ["GANKIT_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def mnist_10k() -> Path:
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST-10k not found at {SHARED_MNIST}")
    return SHARED_MNIST


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    """96 random 1x28x28 images in 3 classes: enough for a few training steps of any image model."""
    import numpy as np

    from gankit.data import save_npz

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.npz"
    save_npz(path, rng.integers(0, 256, (96, 1, 28, 28), dtype=np.uint8), rng.integers(0, 3, 96))
    return path


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> tuple[Path, Path]:
    """A conditional and an unconditional DCGAN run folder (4 classes), 2 steps each on random labelled images."""
    import numpy as np

    from gankit.cli import main
    from gankit.data import save_npz

    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    save_npz(root / "tiny.npz", rng.integers(0, 256, (48, 1, 28, 28), dtype=np.uint8), np.arange(48) % 4)
    common = ["--max-steps", "2", "--device", "cpu", f"data.dataset=npz:{root / 'tiny.npz'}", "train.batch_size=16", "model.width=8"]
    assert main(["train", "--config", "cdcgan-fashion", "--out", str(root / "cond"), *common]) == 0
    assert main(["train", "--config", "dcgan-fashion", "--out", str(root / "uncond"), *common]) == 0
    return root / "cond", root / "uncond"
