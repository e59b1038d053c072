"""`gankit train|sample|eval|evaluator|info`: a thin shell over the Python API; user errors become one line and exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gankit.errors import GankitError


def _train(args: argparse.Namespace) -> None:
    from gankit.training.run import train

    if args.resume and args.config:
        raise GankitError("give either --config (a new run) or --resume RUN_DIR (continue one), not both")
    if not args.resume and not args.config:
        raise GankitError("give --config PRESET_OR_YAML for a new run, or --resume RUN_DIR")
    overrides = args.overrides + ([f"data.data_dir={args.data_dir}"] if args.data_dir else [])
    result = train(args.config, args.out, overrides=overrides, resume=args.resume, max_steps=args.max_steps, device=args.device)
    print(f"run folder:   {result.run_dir}")
    print(f"samples:      {result.samples}")
    print(f"loss plot:    {result.loss_plot}")
    print(f"checkpoint:   {result.checkpoint} (step {result.step})")


def _sample(args: argparse.Namespace) -> None:
    from gankit.apps.sample import sample, write_grid, write_npz, write_pngs
    from gankit.runs import open_checkpoint

    if not (args.grid or args.out_dir or args.npz):
        raise GankitError("say where to write: --grid FILE.png, --out-dir DIR and/or --npz FILE.npz")
    generator = open_checkpoint(args.run_dir, args.checkpoint, device=args.device, trust=args.trust).generator
    samples, labels = sample(generator, args.n, seed=args.seed)
    if args.grid:
        print(f"grid of {len(samples)}: {write_grid(samples, Path(args.grid))}")
    if args.out_dir:
        print(f"{len(write_pngs(samples, Path(args.out_dir)))} PNGs in {args.out_dir}")
    if args.npz:
        print(f"{len(samples)} samples: {write_npz(samples, labels, Path(args.npz))}")


def _eval(args: argparse.Namespace) -> None:
    from gankit.apps.evaluate import RunEvaluator, format_table
    from gankit.runs import open_checkpoint
    from gankit.training.checkpoint import write_atomically

    loaded = open_checkpoint(args.run_dir, args.checkpoint, trust=args.trust)
    result = RunEvaluator(loaded.config, args.evaluator)(loaded.generator, num_samples=args.n, seed=args.seed)
    result |= {"checkpoint": str(loaded.path), "step": loaded.state["step"]}
    out = Path(args.out) if args.out else (Path(args.run_dir) if Path(args.run_dir).is_dir() else Path(".")) / "eval.json"
    write_atomically(out, (json.dumps(result, indent=2) + "\n").encode())
    print(format_table(result))
    print(f"written to {out}")


def _evaluator_train(args: argparse.Namespace) -> None:
    from gankit.metrics.evaluator import train_evaluator

    train_evaluator(args.dataset, Path(args.out), epochs=args.epochs, seed=args.seed, data_dir=args.data_dir)


def _info(args: argparse.Namespace) -> None:
    from gankit.runs import info

    summary = info(args.run_dir)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    width = max(map(len, summary))
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gankit", description="Train, inspect and sample GANs.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a GAN from a preset or YAML config")
    train.add_argument("--config", help="YAML file or preset name (see configs/)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.epochs=3 loss.name=hinge")
    train.add_argument("--out", help="run folder (default runs/NAME-TIMESTAMP)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in this folder from its last checkpoint")
    train.add_argument("--data-dir", help="folder searched first for named datasets (same as data.data_dir=DIR)")
    train.add_argument("--max-steps", type=_positive_int, help="stop after this many steps in all")
    train.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    train.set_defaults(handler=_train)

    sample = commands.add_parser("sample", help="draw samples from a trained run")
    sample.add_argument("run_dir", help="run folder or checkpoint file")
    sample.add_argument("-n", type=_positive_int, default=64, help="number of samples (default 64)")
    sample.add_argument("--grid", help="write one PNG grid here")
    sample.add_argument("--out-dir", help="write one PNG per sample into this folder")
    sample.add_argument("--npz", help="write samples (and labels) as arrays here")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--checkpoint", default="last", help="last (default), best, or a checkpoint path")
    sample.add_argument("--device", default="cpu")
    sample.add_argument("--trust", action="store_true", help="allow a pickled --checkpoint (.pt) you made yourself; read with torch.load(weights_only=True)")
    sample.set_defaults(handler=_sample)

    evaluate = commands.add_parser("eval", help="score a trained run (FID, KID, precision/recall, ...; modes for toys)")
    evaluate.add_argument("run_dir", help="run folder or checkpoint file")
    evaluate.add_argument("-n", type=_positive_int, help="generated images (default eval.num_samples, 10000)")
    evaluate.add_argument("--checkpoint", default="last", help="last (default), best, or a checkpoint path")
    evaluate.add_argument("--evaluator", help="fashion-mnist, mnist or a .safetensors path (default: picked by dataset)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--trust", action="store_true", help="allow a pickled --checkpoint (.pt) you made yourself; read with torch.load(weights_only=True)")
    evaluate.add_argument("--out", help="where to write the JSON (default RUN_DIR/eval.json)")
    evaluate.set_defaults(handler=_eval)

    evaluator = commands.add_parser("evaluator", help="the classifiers whose features the metrics use")
    evaluator_commands = evaluator.add_subparsers(dest="evaluator_command", required=True)
    evaluator_train = evaluator_commands.add_parser("train", help="train an evaluator and report its held-out accuracy")
    evaluator_train.add_argument("--dataset", required=True, help="fashion-mnist, mnist or idx:PATH (labelled 1x28x28 images)")
    evaluator_train.add_argument("--out", required=True, help="the .safetensors file to write")
    evaluator_train.add_argument("--epochs", type=_positive_int, default=8)
    evaluator_train.add_argument("--seed", type=int, default=0)
    evaluator_train.add_argument("--data-dir", help="folder searched first for named datasets")
    evaluator_train.set_defaults(handler=_evaluator_train)

    info = commands.add_parser("info", help="summarize a run folder")
    info.add_argument("run_dir")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=_info)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except GankitError as err:
        print(f"gankit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gankit: interrupted; the last checkpoint is intact (continue with --resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
