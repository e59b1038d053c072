"""Training throughput of the reference GAN: a textbook PyTorch loop against gankit's trainer.

Both train the exact reference pair on the same in-memory Fashion-MNIST (or MNIST-10k) images
with Adam 2e-4 (0.5, 0.999), batch 64 by default. Prints images/s of each (median of several
timed windows after warm-up), their ratio, the FLOPs one step needs (from the layer shapes), the
machine's GEMM rate at those shapes, and the fraction of that bound each loop reaches.

    python benchmarks/throughput.py [--batch-size 64] [--steps 150] [--repeats 5] [--dataset fashion-mnist]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gankit.config import load_config
from gankit.data import load_dataset
from gankit.training.trainer import Trainer

Z_DIM = 100
G_WIDTHS = (Z_DIM, 256, 512, 1024, 784)
D_WIDTHS = (784, 1024, 512, 256, 1)


class PerItemImages(Dataset):
    """The textbook Dataset: one image at a time, scaled to [-1, 1] in __getitem__."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index].float().div(127.5).sub(1).view(-1)


def mlp(widths: tuple[int, ...], last: nn.Module) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths, widths[1:])):
        layers += [nn.Linear(width_in, width_out), last if index == len(widths) - 2 else nn.ReLU()]
    return nn.Sequential(*layers)


def textbook_loop(images: torch.Tensor, batch_size: int) -> Callable[[int], int]:
    """The loop of a typical GAN tutorial; returns run(steps) -> images consumed."""
    torch.manual_seed(0)
    generator, discriminator = mlp(G_WIDTHS, nn.Tanh()), mlp(D_WIDTHS, nn.Sigmoid())
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCELoss()
    loader = DataLoader(PerItemImages(images), batch_size=batch_size, shuffle=True, drop_last=True)
    batches = iter(loader)
    ones, zeros = torch.ones(batch_size, 1), torch.zeros(batch_size, 1)

    def run(steps: int) -> int:
        nonlocal batches
        for _ in range(steps):
            try:
                real = next(batches)
            except StopIteration:
                batches = iter(loader)
                real = next(batches)
            fake = generator(torch.randn(batch_size, Z_DIM))
            d_loss = bce(discriminator(real), ones) + bce(discriminator(fake.detach()), zeros)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = bce(discriminator(fake), ones)
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
        return steps * batch_size

    return run


def gankit_loop(dataset, batch_size: int) -> Callable[[int], int]:
    config = load_config("configs/reference-fashion.yaml", [f"train.batch_size={batch_size}", "train.log_every=1000000"])
    trainer = Trainer(config, dataset, torch.device("cpu"))

    def run(steps: int) -> int:
        for _ in range(steps):
            trainer.train_step()
        trainer._window.sums.tolist()  # one host sync, as a log line would cost
        return steps * batch_size

    return run


def images_per_second(run: Callable[[int], int], steps: int, repeats: int) -> float:
    run(max(10, steps // 5))  # warm-up: allocator, Adam state, caches
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = run(steps)
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def linear_shapes(batch_size: int) -> list[tuple[int, int, int]]:
    """(batch, in, out) of every Linear in G and D."""
    return [(batch_size, a, b) for widths in (G_WIDTHS, D_WIDTHS) for a, b in zip(widths, widths[1:])]


def step_flops(batch_size: int) -> float:
    """FLOPs of one textbook step, counting 2*B*in*out per Linear forward and twice that per backward.

    D step: G forward, D forward on real and on fake, D backward for both (weights and inputs).
    G step: D forward on the fake again, D backward (inputs and weights, as the textbook loop
    computes them), G backward.
    """
    g_forward = sum(2 * b * i * o for b, i, o in linear_shapes(batch_size)[: len(G_WIDTHS) - 1])
    d_forward = sum(2 * b * i * o for b, i, o in linear_shapes(batch_size)[len(G_WIDTHS) - 1 :])
    return g_forward + 2 * d_forward + 2 * (2 * d_forward) + d_forward + 2 * d_forward + 2 * g_forward


def gemm_flops_per_second(batch_size: int, repeats: int = 30) -> float:
    """The machine's matrix-product rate at the step's shapes: for every Linear, its forward product
    (B x in) @ (in x out) and both backward ones, timed together."""
    flops, seconds = 0.0, 0.0
    for b, i, o in linear_shapes(batch_size):
        x, w, y = torch.randn(b, i), torch.randn(o, i), torch.randn(b, o)
        products = (lambda: x @ w.T, lambda: y @ w, lambda: y.T @ x)
        for product in products:
            product()
        start = time.perf_counter()
        for _ in range(repeats):
            for product in products:
                product()
        seconds += time.perf_counter() - start
        flops += repeats * 3 * 2 * b * i * o
    return flops / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=150, help="steps per timed window")
    parser.add_argument("--repeats", type=int, default=5, help="timed windows per loop (the median is reported)")
    parser.add_argument("--dataset", default="fashion-mnist", help="any gankit dataset spec of 28x28 grayscale images")
    args = parser.parse_args()
    config = load_config("configs/reference-fashion.yaml", [f"data.dataset={args.dataset}"])
    dataset = load_dataset(config.data)
    print(f"reference GAN, batch {args.batch_size}, {len(dataset)} images, torch {torch.__version__}, {torch.get_num_threads()} threads")
    textbook = images_per_second(textbook_loop(dataset.samples, args.batch_size), args.steps, args.repeats)
    ours = images_per_second(gankit_loop(dataset, args.batch_size), args.steps, args.repeats)
    flops = step_flops(args.batch_size)
    rate = gemm_flops_per_second(args.batch_size)
    bound = rate / flops * args.batch_size
    print(f"FLOPs per step (layer shapes)      {flops / 1e9:.2f} GFLOP")
    print(f"GEMM rate at these shapes          {rate / 1e9:8.0f} GFLOP/s")
    print(f"GEMM-bound rate                    {bound:8.0f} images/s")
    print(f"textbook loop                      {textbook:8.0f} images/s ({textbook / bound:.0%} of the bound)")
    print(f"gankit trainer                     {ours:8.0f} images/s ({ours / bound:.0%} of the bound)")
    print(f"gankit / textbook                  {ours / textbook:8.2f}x")


if __name__ == "__main__":
    main()
