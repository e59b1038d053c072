import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent
SHARED_MNIST = REPO.parent / "shared" / "datasets" / "mnist-10k"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


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
