"""Datasets as one uint8 tensor: on the training device when it fits data.device_memory_mb, else in host
memory (a folder's memory-mapped from its decode cache), where Dataset.batch gathers each batch.

dataset: the Dataset and what its form says about it (Structure); forms: the data.dataset forms
by name and loading; images: pixel conversions; idx, sources, folder (+ folder_cache), npz, toy, stacked: the readers.
"""

from gankit.data.dataset import Dataset, Modes, Structure, per_class_subset
from gankit.data.forms import describe, load_dataset
from gankit.data.idx import read_idx
from gankit.data.images import to_model_range
from gankit.data.npz import save_npz
from gankit.data.toy import toy_modes

__all__ = ["Dataset", "Modes", "Structure", "describe", "load_dataset", "per_class_subset", "read_idx", "save_npz", "to_model_range", "toy_modes"]
