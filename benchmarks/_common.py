"""Shared helpers for the benchmark scripts: train one config (overrides + seed) in a run folder,
score it with the project's RunEvaluator, aggregate seeds as mean +- std, print a markdown table;
and the loops the speed benchmarks time (the textbook reference GAN, gankit's Trainer stepped).

Nothing here re-implements training or metrics: `gankit.train`, `gankit.runs.load` and
`gankit.metrics.suite.RunEvaluator` do the work.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gankit.config import DataConfig, apply_overrides, from_dict, load_config
from gankit.data import Dataset as LabelledImages
from gankit.data import load_dataset, to_model_range
from gankit.files import atomic_write
from gankit.records import kind_of, read_records
from gankit.training.precision import synchronize
from gankit.training.trainer import Trainer, resolve_device

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
# The image architectures at widths that fit a CPU budget of minutes (docs/models.md: a stylegan2 of width 8 already costs
# more FLOPs per image than a dcgan of width 32)
CPU_ARCHITECTURES = {
    "dcgan": ("model.name=dcgan", "model.width=32"),
    "resnet": ("model.name=resnet", "model.width=16"),
    "stylegan2": ("model.name=stylegan2", "model.width=8"),
}
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
MATMUL_FLAG_MARKS = ("avx", "amx", "fma", "f16c", "bf16")  # the CPU flags that decide matrix-product speed


def machine_description(device: Any) -> dict[str, Any]:
    """What a figure was measured on, read from the machine (never assumed): CPU model, core count
    and its matrix-relevant flags as the kernel reports them, torch's kernel level, and the GPU."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = [flag for flag in fields.get("flags", "").split() if any(mark in flag for mark in MATMUL_FLAG_MARKS)]
    about = {"cpu": fields.get("model name", platform.processor() or platform.machine()), "cpu_count": os.cpu_count(),
             "cpu_matmul_flags": flags, "torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if getattr(device, "type", device) == "cuda":
        about |= {"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda}
    return about


@dataclass(frozen=True)
class Row:
    """One table row: a preset plus overrides, trained for `steps` G steps or `seconds` of `clock`:
    "wall" (elapsed time) or "cpu" (the training process's CPU time, which other work on the machine
    does not eat into)."""

    name: str
    config: str
    overrides: tuple[str, ...] = ()
    steps: int | None = None
    seconds: float | None = None
    note: str = ""
    clock: str = "wall"
    score_overrides: tuple[str, ...] = ()  # applied to the config only for scoring, e.g. a fuller reference set


@dataclass
class Job:
    row: Row
    seed: int
    threads: int | None = None
    keep_dir: str | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)


def run_one(job: Job) -> dict[str, Any]:
    """Train `job.row` with `job.seed` and evaluate the final (EMA when there is one) generator."""
    import gankit
    from gankit.metrics.suite import RunEvaluator

    if job.threads:
        torch.set_num_threads(job.threads)
    row = job.row
    overrides = [*row.overrides, *job.extra, f"train.seed={job.seed}"]
    config = load_config(CONFIGS / row.config if not Path(row.config).is_absolute() else row.config, overrides)
    base = Path(job.keep_dir) if job.keep_dir else Path(tempfile.mkdtemp(prefix="gankit-bench-"))
    out = base / f"{_slug(row.name)}-seed{job.seed}" if job.keep_dir else base
    if job.keep_dir and out.exists():
        shutil.rmtree(out)
    start, start_cpu = time.perf_counter(), time.process_time()
    try:
        if row.seconds is not None:
            result = _train_for_seconds(config, out, row.seconds, row.steps, CLOCKS[row.clock])
        else:
            result = gankit.train(config, out_dir=out, max_steps=row.steps, device="cpu", progress=False)
        train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
        generator = gankit.load(result.run_dir)
        scoring = from_dict(apply_overrides(config.model_dump(mode="json"), list(row.score_overrides))) if row.score_overrides else config
        evaluation = RunEvaluator(scoring)(generator, seed=0)
        return {
            "row": row.name,
            "config": row.config,
            "overrides": overrides,
            "seed": job.seed,
            "steps": result.step,
            "train_seconds": round(train_seconds, 1),
            "train_cpu_seconds": round(train_cpu_seconds, 1),
            "eval_seconds": evaluation["seconds"],
            "metrics": evaluation["metrics"],
            "watchdog_warnings": [r["message"] for r in read_records(out / "metrics.jsonl") if kind_of(r) == "warning"],
        }
    except Exception as err:  # a diverged run (NaN stop) is a result too, not a crash of the benchmark
        return {"row": row.name, "config": row.config, "overrides": overrides, "seed": job.seed, "error": f"{type(err).__name__}: {err}"}
    finally:
        if not job.keep_dir:
            shutil.rmtree(base, ignore_errors=True)


def _train_for_seconds(config, out: Path, seconds: float, cap_steps: int | None, clock: Callable[[], float] = time.perf_counter):
    """Train in chunks of steps until `seconds` of `clock` have passed (resuming the same run)."""
    import gankit

    chunk = 10  # a short first chunk measures the rate; slow rows (n_critic 5) must not overshoot
    start = clock()
    result = gankit.train(config, out_dir=out, max_steps=chunk, device="cpu", progress=False)
    while clock() - start < seconds and (cap_steps is None or result.step < cap_steps):
        elapsed = clock() - start
        rate = result.step / elapsed
        remaining = seconds - elapsed
        target = result.step + max(1, min(int(rate * remaining), 4 * result.step))
        if cap_steps is not None:
            target = min(target, cap_steps)
        before = result.step
        result = gankit.train(resume=out, max_steps=target, device="cpu", progress=False)
        if result.step == before:  # the configured epochs are done
            break
    return result


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()


def run_rows(
    rows: list[Row],
    seeds: list[int],
    jobs: int = 1,
    threads: int | None = None,
    keep_dir: str | None = None,
    extra: tuple[str, ...] = (),
    on_result: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every (row, seed); `jobs` processes in parallel (each with `threads` torch threads).
    `on_result` sees the results so far after each run (to save partial results)."""
    work = [Job(row, seed, threads, keep_dir, extra) for row in rows for seed in seeds]
    results: list[dict[str, Any]] = []

    def done(res: dict[str, Any]) -> None:
        results.append(_report(res))
        if on_result:
            on_result(results)

    if jobs <= 1:
        for job in work:
            done(run_one(job))
        return results
    with ProcessPoolExecutor(jobs) as pool:
        for res in pool.map(run_one, work):
            done(res)
    return results


def _report(res: dict[str, Any]) -> dict[str, Any]:
    if "error" in res:
        print(f"  {res['row']} seed {res['seed']}: FAILED {res['error']}", file=sys.stderr, flush=True)
    else:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in res["metrics"].items() if not isinstance(v, (list, dict)))
        print(f"  {res['row']} seed {res['seed']}: {res['steps']} steps {res['train_seconds']} s; {shown}", file=sys.stderr, flush=True)
    return res


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_results(path: Path, args: argparse.Namespace, results: list[dict[str, Any]], complete: bool, table_text: str, device: Any = "cpu", **about: Any) -> None:
    """A benchmark's JSON: its command line, the machine and threads, its settings, whether it finished, `about`, the table and the raw results."""
    payload = {
        "command": shlex.join(["python", *sys.argv]),
        "machine": machine_description(device),
        "threads": torch.get_num_threads(),
        "settings": {key: value for key, value in vars(args).items() if key not in ("out", "keep")},
        "complete": complete,
        **about,
        "table": table_text,
        "results": results,
    }
    with atomic_write(path) as out:
        out.write((json.dumps(payload, indent=1, default=str) + "\n").encode())


def mean_std(values: list[float], digits: int | None = None) -> str:
    """'m +- s' over seeds (sample std; a single value has no spread), to `digits` decimals (default: 1 from 10 up, else 3)."""
    if not values:
        return "n/a"
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    integers = all(float(v).is_integer() for v in values)
    digits = digits if digits is not None else 1 if integers or abs(m) >= 10 else 3
    return f"{m:.{digits}f} +- {s:.{digits}f}"


def table(results: list[dict[str, Any]], metrics: list[str], extra: dict[str, Any] | None = None) -> str:
    """Markdown: one line per row (in first-seen order), each metric as mean +- std over seeds.

    `extra` maps a column title to a function of the row's successful results (e.g. 'seeds at target').
    """
    order: list[str] = []
    by_row: dict[str, list[dict[str, Any]]] = {}
    for res in results:
        if res["row"] not in by_row:
            order.append(res["row"])
            by_row[res["row"]] = []
        by_row[res["row"]].append(res)
    extra = extra or {}
    head = ["run", "seeds ok", "steps", *metrics, *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in order:
        runs = by_row[name]
        ok = [r for r in runs if "error" not in r]
        steps = sorted({r["steps"] for r in ok})
        step_text = str(steps[0]) if len(steps) == 1 else (f"{steps[0]}-{steps[-1]}" if steps else "-")
        cells = [name, f"{len(ok)}/{len(runs)}", step_text]
        for metric in metrics:
            values = [float(r["metrics"][metric]) for r in ok if metric in r["metrics"] and _finite(r["metrics"][metric])]
            cells.append(mean_std(values))
        cells += [str(fn(ok)) for fn in extra.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def common_args(description: str, default_seeds: int, default_steps: int | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, default=default_seeds, help=f"seeds 0..N-1 per row (default {default_seeds})")
    parser.add_argument("--seed-list", type=lambda s: [int(x) for x in s.split(",")], help="explicit seeds, e.g. 0,1,2 (overrides --seeds)")
    parser.add_argument("--steps", type=int, default=default_steps, help=f"G steps per run (default {default_steps})")
    parser.add_argument("--out", type=Path, help="write the raw per-seed results here as JSON")
    parser.add_argument("--only", action="append", default=[], help="run only this row (a full name) or rows whose name contains this (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (default 1)")
    parser.add_argument("--threads", type=int, help="torch threads per process (default: torch's choice)")
    parser.add_argument("--keep", help="keep run folders under this directory (default: temporary, deleted)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override for every row (repeatable)")
    return parser


def select(rows: list[Row], only: list[str]) -> list[Row]:
    if not only:
        return rows
    names = {r.name.lower() for r in rows}
    exact = {o.lower() for o in only if o.lower() in names}  # a full row name picks just that row
    loose = [o.lower() for o in only if o.lower() not in names]
    picked = [r for r in rows if r.name.lower() in exact or any(o in r.name.lower() for o in loose)]
    if not picked:
        raise SystemExit(f"--only {only} matches no row; rows: {', '.join(r.name for r in rows)}")
    return picked


def main_loop(args: argparse.Namespace, rows: list[Row], metrics: list[str], extra: dict[str, Any] | None = None, title: str = "") -> list[dict[str, Any]]:
    """The part every script shares: pick rows and seeds, run them, print the table, write JSON."""
    rows = select(rows, args.only)
    if args.list:
        for row in rows:
            print(f"{row.name}: {row.config} {' '.join(row.overrides)}")
        raise SystemExit(0)
    seeds = args.seed_list or list(range(args.seeds))
    start = time.perf_counter()

    def save(results: list[dict[str, Any]], complete: bool = False) -> None:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            payload = {
                "command": " ".join(sys.argv),
                "machine": machine_description("cpu"),
                "threads": args.threads,
                "seeds": seeds,
                "complete": complete,
                "minutes": round((time.perf_counter() - start) / 60, 2),
                "table": table(results, metrics, extra),
                "results": results,
            }
            args.out.write_text(json.dumps(payload, indent=1))

    results = run_rows(rows, seeds, args.jobs, args.threads, args.keep, tuple(args.set), on_result=save)
    elapsed = time.perf_counter() - start
    save(results, complete=True)
    print(f"\n{title} seeds {seeds}, {elapsed / 60:.1f} min in all\n" if title else "")
    print(table(results, metrics, extra))
    if args.out:
        print(f"\nraw results: {args.out}")
    return results


# --- the fixed classifier of the synthetic-data benchmarks (augmentation.py, imbalanced.py) ------------
CLASSIFIER_LR = 1e-3
EVAL_BATCH = 1000
BatchTransform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]  # (uint8 images, labels, rng) -> images


class SmallCNN(nn.Module):
    """The fixed classifier: two 3x3 conv blocks (32, 64 channels, ReLU, 2x2 max-pool), 128 hidden, dropout, 10 logits."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, num_classes),
        )  # fmt: skip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(to_model_range(images))


def train_conditional_gan(subset: list[str], seed: int, args: argparse.Namespace, device: torch.device, run_dir: Path) -> tuple[nn.Module, LabelledImages]:
    """The cdcgan-fashion preset on the training images the `subset` overrides keep, for --gan-steps G steps with
    gankit's Trainer and no run-folder callbacks (a grid and a plot per epoch would cost more than a small set's
    training); its sampling generator and the real images."""
    overrides = [
        *subset, f"data.subset_seed={seed}", f"train.seed={seed}", "train.epochs=1000000",
        f"train.checkpoint_every={args.gan_steps}", f"train.log_every={args.gan_steps}", *args.set,
    ]  # fmt: skip
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    config = load_config("cdcgan-fashion", overrides)
    real = load_dataset(config.data, seed)
    trainer = Trainer(config, real, device)
    trainer.fit(run_dir, [], max_steps=args.gan_steps)
    return trainer.sampler, real


def add_gan_classifier_args(parser: argparse.ArgumentParser) -> None:
    """The options every GAN-then-classifier benchmark (augmentation.py, imbalanced.py) shares."""
    parser.add_argument("--gan-steps", type=int, default=3000, help="G steps of the conditional GAN (default 3000)")
    parser.add_argument("--clf-steps", type=int, default=2000, help="classifier optimizer steps, the same for every condition (default 2000)")
    parser.add_argument("--clf-batch", type=int, default=64, help="classifier batch size (default 64)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--data-dir", help="folder searched first for Fashion-MNIST")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override for the GAN config (repeatable)")
    parser.add_argument("--keep", help="keep the GAN run folders under this directory (default: temporary)")


def parse_gan_classifier_args(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, torch.device, LabelledImages]:
    """Parse a GAN-then-classifier benchmark's command line; set torch's threads; the device and the Fashion-MNIST test split on it."""
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    return args, device, load_dataset(DataConfig(dataset="fashion-mnist", split="test", data_dir=args.data_dir)).to(device)


def train_classifier(
    sources: list[LabelledImages], steps: int, batch_size: int, seed: int, device: torch.device, transform: BatchTransform | None = None
) -> SmallCNN:
    """Adam for `steps` steps; each batch takes an equal share from every source, drawn with replacement,
    and goes through `transform` (on the fly augmentation) when given."""
    torch.manual_seed(seed)
    model = SmallCNN().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=CLASSIFIER_LR)
    rng = torch.Generator().manual_seed(seed)
    share = batch_size // len(sources)
    sources = [source.to(device) for source in sources]
    model.train()
    for _ in range(steps):
        picks = [torch.randint(len(source), (share,), generator=rng).to(device) for source in sources]
        images = torch.cat([source.samples[pick] for source, pick in zip(sources, picks)])
        labels = torch.cat([source.labels[pick] for source, pick in zip(sources, picks)])
        if transform is not None:
            images = transform(images, labels, rng)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model


@torch.no_grad()
def predict(model: nn.Module, test: LabelledImages) -> torch.Tensor:
    """The model's class for every test image."""
    model.eval()
    return torch.cat([model(images).argmax(1) for images in test.samples.split(EVAL_BATCH)])


def accuracy(model: nn.Module, test: LabelledImages) -> float:
    return float((predict(model, test) == test.labels).double().mean())


# --- the loops the speed benchmarks (throughput.py, ablation.py) time ------------------------------
Z_DIM = 100
G_WIDTHS = (Z_DIM, 256, 512, 1024, 784)
D_WIDTHS = (784, 1024, 512, 256, 1)
PRESETS = {"reference": "reference-fashion", "dcgan": "dcgan-fashion"}


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


class TextbookGAN:
    """The loop of a typical GAN tutorial: per-item Dataset + shuffling DataLoader, a D step on a real
    and a separate fake forward with BCELoss on Sigmoid outputs, then a G step; Adam 2e-4 (0.5, 0.999)."""

    def __init__(self, images: torch.Tensor, batch_size: int, device: torch.device, seed: int = 0):
        torch.manual_seed(seed)
        self.device = device
        self.batch_size = batch_size
        self.generator = mlp(G_WIDTHS, nn.Tanh()).to(device)
        self.discriminator = mlp(D_WIDTHS, nn.Sigmoid()).to(device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.bce = nn.BCELoss()
        self.loader = DataLoader(PerItemImages(images), batch_size=batch_size, shuffle=True, drop_last=True)
        self.batches = iter(self.loader)
        self.ones = torch.ones(batch_size, 1, device=device)
        self.zeros = torch.zeros(batch_size, 1, device=device)

    def run(self, steps: int) -> int:
        """Train `steps` steps; returns the images consumed."""
        for _ in range(steps):
            try:
                real = next(self.batches)
            except StopIteration:
                self.batches = iter(self.loader)
                real = next(self.batches)
            real = real.to(self.device)
            fake = self.generator(torch.randn(self.batch_size, Z_DIM, device=self.device))
            d_loss = self.bce(self.discriminator(real), self.ones) + self.bce(self.discriminator(fake.detach()), self.zeros)
            self.opt_d.zero_grad()
            d_loss.backward()
            self.opt_d.step()
            g_loss = self.bce(self.discriminator(fake), self.ones)
            self.opt_g.zero_grad()
            g_loss.backward()
            self.opt_g.step()
        synchronize(self.device)
        return steps * self.batch_size


def peak_memory_mb(device: torch.device) -> float:
    """This process's peak memory so far: the device allocator's on CUDA, the resident set on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def make_trainer(config_path: str, dataset, batch_size: int, device: torch.device, overrides: list[str] = ()) -> Trainer:
    """gankit's trainer on a preset at `batch_size`, logging too rarely to matter."""
    return Trainer(load_config(config_path, [f"train.batch_size={batch_size}", "train.log_every=1000000", *overrides]), dataset, device)


def trainer_steps(trainer: Trainer) -> Callable[[int], int]:
    """run(steps) -> images: `steps` training steps of `trainer`, finished on the device."""

    def run(steps: int) -> int:
        for _ in range(steps):
            trainer.train_step()
        synchronize(trainer.device)
        return steps * trainer.config.train.batch_size

    return run


def gankit_loop(config_path: str, dataset, batch_size: int, precision: str, device: torch.device) -> tuple[Callable[[int], int], str]:
    """gankit's trainer stepping on the preset in `precision` (no fall-back: the figure is that precision's
    speed here, even where a training run would fall back); returns run(steps) -> images and the precision that ran."""
    trainer = make_trainer(config_path, dataset, batch_size, device, [f"train.precision={precision}", "train.precision_fallback=false"])
    return trainer_steps(trainer), trainer.precision


# --- restoration (restoration.py: GAN inversion; restoration_trained.py: trained restorers) ----------------

RestorationBaseline = Callable[[Any, Any], Any]  # (degraded [0, 1] HxW array, hole mask) -> restored array


def classical_restorers(kind: str, noise_sigma: float = 0.0, blur_sigma: float = 0.0, wiener_balance: float = 0.005, rl_iterations: int = 10) -> dict[str, RestorationBaseline]:
    """skimage's methods for one kind of degradation (inpaint, denoise, deblur) on one [0, 1] grayscale image;
    noise_sigma is on the [-1, 1] scale, blur_sigma the known PSF's std in pixels."""
    from skimage import restoration as classical

    from gankit.degradations import GaussianBlur

    noise01 = noise_sigma / 2
    psf = GaussianBlur(blur_sigma).kernel.numpy() if blur_sigma else None
    kinds = {
        "inpaint": lambda: {"biharmonic": lambda image, hole: classical.inpaint_biharmonic(image, hole)},
        "denoise": lambda: {
            "non-local means": lambda image, _: classical.denoise_nl_means(image, patch_size=5, patch_distance=6, h=0.6 * noise01, sigma=noise01),
            "total variation": lambda image, _: classical.denoise_tv_chambolle(image, weight=0.05),
        },
        "deblur": lambda: {
            "Richardson-Lucy": lambda image, _: classical.richardson_lucy(image, psf, num_iter=rl_iterations),
            "Wiener": lambda image, _: classical.wiener(image, psf, balance=wiener_balance),
        },
    }
    return kinds[kind]()


def apply_classical(method: RestorationBaseline, observed01: Any, hole: Any) -> Any:
    """method on every image and channel of (N, H, W, C) arrays."""
    import numpy as np

    return np.stack([np.stack([method(o[..., c], h[..., c]) for c in range(o.shape[-1])], -1) for o, h in zip(observed01, hole)])


def to_unit(images: torch.Tensor) -> Any:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) float64 in [0, 1]."""
    return ((images.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).double().cpu().numpy()


def from_unit(images: Any) -> torch.Tensor:
    """(N, H, W, C) in [0, 1] -> (N, C, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().clamp(0, 1) * 2 - 1


def hole_of(degradation: Any, truth: torch.Tensor) -> Any:
    """(N, H, W, C) bool: the pixels the degradation hides (inpainting baselines fill these)."""
    return (1 - degradation.known(truth)).bool().expand_as(truth).permute(0, 2, 3, 1).cpu().numpy()


def restoration_scores(restored: Any, truth: Any, classify: Callable[[Any], float] | None = None) -> dict[str, float]:
    """Mean PSNR and SSIM (skimage.metrics, on [0, 1]) over the images, and the evaluator's accuracy when given."""
    import numpy as np
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnr = [peak_signal_noise_ratio(t, np.clip(r, 0, 1), data_range=1.0) for r, t in zip(restored, truth)]
    ssim = [structural_similarity(t, np.clip(r, 0, 1), data_range=1.0, channel_axis=2) for r, t in zip(restored, truth)]
    result = {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim))}
    if classify is not None:
        result["class_acc"] = classify(restored)
    return result


def fashion_classifier(labels: torch.Tensor, shape: tuple[int, ...]) -> Callable[[Any], float] | None:
    """Accuracy of the shipped Fashion-MNIST evaluator on [0, 1] (N, H, W, C) images; None unless 1x28x28."""
    from gankit.metrics.evaluator import load_evaluator
    from gankit.metrics.features import extract

    if shape != (1, 28, 28):
        return None
    evaluator, _ = load_evaluator("fashion-mnist")

    def accuracy(images: Any) -> float:
        _, logits = extract(evaluator, from_unit(images))
        return float((logits.argmax(1) == labels).float().mean())

    return accuracy


def report_restoration(out: Path, fields: dict[str, Any], started: float, text: str, heading: str, strips: str) -> None:
    """Write the results JSON (the command, `fields`, minutes, the table) atomically and print the table."""
    payload = {"command": " ".join([Path(sys.executable).name, *sys.argv]), **fields, "minutes": round((time.perf_counter() - started) / 60, 2), "table": text}
    with atomic_write(out) as file:
        file.write((json.dumps(payload, indent=1) + "\n").encode())
    print(f"\n{heading}\n\n{text}\n\nresults: {out}; strips: {strips}")
