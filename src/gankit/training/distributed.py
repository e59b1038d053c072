"""Data-parallel training over torch.distributed, started by torchrun.

Each rank trains an identical copy of G and D on its shard of every global batch; gradients are
averaged across ranks after each backward pass, so every rank takes the same optimizer step as a
single process would on the whole batch. Gradients are all-reduced by hand (one flat buffer per
network) rather than through the DistributedDataParallel wrapper, as StyleGAN2-ADA does: a GAN
step backpropagates through D without updating it, differentiates D's input gradients for
GP/R1, and updates bf16 compute copies, none of which fit DDP's one-forward-one-backward hooks.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from gankit.errors import GankitError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, samples and checkpoints."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


SINGLE = World()


def world_from_env(device_name: str) -> tuple[World, str]:
    """The world torchrun describes in the environment (WORLD_SIZE, RANK, LOCAL_RANK), joined, and the
    device this rank should use: cuda:LOCAL_RANK with NCCL on GPUs, the CPU with gloo otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return SINGLE, device_name
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(world.local_rank)
        device_name = f"cuda:{world.local_rank}"
    elif device_name == "auto":
        device_name = "cpu"
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
        except (RuntimeError, ValueError) as err:
            raise GankitError(f"could not join the torchrun group (rank {world.rank} of {size}): {str(err).splitlines()[0]}") from None
    return world, device_name


def leave(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(parameters: Iterable[nn.Parameter], world: World) -> None:
    """Replace each gradient by its mean over the ranks (one all-reduce over a flat buffer)."""
    if world.size == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    for grad, averaged in zip(grads, flat.split([g.numel() for g in grads])):
        grad.copy_(averaged.view_as(grad))


def average(tensor: Tensor, world: World) -> Tensor:
    """The mean of `tensor` over the ranks (for logged statistics)."""
    if world.size > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        tensor /= world.size
    return tensor


@torch.no_grad()
def broadcast_module(module: nn.Module, world: World) -> None:
    """Make every rank start from rank 0's weights and buffers."""
    if world.size == 1:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor, 0)
