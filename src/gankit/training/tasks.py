"""The trainer of each config `task`: `gankit train` starts it, runs.open_checkpoint rebuilds its networks."""

from __future__ import annotations

from gankit.training.paired import PairedTrainer
from gankit.training.semi import SemiSupervisedTrainer
from gankit.training.trainer import Trainer

TRAINERS: dict[str, type[Trainer]] = {"generate": Trainer, "restore": PairedTrainer, "classify": SemiSupervisedTrainer}
