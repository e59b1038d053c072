"""Every CLI command, given a wrong path, a folder that is no run, a half-written run, a run of another model or
images of the wrong size or channel count, says what is wrong in one line and exits non-zero: no traceback."""

import shutil

import numpy as np
import pytest

from gankit.cli import build_parser, main
from gankit.data import save_npz
from gankit.training.run import train

TOY = ["data.generated_samples=512", "train.checkpoint_every=1"]


def available_commands() -> set[str]:
    """'train', 'sample', ..., and 'evaluator train' style names for nested commands."""
    names = set()
    for action in build_parser()._subparsers._group_actions:
        for name, sub in action.choices.items():
            names.add(name)
            if sub._subparsers:
                names |= {f"{name} {nested}" for group in sub._subparsers._group_actions for nested in group.choices}
    return names


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-errors")
    toy = train("configs/toy-ring8.yaml", root / "toy", overrides=TOY, max_steps=1, progress=False).run_dir
    images = root / "images.npz"
    save_npz(images, np.random.default_rng(0).integers(0, 256, (32, 1, 28, 28), dtype=np.uint8), np.arange(32) % 4)
    image_run = train("configs/reference-mnist.yaml", root / "image", overrides=[f"data.dataset=npz:{images}", "train.batch_size=16"],
                      max_steps=1, progress=False).run_dir
    (root / "empty").mkdir()
    (root / "config-only").mkdir()
    shutil.copy(toy / "config.yaml", root / "config-only" / "config.yaml")
    shutil.copytree(toy, root / "truncated")
    last = sorted((root / "truncated" / "checkpoints").glob("step-*"))[-1]
    last.write_bytes(last.read_bytes()[:1000])
    shutil.copytree(image_run, root / "other-model")
    for old in (root / "other-model" / "checkpoints").iterdir():
        old.unlink()
    shutil.copy(sorted((toy / "checkpoints").glob("step-*"))[-1], root / "other-model" / "checkpoints")
    save_npz(root / "rgb8.npz", np.zeros((20, 3, 8, 8), np.uint8), np.arange(20) % 10)
    rgb = root / "rgb.png"
    from PIL import Image

    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(rgb)
    return {"missing": root / "no-such-folder", "empty": root / "empty", "config_only": root / "config-only", "truncated": root / "truncated",
            "other_model": root / "other-model", "toy": toy, "image_run": image_run, "out": root / "out", "rgb": rgb, "root": root}


RUN_CASES = ("missing", "empty", "config_only", "truncated")  # every command that reads a run gets each of these
RUN_COMMANDS = {
    "sample": "sample {run} --grid {out}/grid.png",
    "eval": "eval {run} -n 100 --out {out}/eval.json",
    "info": "info {run}",
    "augment": "augment {run} --per-class 2 --out {out}/aug.npz",
    "report": "report {run}",
    "export": "export {run} --format torchscript --out {out}/g.pt",
    "restore": "restore {run} --input {rgb} --out {out}/restored",
    "train": "train --resume {run}",
}
OTHER_CASES = {
    "train: config not found": ("train", "train --config {missing}/run.yaml --out {out}/new"),
    "train: run of another model": ("train", "train --resume {other_model}"),
    "train: wrong image size": ("train", "train --resume {image_run} data.image_size=32"),
    "train: wrong channel count": ("train", "train --resume {image_run} data.channels=3"),
    "train: dataset not found": ("train", "train --config reference-mnist --out {out}/new2 data.dataset=npz:{missing}/x.npz"),
    "sample: checkpoint not found": ("sample", "sample {toy} --checkpoint {missing}/x.safetensors --grid {out}/g.png"),
    "eval: wrong evaluator for a run's images": ("eval", "eval {image_run} --evaluator {missing}/e.safetensors --out {out}/e.json"),
    "restore: a toy run has no images": ("restore", "restore {toy} --input {rgb} --out {out}/r"),
    "restore: input not found": ("restore", "restore {image_run} --input {missing}/x.png --out {out}/r2"),
    "augment: an unconditional run has no classes": ("augment", "augment {toy} --per-class 2 --out {out}/a.npz"),
    "evaluator train: dataset not found": ("evaluator train", "evaluator train --dataset idx:{missing} --out {out}/e.safetensors --epochs 1"),
    "evaluator train: wrong image size": ("evaluator train", "evaluator train --dataset npz:{root}/rgb8.npz --out {out}/e.safetensors --epochs 1"),
}
CASES = {f"{command}: {case}": (command, template.replace("{run}", "{" + case + "}")) for command, template in RUN_COMMANDS.items() for case in RUN_CASES}
CASES |= OTHER_CASES


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_says_what_is_wrong_in_one_line(case, folders, capsys):
    command, template = CASES[case]
    if command not in available_commands():
        pytest.skip(f"`gankit {command}` does not exist in this checkout")
    argv = template.format(**folders).split()
    status = main(argv)
    err = capsys.readouterr().err
    assert status != 0, f"{case}: exit status 0; stderr: {err}"
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(error_lines) == 1 and error_lines[0].startswith("gankit: error:"), f"{case}: {err!r}"
    assert err.splitlines()[-1] == error_lines[0]
