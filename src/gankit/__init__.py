"""gankit: train generative adversarial networks, watch them train, and use them.

    import gankit
    result = gankit.train("reference-fashion", out_dir="runs/demo", overrides=["train.epochs=1"])
    generator = gankit.load(result.run_dir)
    images, _ = gankit.sample(generator, 64)
"""

from gankit._version import __version__
from gankit.config import Config, load_config
from gankit.models.sampling import sample
from gankit.runs import info, load
from gankit.training.run import train

__all__ = ["Config", "info", "load", "load_config", "sample", "train", "__version__"]
