"""gankit: train generative adversarial networks, watch them train, and use them.

    import gankit
    result = gankit.train("reference-fashion", out_dir="runs/demo", overrides=["train.epochs=1"])
    generator = gankit.load(result.run_dir)
    images, _ = gankit.sample(generator, 64)
"""

__version__ = "0.1.0"

from gankit.apps.sample import sample  # noqa: E402
from gankit.config import Config, load_config  # noqa: E402
from gankit.runs import info, load  # noqa: E402
from gankit.training.run import train  # noqa: E402

__all__ = ["Config", "info", "load", "load_config", "sample", "train", "__version__"]
