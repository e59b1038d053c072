"""Speed techniques measured one at a time ("measure each; keep what wins").

Each part prints a markdown table; --out writes all figures as JSON.

- `techniques`: a lean training loop for the reference MLP pair (G 100-256-512-1024-784, D
  784-1024-512-256-1, batch --batch-size, Adam 2e-4 (0.5, 0.999)) whose techniques are switches
  (SWITCHES below). All on is gankit's step (tests/test_benchmarks.py pins it to the Trainer's
  weights after a step); each variant turns ONE technique off. The textbook
  loop and gankit's Trainer (the reference preset as shipped, whose D ends in Sigmoid, and the
  same with model.d_output=logits) run in the same rounds, as checks.
- `threads`: the all-on loop with torch.set_num_threads(1) against (2), switched in one process
  between windows; the CPU-seconds per wall-second column shows whether the second thread ran.
- `compile`: the all-on loop with torch.compile'd G and D (modes in --compile-modes) against
  eager, each mode in a fresh process with an empty inductor cache (so the warm-up seconds include
  the whole compilation) and a time limit (--compile-timeout).
- `dcgan`: gankit's Trainer on the dcgan-fashion preset, contiguous against channels_last (G, D,
  G's EMA copy and the resident data converted with .to(memory_format=torch.channels_last)).
- `memory`: resident memory (VmRSS) every 100 steps over --long-steps steps of Trainer.fit on the
  dcgan and reference presets, each in a fresh process (the two side by side); the slope after
  warm-up (first 20% of the samples dropped) in MB per 1000 steps. Flat: under FLAT_MB_PER_1000
  MB per 1000 steps.

Timing: each loop warms up, then the loops of a part take turns (round-robin, the order rotated
every round) for --repeats windows of --window-steps steps (half that for the DCGAN and the
threads part, whose loops run slower). Reported: the median images/s, and the median over rounds
of the ratio to the part's baseline computed within each round, so load drifting on a shared
machine hits every variant alike. Absolute images/s depend on what else runs; the ratios are the result.

    python benchmarks/ablation.py [--only techniques threads compile dcgan memory] [--repeats 5]
                                  [--window-steps 40] [--long-steps 3000] [--threads 1]
                                  [--out benchmarks/results/ablation.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import D_WIDTHS, G_WIDTHS, PRESETS, Z_DIM, PerItemImages, TextbookGAN, gankit_loop, make_trainer, mlp, trainer_steps  # noqa: E402

from gankit.config import load_config  # noqa: E402
from gankit.data import Dataset, load_dataset, to_model_range  # noqa: E402
from gankit.losses import build_objective  # noqa: E402
from gankit.training.hooks import Callback  # noqa: E402
from gankit.training.trainer import Trainer  # noqa: E402

# technique -> (on, off...): the first value is gankit's, the others what a textbook loop does instead.
SWITCHES: dict[str, tuple[str, ...]] = {
    "data": ("tensor-slice", "dataloader"),  # resident uint8 tensor sliced by a per-epoch permutation | per-item Dataset + DataLoader
    "d_pass": ("joint", "separate"),  # one D forward over cat(real, fake) | two forwards
    "loss": ("logits", "sigmoid-bce"),  # logsigmoid on D's logits | D ends in Sigmoid, BCE on probabilities
    "zero_grad": ("none", "zeros"),  # zero_grad(set_to_none=True) | (set_to_none=False)
    "adam": ("fused", "foreach", "for-loop"),  # Adam(fused=True) | (foreach=True) | (foreach=False)
    "host_sync": ("every-50", "every-step"),  # stats summed on the device, read every 50 steps | read every step
    "g_forward": ("reuse", "fresh"),  # G's step reuses the D step's fakes | a second G forward (the D step's under no_grad)
    "g_step_d_grads": ("frozen", "computed"),  # D's weights requires_grad=False in G's step | their gradients computed and discarded
}
ALL_ON = {name: values[0] for name, values in SWITCHES.items()}
LOG_EVERY = 50
FLAT_MB_PER_1000 = 1.0
RSS_EVERY = 100
DEVICE = torch.device("cpu")
PARTS = ("techniques", "threads", "compile", "dcgan", "memory")


class LeanGAN:
    """The reference pair trained with gankit's techniques, each switchable (SWITCHES); `compile_mode`
    wraps G and D in torch.compile (static shapes)."""

    def __init__(self, images: torch.Tensor, batch_size: int, switches: dict[str, str] | None = None, compile_mode: str | None = None, seed: int = 0):
        self.s = {**ALL_ON, **(switches or {})}
        unknown = {k: v for k, v in self.s.items() if v not in SWITCHES.get(k, ())}
        if unknown:
            raise ValueError(f"unknown switch values {unknown}; choose from {SWITCHES}")
        torch.manual_seed(seed)
        self.batch_size = batch_size
        logits = self.s["loss"] == "logits"
        self.generator = mlp(G_WIDTHS, nn.Tanh())
        self.discriminator = mlp(D_WIDTHS, nn.Identity() if logits else nn.Sigmoid())
        adam = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}[self.s["adam"]]
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=2e-4, betas=(0.5, 0.999), **adam)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999), **adam)
        self.objective = build_objective("non-saturating", "logits" if logits else "probabilities")
        self.G, self.D = self.generator, self.discriminator
        if compile_mode:
            self.G, self.D = (torch.compile(m, mode=compile_mode, dynamic=False) for m in (self.generator, self.discriminator))
        self.images = images
        self.loader = DataLoader(PerItemImages(images), batch_size=batch_size, shuffle=True, drop_last=True) if self.s["data"] == "dataloader" else None
        self.batches = iter(self.loader) if self.loader else None
        self.order, self.position = torch.randperm(len(images)), 0
        self.sums = torch.zeros(4)
        self.step = 0
        self.logged: list[float] = []

    def _real(self) -> torch.Tensor:
        if self.loader is not None:
            batch = next(self.batches, None)
            if batch is None:
                self.batches = iter(self.loader)
                batch = next(self.batches)
            return batch
        if self.position + self.batch_size > len(self.order):
            self.order, self.position = torch.randperm(len(self.images)), 0
        indices = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return to_model_range(self.images[indices]).flatten(1)

    def run(self, steps: int) -> int:
        """Train `steps` steps; returns the images consumed."""
        s, batch = self.s, self.batch_size
        set_to_none, reuse, frozen = s["zero_grad"] == "none", s["g_forward"] == "reuse", s["g_step_d_grads"] == "frozen"
        for _ in range(steps):
            real = self._real()
            with torch.set_grad_enabled(reuse):
                fake = self.G(torch.randn(batch, Z_DIM))
            if s["d_pass"] == "joint":
                real_scores, fake_scores = self.D(torch.cat([real, fake.detach()])).chunk(2)
            else:
                real_scores, fake_scores = self.D(real), self.D(fake.detach())
            d_loss = self.objective.d_loss(real_scores, fake_scores)
            self.opt_d.zero_grad(set_to_none=set_to_none)
            d_loss.backward()
            self.opt_d.step()
            if not reuse:
                fake = self.G(torch.randn(batch, Z_DIM))
            if frozen:
                self.discriminator.requires_grad_(False)
            g_loss = self.objective.g_loss(self.D(fake))
            self.opt_g.zero_grad(set_to_none=set_to_none)
            g_loss.backward()
            self.opt_g.step()
            if frozen:
                self.discriminator.requires_grad_(True)
            read_out = self.objective.read_out
            stats = torch.stack([d_loss.detach(), g_loss.detach(), read_out(real_scores.detach()).mean(), read_out(fake_scores.detach()).mean()])
            self.step += 1
            if s["host_sync"] == "every-step":
                self.logged = stats.tolist()  # what loss.item() in every step costs
            else:
                self.sums += stats
                if self.step % LOG_EVERY == 0:
                    self.logged = (self.sums / LOG_EVERY).tolist()
                    self.sums.zero_()
        return steps * batch


def to_channels_last(trainer: Trainer) -> None:
    """G, D, G's EMA copy and the resident images in channels_last (parameters converted in place,
    so the optimizers keep them)."""
    for module in (trainer.G, trainer.D, *([trainer.ema.shadow] if trainer.ema else [])):
        module.to(memory_format=torch.channels_last)
    trainer.data = dataclasses.replace(trainer.data, samples=trainer.data.samples.contiguous(memory_format=torch.channels_last))


def interleaved(loops: dict[str, Callable[[int], int]], steps: int, repeats: int, baseline: str) -> list[dict]:
    """Warm every loop up, then time them round-robin (order rotated per round); one row per loop."""
    for run in loops.values():
        run(max(5, steps // 2))
    names = list(loops)
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            wall, process = time.perf_counter(), time.process_time()
            count = loops[name](steps)
            seconds = time.perf_counter() - wall
            rates[name].append(count / seconds)
            cpu[name].append((time.process_time() - process) / seconds)
    return [
        {
            "loop": name,
            "images_per_s": statistics.median(rates[name]),
            "ratio": statistics.median(r / b for r, b in zip(rates[name], rates[baseline])),
            "cpu_per_wall": statistics.median(cpu[name]),
            "rates": rates[name],
        }
        for name in names
    ]


def print_table(title: str, rows: list[dict], baseline: str) -> None:
    print(f"\n### {title}\n")
    print(f"| loop | images/s (median) | vs {baseline} (per-round median) | CPU s per wall s |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['loop']} | {row['images_per_s']:,.0f} | {row['ratio']:.3f}x | {row['cpu_per_wall']:.2f} |", flush=True)


def part_techniques(args: argparse.Namespace, dataset: Dataset) -> dict:
    images, batch = dataset.samples, args.batch_size
    loops: dict[str, Callable[[int], int]] = {"all on": LeanGAN(images, batch).run}
    switches = {"all on": {}}
    for technique, values in SWITCHES.items():
        for off in values[1:]:
            name = f"{technique}={off}"
            loops[name] = LeanGAN(images, batch, {technique: off}).run
            switches[name] = {technique: off}
    loops["textbook loop"] = TextbookGAN(images, batch, DEVICE).run
    loops["gankit Trainer, reference preset (D ends in Sigmoid)"] = gankit_loop(PRESETS["reference"], dataset, batch, "fp32", DEVICE)[0]
    loops["gankit Trainer, reference preset, model.d_output=logits"] = trainer_steps(make_trainer(PRESETS["reference"], dataset, batch, DEVICE, ["model.d_output=logits"]))
    rows = interleaved(loops, args.window_steps, args.repeats, "all on")
    for row in rows:
        row["switches"] = {**ALL_ON, **switches[row["loop"]]} if row["loop"] in switches else None
    print_table(f"Techniques, one off at a time (reference MLP pair, batch {batch})", rows, "all on")
    return {"rows": rows}


def with_threads(threads: int, run: Callable[[int], int]) -> Callable[[int], int]:
    def timed(steps: int) -> int:
        torch.set_num_threads(threads)
        return run(steps)

    return timed


def part_threads(args: argparse.Namespace, dataset: Dataset) -> dict:
    before = torch.get_num_threads()
    loops = {f"all on, {n} thread{'s' * (n > 1)}": with_threads(n, LeanGAN(dataset.samples, args.batch_size).run) for n in (1, 2)}
    try:
        rows = interleaved(loops, max(2, args.window_steps // 2), args.repeats, "all on, 1 thread")
    finally:
        torch.set_num_threads(before)
    print_table("Threads (all on; torch.set_num_threads switched between windows)", rows, "all on, 1 thread")
    return {"rows": rows}


def compile_one(args: argparse.Namespace) -> None:
    """--compile-one MODE, in a fresh process: compile warm-up seconds, then eager against compiled."""
    dataset = load_reference_data()
    images, batch = dataset.samples, args.batch_size
    eager, compiled = LeanGAN(images, batch), LeanGAN(images, batch, compile_mode=args.compile_one)
    start = time.perf_counter()
    eager.run(3)
    eager_seconds = time.perf_counter() - start
    start = time.perf_counter()
    compiled.run(3)  # the first steps trace and compile G and D (D twice: the joint batch and G's step)
    warm_up = time.perf_counter() - start
    rows = interleaved({"eager": eager.run, f"compiled ({args.compile_one})": compiled.run}, args.window_steps, args.repeats, "eager")
    graphs = dict(torch._dynamo.utils.counters["stats"])  # unique_graphs: compilations in all, warm-up and rounds
    print(json.dumps({"mode": args.compile_one, "warm_up_s": warm_up, "eager_first_steps_s": eager_seconds, "dynamo_stats": graphs, "rows": rows}))


def part_compile(args: argparse.Namespace) -> dict:
    results = []
    for mode in args.compile_modes:
        command = [sys.executable, __file__, "--compile-one", mode, "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                   "--repeats", str(args.repeats), "--window-steps", str(args.window_steps)]
        with tempfile.TemporaryDirectory(prefix="ablation-inductor-") as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            start = time.perf_counter()
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=args.compile_timeout, env=env)
            except subprocess.TimeoutExpired:
                results.append({"mode": mode, "error": f"did not finish within --compile-timeout {args.compile_timeout} s"})
                print(f"\ncompile {mode}: {results[-1]['error']}", flush=True)
                continue
        if done.returncode:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            results.append({"mode": mode, "error": lines[-1] if lines else f"exit status {done.returncode}"})
            print(f"\ncompile {mode}: failed: {results[-1]['error']}", flush=True)
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["process_s"] = time.perf_counter() - start
        results.append(result)
        print_table(f"torch.compile, mode {mode}: warm-up (3 steps, compilation included) {result['warm_up_s']:.1f} s "
                    f"(eager: {result['eager_first_steps_s']:.2f} s), {result['dynamo_stats'].get('unique_graphs', '?')} graphs compiled",
                    result["rows"], "eager")
    return {"modes": results}


def part_dcgan(args: argparse.Namespace) -> dict:
    dataset = load_dataset(load_config(PRESETS["dcgan"]).data)
    contiguous = make_trainer(PRESETS["dcgan"], dataset, args.batch_size, DEVICE)
    channels_last = make_trainer(PRESETS["dcgan"], dataset, args.batch_size, DEVICE)
    to_channels_last(channels_last)
    loops = {"dcgan, contiguous": trainer_steps(contiguous), "dcgan, channels_last": trainer_steps(channels_last)}
    rows = interleaved(loops, max(2, args.window_steps // 2), args.repeats, "dcgan, contiguous")
    print_table(f"DCGAN preset via gankit's Trainer (batch {args.batch_size}): memory format", rows, "dcgan, contiguous")
    return {"rows": rows}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssProbe(Callback):
    def __init__(self) -> None:
        self.samples: list[tuple[int, float]] = []

    def on_log(self, trainer: Trainer, record: dict) -> None:
        self.samples.append((trainer.step, rss_mb()))


def memory_one(args: argparse.Namespace) -> None:
    """--memory-one PRESET, in a fresh process: Trainer.fit for --long-steps steps, RSS at every log line."""
    preset = args.memory_one
    dataset = load_dataset(load_config(PRESETS[preset]).data)
    epochs = args.long_steps * args.batch_size // len(dataset) + 2
    overrides = [f"train.log_every={RSS_EVERY}", "train.checkpoint_every=1000000000", f"train.epochs={epochs}"]
    trainer = make_trainer(PRESETS[preset], dataset, args.batch_size, DEVICE, overrides)
    probe = RssProbe()
    probe.samples.append((0, rss_mb()))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ablation-memory-") as run_dir:
        trainer.fit(Path(run_dir), [probe], max_steps=args.long_steps)
    seconds = time.perf_counter() - start
    steady = probe.samples[max(1, len(probe.samples) // 5) :]
    slope = statistics.linear_regression([s for s, _ in steady], [m for _, m in steady]).slope * 1000 if len(steady) >= 2 else float("nan")
    rss = [m for _, m in probe.samples]
    print(json.dumps({"preset": preset, "steps": trainer.step, "seconds": seconds, "first_mb": rss[0], "max_mb": max(rss), "last_mb": rss[-1],
                      "slope_mb_per_1000_steps": slope, "flat": abs(slope) < FLAT_MB_PER_1000, "samples": probe.samples}))


def part_memory(args: argparse.Namespace) -> dict:
    """Both presets at once (each its own process, one after the other would double the wall time;
    RSS does not depend on the speed)."""
    print(f"\n### Memory over {args.long_steps} steps of Trainer.fit (VmRSS every {RSS_EVERY} steps, fresh process each)\n")
    print("| preset | steps | first MB | max MB | last MB | slope after warm-up, MB / 1000 steps | flat | wall s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    processes = {
        preset: subprocess.Popen([sys.executable, __file__, "--memory-one", preset, "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                                  "--long-steps", str(args.long_steps)], stdout=subprocess.PIPE, text=True)
        for preset in ("dcgan", "reference")
    }
    results = []
    for preset, process in processes.items():
        out, _ = process.communicate()
        if process.returncode:
            raise RuntimeError(f"the memory run of {preset} failed (exit status {process.returncode})")
        result = json.loads(out.strip().splitlines()[-1])
        results.append(result)
        print(f"| {preset} | {result['steps']} | {result['first_mb']:.0f} | {result['max_mb']:.0f} | {result['last_mb']:.0f} | "
              f"{result['slope_mb_per_1000_steps']:+.2f} | {'yes' if result['flat'] else 'NO'} | {result['seconds']:.0f} |", flush=True)
    return {"presets": results}


def load_reference_data() -> Dataset:
    return load_dataset(load_config(PRESETS["reference"]).data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="which parts to run")
    parser.add_argument("--repeats", type=int, default=5, help="timed windows per loop (round-robin; medians reported)")
    parser.add_argument("--window-steps", type=int, default=40, help="steps per timed window (halved for the DCGAN and the threads part)")
    parser.add_argument("--long-steps", type=int, default=3000, help="steps of the memory part's runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the threads part sets 1 and 2 itself)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--compile-modes", nargs="*", default=["default", "max-autotune-no-cudagraphs"])
    parser.add_argument("--compile-timeout", type=int, default=300, help="seconds each compile mode's process may take")
    parser.add_argument("--compile-one", help=argparse.SUPPRESS)
    parser.add_argument("--memory-one", help=argparse.SUPPRESS)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.compile_one:
        compile_one(args)
        return
    if args.memory_one:
        memory_one(args)
        return
    started = time.perf_counter()
    device = f"{torch.backends.cpu.get_cpu_capability()} CPU, {os.cpu_count()} cores"
    print(f"ablation: torch {torch.__version__}, {device}, {torch.get_num_threads()} torch threads, batch {args.batch_size}, "
          f"{args.repeats} rounds of {args.window_steps}-step windows, load average {os.getloadavg()[0]:.1f}")
    result = {"command": " ".join(sys.argv), "device": device, "torch": torch.__version__, "threads": args.threads,
              "batch_size": args.batch_size, "repeats": args.repeats, "window_steps": args.window_steps,
              "load_average_at_start": os.getloadavg(), "parts": {}}
    dataset = load_reference_data() if {"techniques", "threads"} & set(args.only) else None
    runners = {
        "techniques": lambda: part_techniques(args, dataset),
        "threads": lambda: part_threads(args, dataset),
        "compile": lambda: part_compile(args),
        "dcgan": lambda: part_dcgan(args),
        "memory": lambda: part_memory(args),
    }
    for part in PARTS:
        if part in args.only:
            result["parts"][part] = runners[part]()
    result["load_average_at_end"] = os.getloadavg()
    result["wall_s"] = time.perf_counter() - started
    print(f"\n{result['wall_s']:.0f} s in all; load average at the end {os.getloadavg()[0]:.1f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
