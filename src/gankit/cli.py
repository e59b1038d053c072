"""`gankit train|sample|eval|evaluator|info|report|export|restore|augment|classify`: a thin shell over the Python API; user errors become one line and exit 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gankit.errors import GankitError, TrainingInterrupted

if TYPE_CHECKING:
    from gankit.config import Config, SamplingConfig


def _train(args: argparse.Namespace) -> None:
    from gankit.training.run import train

    if args.resume and args.config:
        raise GankitError("give either --config (a new run) or --resume RUN_DIR (continue one), not both")
    if not args.resume and not args.config:
        raise GankitError("give --config PRESET_OR_YAML for a new run, or --resume RUN_DIR")
    overrides = args.overrides + ([f"data.data_dir={args.data_dir}"] if args.data_dir else [])
    result = train(args.config, args.out, overrides=overrides, resume=args.resume, checkpoint=args.checkpoint, max_steps=args.max_steps, device=args.device)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 reports
    print(f"run folder:   {result.run_dir}")
    print(f"samples:      {result.samples}")
    print(f"loss plot:    {result.loss_plot}")
    print(f"report:       {result.run_dir / 'report.html'}")
    print(f"checkpoint:   {result.checkpoint} (step {result.step})")


def _sample(args: argparse.Namespace) -> None:
    from gankit.apps.sample import check_memory, check_output_paths, write_grid, write_npz, write_pngs
    from gankit.models.sampling import class_labels, sample
    from gankit.runs import open_checkpoint

    if not (args.grid or args.out_dir or args.npz):
        raise GankitError("say where to write: --grid FILE.png, --out-dir DIR and/or --npz FILE.npz")
    check_output_paths(args.grid, args.out_dir, args.npz)
    loaded = open_checkpoint(args.run_dir, args.checkpoint, device=args.device, trust=args.trust)
    generator = loaded.generator
    settings = _sampling(args, loaded.config)
    if args.interpolate:
        _sample_interpolation(args, generator, settings.truncation)
        return
    n = args.n or 64
    check_memory(n, loaded.state["sample_shape"])
    samples, labels = sample(generator, n, seed=args.seed, labels=class_labels(generator, n, args.label), **settings.model_dump())
    if args.grid:
        print(f"grid of {len(samples)}: {write_grid(samples, Path(args.grid))}")
    if args.out_dir:
        print(f"{len(write_pngs(samples, Path(args.out_dir)))} PNGs in {args.out_dir}")
    if args.npz:
        print(f"{len(samples)} samples: {write_npz(samples, labels, Path(args.npz))}")


def _sample_interpolation(args: argparse.Namespace, generator, truncation: float | None) -> None:
    from gankit.apps.sample import interpolation, interpolation_paths, write_gif, write_strip

    if args.npz:
        raise GankitError("--interpolate writes a PNG strip and a GIF; drop --npz and give --grid FILE.png or --out-dir DIR")
    if args.jacobian_truncation:
        raise GankitError("--jacobian-truncation drops latents, and an interpolation walks through every latent between its ends; drop it")
    strip, gif = interpolation_paths(args.grid, args.out_dir)
    frames = interpolation(generator, args.n or 8, args.interpolate, seed=args.seed, label=args.label, truncation=truncation)
    print(f"{len(frames)} walks of {args.interpolate} steps: {write_strip(frames, strip)} and {write_gif(frames, gif)}")


def _augment(args: argparse.Namespace) -> None:
    from gankit.apps.augment import augment

    data = augment(
        args.run_dir, args.per_class, args.out, classes=args.classes, checkpoint=args.checkpoint, evaluator=args.evaluator, min_confidence=args.min_confidence,
        max_draws=args.max_draws, seed=args.seed, truncation=args.truncation, jacobian_truncation=args.jacobian_truncation, device=args.device, trust=args.trust,
    )
    counts = ", ".join(f"{label}: {count}" for label, count in data.counts().items())
    print(f"{len(data.labels)} labelled images ({data.drawn} drawn) in {args.out}; per class {counts}")


def _eval(args: argparse.Namespace) -> None:
    from gankit.files import write_atomically
    from gankit.metrics.suite import RunEvaluator, format_table
    from gankit.runs import open_checkpoint

    loaded = open_checkpoint(args.run_dir, args.checkpoint, trust=args.trust, task=None)
    if loaded.config.task == "classify":
        from gankit.apps.classify import held_out_accuracy

        result = held_out_accuracy(loaded).as_dict()
    else:
        loaded = open_checkpoint(args.run_dir, args.checkpoint, trust=args.trust)  # refuses a restorer in one line
        loaded.config.sampling = _sampling(args, loaded.config)
        result = RunEvaluator(loaded.config, args.evaluator, trust=args.trust)(loaded.generator, num_samples=args.n, seed=args.seed)
    result |= {"checkpoint": str(loaded.path), "step": loaded.state["step"]}
    out = Path(args.out) if args.out else (Path(args.run_dir) if Path(args.run_dir).is_dir() else Path(".")) / "eval.json"
    write_atomically(out, (json.dumps(result, indent=2) + "\n").encode())
    print(format_table(result))
    print(f"written to {out}")


def _classify(args: argparse.Namespace) -> None:
    from collections import Counter

    from gankit.apps.classify import classify_run

    rows = classify_run(args.run_dir, args.input, args.out, checkpoint=args.checkpoint, device=args.device)
    counts = ", ".join(f"{name}: {count}" for name, count in sorted(Counter(row["class"] for row in rows).items()))
    if args.out:
        print(f"{len(rows)} images classified into {args.out}; per class {counts}")
        return
    for row in rows:
        print(f"{row['input']},{row['label']},{row['class']},{row['probability']}")


def _evaluator_train(args: argparse.Namespace) -> None:
    from gankit.metrics.evaluator_training import train_evaluator

    train_evaluator(
        args.dataset, Path(args.out), epochs=args.epochs, seed=args.seed, data_dir=args.data_dir, image_size=args.image_size, channels=args.channels, flip=args.flip
    )


def _evaluator_convert_inception(args: argparse.Namespace) -> None:
    from gankit.metrics.inception import convert_inception

    info = convert_inception(args.source, args.out, trust=args.trust)
    print(f"wrote {args.out} (sha256 {info.sha256}); {info.describe_origin()}")
    print(f"use it with: gankit eval RUN --evaluator inception:{args.out}")


def _info(args: argparse.Namespace) -> None:
    from gankit.runs import info

    summary = info(args.run_dir)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    width = max(map(len, summary))
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")


def _report(args: argparse.Namespace) -> None:
    from gankit.config import read_yaml
    from gankit.report.html import write_report
    from gankit.training import checkpoint as ckpt

    if Path(args.run_dir, "config.yaml").is_file():
        read_yaml(Path(args.run_dir, "config.yaml"))  # a damaged config is an error line, not a traceback
        ckpt.load_checkpoint(ckpt.resolve_checkpoint(Path(args.run_dir)))  # a half-written or damaged run is an error, not a picture
    print(f"report: {write_report(args.run_dir, args.out)}")


def _export(args: argparse.Namespace) -> None:
    from gankit.apps.export import export_generator

    path, metadata = export_generator(args.run_dir, args.format, args.out, args.checkpoint)
    inputs = " and ".join(f"{name} {shape}" for name, shape in zip(metadata["inputs"], (f"(N, {metadata['z_dim']}) float32", "(N,) int64")))
    print(f"{args.format}: {path} (inputs {inputs}; output samples: {metadata['output']}, shape {metadata['sample_shape']}; step {metadata['step']}{', EMA weights' if metadata['ema'] else ''})")


def _restore(args: argparse.Namespace) -> None:
    from gankit.apps.restore import InversionSettings, restore_run

    given = {name: getattr(args, name) for name in InversionSettings.model_fields if getattr(args, name) is not None}
    summary = restore_run(
        args.run_dir, args.input, args.out, method=args.method, mask=args.mask, noise=args.noise, blur=args.blur, degraded=args.degraded, label=args.label,
        settings=InversionSettings.create(**given) if given else None, seed=args.seed, checkpoint=args.checkpoint, device=args.device, trust=args.trust,
        strips=args.strips,
    )
    print(f"{summary['images']} images restored ({summary['method']}) into {args.out}: restored.npz, restored.png, strips.png, summary.json")
    if "data_error_start" in summary:
        print(f"data error (mean squared, observed pixels): {summary['data_error_start']:.4f} at the start, {summary['data_error_end']:.4f} at the end")
    if "psnr_restored" in summary:
        print(f"PSNR against the input: degraded {summary['psnr_observed']:.2f} dB, restored {summary['psnr_restored']:.2f} dB")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gankit", description="Train, inspect and sample GANs.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a GAN from a preset or YAML config")
    train.add_argument("--config", help="YAML file or preset name (see configs/)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.epochs=3 loss.name=hinge")
    train.add_argument("--out", help="run folder (default runs/NAME-TIMESTAMP)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in this folder from its last checkpoint")
    train.add_argument("--checkpoint", metavar="STEP_OR_PATH", help="with --resume: continue from this step's checkpoint (or file) instead of the newest")
    train.add_argument("--data-dir", help="folder searched first for named datasets (same as data.data_dir=DIR)")
    train.add_argument("--max-steps", type=_positive_int, help="stop after this many steps in all")
    train.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    train.set_defaults(handler=_train)

    sample = commands.add_parser("sample", help="draw samples from a trained run")
    sample.add_argument("run_dir", help="run folder or checkpoint file")
    sample.add_argument("-n", type=_positive_int, help="number of samples (default 64), or of walks with --interpolate (default 8)")
    sample.add_argument("--grid", help="write one PNG grid here")
    sample.add_argument("--out-dir", help="write one PNG per sample into this folder")
    sample.add_argument("--npz", help="write samples (and labels) as arrays here")
    sample.add_argument("--seed", type=_seed, default=0)
    sample.add_argument("--checkpoint", default="last", help="last (default), best, or a checkpoint path")
    sample.add_argument("--device", default="cpu")
    sample.add_argument("--trust", action="store_true", help="allow a pickled --checkpoint (.pt) you made yourself; read with torch.load(weights_only=True)")
    sample.add_argument("--label", type=int, help="class-conditional runs: draw only this class (default: cycle through the classes)")
    _add_sampling_args(sample)
    sample.add_argument("--interpolate", type=_positive_int, metavar="STEPS",
                        help="write -n walks of STEPS steps between random z pairs: a strip to --grid FILE.png and FILE.gif, or DIR/interpolation.png and .gif for --out-dir DIR")
    sample.set_defaults(handler=_sample)

    evaluate = commands.add_parser("eval", help="score a trained run (FID, KID, precision/recall, ...; modes for toys; test accuracy for a classifier)")
    evaluate.add_argument("run_dir", help="run folder or checkpoint file")
    evaluate.add_argument("-n", type=_positive_int, help="generated images (default eval.num_samples, 10000)")
    evaluate.add_argument("--checkpoint", default="last", help="last (default), best, or a checkpoint path")
    evaluate.add_argument(
        "--evaluator",
        help="fashion-mnist, mnist, a .safetensors file from `gankit evaluator train` (docs/evaluators.md), or inception:WEIGHTS (FID's Inception-v3, docs/inception.md) "
        "(default: eval.evaluator, else the shipped one for the dataset, else pixel metrics only)",
    )
    evaluate.add_argument("--seed", type=_seed, default=0)
    _add_sampling_args(evaluate)
    evaluate.add_argument("--trust", action="store_true", help="allow a pickled --checkpoint (.pt) you made yourself, or inception:FILE.pth; read with torch.load(weights_only=True)")
    evaluate.add_argument("--out", help="where to write the JSON (default RUN_DIR/eval.json)")
    evaluate.set_defaults(handler=_eval)

    evaluator = commands.add_parser("evaluator", help="the classifiers whose features the metrics use")
    evaluator_commands = evaluator.add_subparsers(dest="evaluator_command", required=True)
    evaluator_train = evaluator_commands.add_parser("train", help="train an evaluator and report its held-out accuracy")
    evaluator_train.add_argument("--dataset", required=True, help="labelled images: fashion-mnist, mnist, idx:PATH, npz:FILE or folder:DIR (one subfolder per class)")
    evaluator_train.add_argument("--out", required=True, help="the .safetensors file to write")
    evaluator_train.add_argument("--epochs", type=_positive_int, default=8)
    evaluator_train.add_argument("--seed", type=_seed, default=0)
    evaluator_train.add_argument("--data-dir", help="folder searched first for named datasets")
    evaluator_train.add_argument("--image-size", type=_positive_int, help="resize images to this side, as the runs it will score do with data.image_size (folders: default 64)")
    evaluator_train.add_argument("--channels", type=int, choices=(1, 3), help="force grayscale (1) or RGB (3), as data.channels")
    evaluator_train.add_argument("--no-flip", dest="flip", action="store_false", help="do not mirror images while training (for letters, digits: data whose mirror image is another class)")
    evaluator_train.set_defaults(handler=_evaluator_train)

    info = commands.add_parser("info", help="summarize a run folder")
    info.add_argument("run_dir")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=_info)
    augment = commands.add_parser("augment", help="write labelled synthetic images (npz or class folders) for training")
    augment.add_argument("run_dir", help="run folder or checkpoint file")
    augment.add_argument("--per-class", type=_positive_int, required=True, help="images per class")
    augment.add_argument("--out", required=True, help="FILE.npz (data.dataset=npz:FILE) or a new folder of class subfolders (folder:DIR)")
    augment.add_argument("--classes", type=_class_list, help="only these classes, e.g. 2,4,6 (fill the scarce classes of an imbalanced set); default all")
    augment.add_argument("--evaluator", help="unconditional runs: the classifier that labels samples (fashion-mnist, mnist or a .safetensors path; default by dataset)")
    augment.add_argument("--min-confidence", type=float, default=0.9, help="unconditional runs: keep samples the evaluator labels with at least this softmax probability (default 0.9)")
    augment.add_argument("--max-draws", type=_positive_int, help="unconditional runs: give up after this many samples (default 20 x the images asked for)")
    _add_sampling_args(augment)
    augment.add_argument("--seed", type=_seed, default=0)
    augment.add_argument("--checkpoint", default="last", help="last (default), best, or a checkpoint path")
    augment.add_argument("--device", default="cpu")
    augment.add_argument("--trust", action="store_true", help="allow a pickled --checkpoint (.pt) you made yourself; read with torch.load(weights_only=True)")
    augment.set_defaults(handler=_augment)

    classify = commands.add_parser("classify", help="label images with a trained classifier run (task=classify; docs/classify.md)")
    classify.add_argument("run_dir", help="run folder or checkpoint file of a task=classify run")
    classify.add_argument("--input", required=True, help="an image file, a folder of images (fitted to the run's size) or an .npz (the run's size)")
    classify.add_argument("--out", help="write input,label,class,probability rows to this CSV (default: print them)")
    classify.add_argument("--checkpoint", default="last", help="last (default), best, or a checkpoint path")
    classify.add_argument("--device", default="cpu")
    classify.set_defaults(handler=_classify)

    report = commands.add_parser("report", help="write a run's self-contained report.html (samples by epoch, curves, metrics, warnings)")
    report.add_argument("run_dir", help="run folder")
    report.add_argument("--out", help="where to write the HTML (default RUN_DIR/report.html)")
    report.set_defaults(handler=_report)

    export = commands.add_parser("export", help="write the generator (EMA weights when present) as ONNX or TorchScript")
    export.add_argument("run_dir", help="run folder or checkpoint file")
    export.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    export.add_argument("--out", required=True, help="the file to write, e.g. generator.onnx or generator.pt")
    export.add_argument("--checkpoint", default="last", help="last (default), best, or a checkpoint path")
    export.set_defaults(handler=_export)
    convert = evaluator_commands.add_parser("convert-inception", help="convert pytorch-fid's Inception weights (.pth) to .safetensors, once")
    convert.add_argument("source", help="pt_inception-2015-12-05-6726825d.pth, downloaded by you (see docs/inception.md)")
    convert.add_argument("out", help="the .safetensors file to write")
    convert.add_argument("--trust", action="store_true", help="required: the .pth is a pickle; it is read with torch.load(weights_only=True)")
    convert.set_defaults(handler=_evaluator_convert_inception)
    restore = commands.add_parser("restore", help="restore images (inpainting, denoising, deblurring) with a trained restorer or by GAN inversion; see docs/restore.md")
    restore.add_argument("run_dir", help="run folder or checkpoint file of an image GAN or a restorer (task=restore)")
    restore.add_argument("--method", choices=("forward", "invert"), help="forward: a restorer run's U-Net, one pass (its default); invert: search a generator run's latent space (its default)")
    restore.add_argument("--input", required=True, help="an image file, a folder of images (fitted to G's size) or an .npz (G's size)")
    restore.add_argument("--out", required=True, help="folder for restored.npz, restored.png, strips.png and summary.json")
    restore.add_argument("--mask", help="center:SIZE (square hole), random:FRACTION (share of pixels missing) or a mask image (white = missing)")
    restore.add_argument("--noise", type=float, default=0.0, help="Gaussian noise std on the [-1, 1] scale (e.g. 0.3)")
    restore.add_argument("--blur", type=float, default=0.0, help="Gaussian blur std in pixels (e.g. 1.0)")
    restore.add_argument("--degraded", action="store_true", help="the input is already degraded (--noise/--blur describe it); default: degrade it here and compare")
    restore.add_argument("--label", type=int, help="conditional runs: the class of every input (default: try every class)")
    restore.add_argument("--steps", type=int, help="Adam steps on z (default 300)")
    restore.add_argument("--restarts", type=int, help="random starts per image, per class for conditional runs (default 4)")
    restore.add_argument("--lr", type=float, help="Adam learning rate on z (default 0.05)")
    restore.add_argument("--prior-weight", dest="prior_weight", type=float, help="weight of the prior on |z| (default 1)")
    restore.add_argument("--adv-weight", dest="adv_weight", type=float, help="weight of D's realism term (default 10; 0 turns it off)")
    restore.add_argument("--model-error", dest="model_error", type=float, help="std of what G cannot reproduce, on the [-1, 1] scale (default 0.1)")
    restore.add_argument("--feather", type=float, help="blur in px of the mask edge when pasting known pixels (default 0: hard edge)")
    restore.add_argument("--batch-size", dest="batch_size", type=int, help="images optimized together (default 64)")
    restore.add_argument("--strips", type=_positive_int, default=16, help="rows in strips.png (default 16)")
    restore.add_argument("--seed", type=_seed, default=0)
    restore.add_argument("--checkpoint", default="last", help="last (default), best, or a checkpoint path")
    restore.add_argument("--device", default="cpu")
    restore.add_argument("--trust", action="store_true", help="allow a pickled --checkpoint (.pt) you made yourself; read with torch.load(weights_only=True)")
    restore.set_defaults(handler=_restore)
    return parser


def _sampling(args: argparse.Namespace, config: Config) -> SamplingConfig:
    """The run's sampling settings (config.sampling), with --truncation and --jacobian-truncation where given."""
    return config.sampling.overridden(args.truncation, args.jacobian_truncation)


