"""Numeric precision of a training step, and the fall-back to fp32 where a lower one does not pay.

- `fp32`: plain float32.
- `bf16-mixed`: autocast to bfloat16 (CPU and GPU); weights, gradients and Adam stay float32.
- `bf16`: float32 master weights in the optimizer, a bfloat16 copy of each network for the forward
  and backward passes, re-copied after every optimizer step. No per-layer casts inside the step
  beyond the float32 islands below, which is what makes it faster than autocast at small batches
  on CPUs with bf16 matrix units.
- `fp16-mixed`: autocast to float16 with a gradient scaler (CUDA only).

Float32 islands, in the spirit of torch.autocast's float32 op list, under both bf16 modes:
normalization layers keep float32 weights and running statistics, as do `models.common.RunningMean`
statistics (a bfloat16 running average stops moving once momentum * (batch stat - running stat)
is below half its 8-bit mantissa's step, and sampling in eval mode reads those statistics), and
the bounded output layers, Sigmoid and Tanh, compute and return float32: a bfloat16 Sigmoid
rounds every probability above 0.998 to exactly 1, which zeroes the BCE gradient of that sample,
and Tanh's gradient 1 - y^2 from a bfloat16 y beyond +-0.9 (where a generator draws backgrounds)
is off by a median 7%, and is exactly 0 nearest +-1.
Inputs enter each network in float32 and are rounded at its door, so z, instance noise and
penalty interpolations are float32. What each of these is worth: benchmarks/precision_suspects.py,
benchmarks/precision_quality.py, docs/speed.md.

`bf16` and `bf16-mixed` fall back to fp32 (with a warning) where bfloat16 matrix products are
not faster than float32 ones, as measured at start: a CPU without AVX512-BF16/AMX emulates them at
a fraction of the fp32 rate, and even a CPU with AVX512-BF16 can run torch's bf16 products slower
than its fp32 ones (docs/speed.md has both kinds).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import time
import warnings
from collections.abc import Iterator
import torch
from torch import Tensor, nn

from gankit.config import PrecisionName
from gankit.errors import ConfigError
from gankit.models.common import RunningMean
from gankit.training.distributed import SINGLE, World, average_gradients

MIN_BF16_SPEEDUP = 1.2  # below this, bf16's rounding is not worth it
PROBE_PRODUCTS = 4  # per timed repeat: enough work that a GPU's launch latency does not decide


@functools.cache
def bf16_speedup(device_type: str) -> float:
    """How much faster a bf16 matrix product of a typical layer shape runs than an fp32 one on this
    device (CPU or the current CUDA device), measured."""
    device = torch.device(device_type)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return 0.0
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # the ratio is a property of the cores' units; one thread is not stalled by a neighbour taking a core
    try:
        return _product_time_ratio(device)
    finally:
        torch.set_num_threads(threads)


def _product_time_ratio(device: torch.device) -> float:
    shapes = ((128, 1024), (1024, 1024))
    operands = {dtype: tuple(torch.randn(shape, dtype=dtype, device=device) for shape in shapes) for dtype in (torch.float32, torch.bfloat16)}
    best = dict.fromkeys(operands, float("inf"))
    for _ in range(5):  # the two precisions take turns, so a busy spell on a shared machine slows both, not one
        for dtype, (a, b) in operands.items():
            a @ b
            synchronize(device)
            start = time.perf_counter()
            for _ in range(PROBE_PRODUCTS):
                a @ b
            synchronize(device)
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so a clock around it measures the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def effective_precision(requested: PrecisionName, device: torch.device, fallback: bool = True) -> PrecisionName:
    """The precision that will actually run: `requested`, or fp32 where bf16 would be slower (unless `fallback` is off)."""
    if requested == "fp16-mixed" and device.type != "cuda":
        raise ConfigError("train.precision=fp16-mixed needs a CUDA device; on CPU use bf16 or fp32")
    if requested in ("bf16", "bf16-mixed") and fallback:
        speedup = bf16_speedup(device.type)
        if speedup < MIN_BF16_SPEEDUP:
            warnings.warn(
                f"train.precision={requested}: bfloat16 matrix products run {speedup:.2f}x the float32 rate on this {device.type}; "
                "training in fp32 instead (train.precision_fallback=false keeps bf16)",
                stacklevel=2,
            )
            return "fp32"
    return requested


NORMALIZATIONS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, RunningMean)  # RunningMean: no normalization, the same need
BOUNDED_OUTPUTS = (nn.Sigmoid, nn.Tanh)


def keep_float32_islands(network: nn.Module) -> None:
    """Make the layers on the float32 list run in float32 inside a bfloat16 (or autocast) network."""
    for module in network.modules():
        if isinstance(module, NORMALIZATIONS):
            module.float()  # bf16 inputs are fine: the CPU and CUDA kernels take mixed types
        elif isinstance(module, BOUNDED_OUTPUTS):
            module.register_forward_pre_hook(_inputs_to_float32)


def _inputs_to_float32(module: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return tuple(x.float() for x in inputs)


class NetworkUpdate:
    """One network's optimizer step under a precision: which module runs the passes, and how its
    gradients reach the float32 weights the optimizer owns."""

    def __init__(self, master: nn.Module, optimizer: torch.optim.Optimizer, precision: PrecisionName, device: torch.device, world: World = SINGLE):
        self.master = master
        self.optimizer = optimizer
        self.world = world
        self.compute = copy.deepcopy(master).to(torch.bfloat16) if precision == "bf16" else master
        self.input_dtype = compute_dtype(precision)
        if precision in ("bf16", "bf16-mixed"):
            keep_float32_islands(self.compute)
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16-mixed" else None

    def __call__(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """The compute copy's forward; float inputs are rounded to its dtype here, at the door."""
        return self.compute(x.to(self.input_dtype), labels)

    @property
    def loss_scale(self) -> float:
        """What the backward pass multiplies the loss by (input-gradient penalties divide it out)."""
        return self.scaler.get_scale() if self.scaler else 1.0

    def step(self, loss: Tensor) -> None:
        """Backward `loss` through the compute copy, average gradients over ranks, update the master weights."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler:
            self.scaler.scale(loss).backward()
            average_gradients(self.master.parameters(), self.world)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return
        if self.compute is self.master:
            loss.backward()
            average_gradients(self.master.parameters(), self.world)
            self.optimizer.step()
            return
        self.compute.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for master_param, compute_param in zip(self.master.parameters(), self.compute.parameters()):
                master_param.grad = None if compute_param.grad is None else compute_param.grad.float()
        average_gradients(self.master.parameters(), self.world)
        self.optimizer.step()
        self.sync_compute()

    @torch.no_grad()
    def sync_compute(self, buffers: bool = False) -> None:
        """Copy the master weights into the compute copy. After a step or weight clipping, weights
        only: while training, the compute copy owns the buffers (BatchNorm's running statistics,
        spectral norm's power-iteration vectors), and copying them back would reset them every
        step. After a restore, `buffers=True`."""
        if self.compute is self.master:
            return
        for compute_param, master_param in zip(self.compute.parameters(), self.master.parameters()):
            compute_param.copy_(master_param)
        if buffers:
            for compute_buffer, master_buffer in zip(self.compute.buffers(), self.master.buffers()):
                compute_buffer.copy_(master_buffer)

    @torch.no_grad()
    def sync_master_buffers(self) -> None:
        """BatchNorm statistics and spectral-norm vectors live in the compute copy: bring them home
        before anything reads the master (checkpoints, EMA, sampling)."""
        if self.compute is self.master:
            return
        for master_buffer, compute_buffer in zip(self.master.buffers(), self.compute.buffers()):
            master_buffer.copy_(compute_buffer)


@contextlib.contextmanager
def autocast(precision: PrecisionName, device: torch.device) -> Iterator[None]:
    if precision == "bf16-mixed":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    elif precision == "fp16-mixed":
        with torch.autocast(device.type, dtype=torch.float16):
            yield
    else:
        yield


def compute_dtype(precision: PrecisionName) -> torch.dtype:
    """The dtype of the inputs the compute copies take."""
    return torch.bfloat16 if precision == "bf16" else torch.float32
