"""The trainer's extension point: a Callback does something on a schedule around the loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gankit.training.trainer import Trainer


class Callback:
    """Something done on a schedule around the loop; override the moments you need.

    Under torchrun only rank 0 runs callbacks, except those that decide for every rank (a
    divergence check must stop all processes alike): they set `on_every_rank`.
    """

    on_every_rank = False

    def on_train_start(self, trainer: Trainer) -> None:
        pass

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer) -> None:
        pass

    def on_train_end(self, trainer: Trainer) -> None:
        pass