def _add_sampling_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--truncation", type=float, help="redraw z entries beyond +-T (e.g. 0.7): more typical, less varied samples (default: the run's sampling.truncation)")
    parser.add_argument(
        "--jacobian-truncation", type=float, metavar="FRACTION",
        help="drop this fraction of z where G is steepest, the off-mode samples between modes (e.g. 0.05; 0: off; default: the run's sampling.jacobian_truncation)",
    )  # fmt: skip


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _class_list(text: str) -> list[int]:
    labels = text.split(",")
    if not all(label.strip().isdigit() for label in labels):
        raise argparse.ArgumentTypeError(f"must be class labels separated by commas, e.g. 2,4,6; got {text}")
    return [int(label) for label in labels]


def _seed(text: str) -> int:
    from gankit.config import MAX_SEED

    if not text.isdigit() or int(text) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {MAX_SEED}, got {text[:40]}")
    return int(text)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; `train`'s KEY=VALUE overrides may stand anywhere, also after options."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "train" and all("=" in word and not word.startswith("-") for word in extra):
        args.overrides += extra
    elif extra:
        parser.parse_args(argv)  # argparse's own message for what it does not know
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        if args.command != "train" and hasattr(args, "device"):
            from gankit.training.trainer import resolve_device

            args.device = str(resolve_device(args.device))
        args.handler(args)
    except TrainingInterrupted as err:
        print(f"gankit: {err}", file=sys.stderr)
        return 130
    except GankitError as err:
        print(f"gankit: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path the user gave that cannot be read or written
        print(f"gankit: error: {err.filename2 or err.filename or 'a file'}: {err.strerror or err}; check the path and its permissions", file=sys.stderr)
        return 2
    except MemoryError:
        print("gankit: error: out of memory; ask for fewer samples (-n) or a smaller batch", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gankit: interrupted; files are written atomically, so none was left half-written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
