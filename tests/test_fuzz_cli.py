"""Every CLI subcommand, driven by hypothesis with random choices of its options and values (good, bad, huge,
malformed, paths of every kind) and random config files: it either succeeds or exits non-zero with one
`gankit ...error...` line as its last line; nothing escapes as a traceback, and a failed command leaves every
existing run folder byte for byte as it was.

Options that set how much work a valid call does (-n, --steps, --epochs, ...) get a small value first and
are fuzzed only with small or invalid values, and named datasets are left out (a valid one would train on
all of Fashion-MNIST or download MNIST), so a case takes seconds. Each command prints its outcome counts.
"""

import argparse
import hashlib
import os
from collections import Counter
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydantic import BaseModel

from gankit.cli import build_parser, main
from gankit.config import Config
from gankit.data import save_npz
from gankit.training.run import train

from .conftest import REPO
from .test_bad_input_16 import ALIAS_BOMB

EXAMPLES = 25
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
TOY_CONFIG = REPO / "configs" / "toy-ring8.yaml"
TOY = ["data.generated_samples=512", "train.epochs=1", "watchdog.every_epochs=0"]
WORK_BOUNDS = {  # option -> a cheap valid value given first; fuzzed values for it come from SMALL only
    "-n": "64", "--per-class": "1", "--max-draws": "20", "--steps": "1", "--restarts": "1", "--epochs": "1",
    "--interpolate": "2", "--strips": "2", "--batch-size": "4", "--max-steps": "1",
}
SMALL = ["0", "-1", "1", "2", "1.5", "x", "1e23", ""]


def section_keys(section: type[BaseModel], prefix: str = "") -> list[str]:
    """The dotted key of every setting inside `section`, sections within sections included."""
    keys = []
    for name, field in section.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += section_keys(field.annotation, f"{prefix}{name}.")
        elif prefix:
            keys.append(prefix + name)
    return keys


OVERRIDE_KEYS = [key for key in section_keys(Config) if key.rsplit(".", 1)[1] not in ("download", "epochs", "generated_samples", "num_samples", "num_real")]
OVERRIDE_VALUES = ["0", "-1", "1", "0.5", ".inf", ".nan", "true", "null", "[1, 2]", "{a: 1}", "x" * 300, "99999999999999999999999",
                   "toy:grid25", "npz:missing.npz", "idx:.", "hinge", "dcgan", "&a [*a]", "'unterminated", "\t", "bf16"]
NUMBERS = [*SMALL, "0.7", "3", "10", "99999999999999999999999", "nan", "inf", "-0"]
TRIED: dict[str, Counter] = {}


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            for path in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Run folders and files of every kind that a fuzzed value may name."""
    root = tmp_path_factory.mktemp("fuzz-cli")
    toy = train(str(TOY_CONFIG), root / "toy", overrides=TOY, max_steps=1, progress=False).run_dir
    save_npz(root / "images.npz", np.random.default_rng(0).integers(0, 256, (32, 1, 28, 28), dtype=np.uint8), np.arange(32) % 4)
    image = train("dcgan-fashion", root / "image", overrides=[f"data.dataset=npz:{root / 'images.npz'}", "train.batch_size=16", "model.width=8"],
                  max_steps=1, progress=False).run_dir
    (root / "folder").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(root / "folder" / "a.png")
    (root / "binary.yaml").write_bytes(bytes(range(256)))
    (root / "bomb.yaml").write_text(ALIAS_BOMB)
    (root / "duplicate.yaml").write_text("train:\n  epochs: 1\n  epochs: 2\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    shutil.copy(TOY_CONFIG, root / "toy.yaml")
    paths = [toy, image, root / "folder", root / "folder" / "a.png", root / "images.npz", root / "binary.yaml", root / "bomb.yaml",
             root / "duplicate.yaml", root / "list.yaml", root / "missing", root / "missing" / "deeper.png", toy / "config.yaml",
             next((toy / "checkpoints").iterdir()), root / "out.png", root / "out.npz", root / "out.gif", root / "new-folder", root / "out.xyz"]
    (root / "scratch").mkdir()
    return {"root": root, "runs": [toy, image], "paths": [str(p) for p in paths], "scratch": root / "scratch"}


def commands() -> dict[str, argparse.ArgumentParser]:
    """'train', 'sample', ..., 'evaluator train', 'evaluator convert-inception': each with its parser."""
    found = {}
    for action in build_parser()._subparsers._group_actions:
        for name, sub in action.choices.items():
            if sub._subparsers is None:
                found[name] = sub
            for group in (sub._subparsers._group_actions if sub._subparsers else []):
                found |= {f"{name} {nested}": nested_parser for nested, nested_parser in group.choices.items()}
    return found


COMMANDS = commands()


@st.composite
def command_line(draw, name: str, paths: list[str]) -> list[str]:
    """Required options and positionals always (else argparse stops first), the rest at random."""
    parser = COMMANDS[name]
    value = st.sampled_from([*paths, *SMALL, "99999999999999999999999", "nan", "cuda", "cuda:abc", "tpu", "center:8", "random:0.5",
                             "npz:" + paths[4], "idx:" + paths[2], "folder:" + paths[2], "inception:" + paths[0]])
    argv = [*name.split()]
    for action in parser._actions:
        flag = action.option_strings[0] if action.option_strings else None
        if flag in WORK_BOUNDS:
            argv += [flag, WORK_BOUNDS[flag], *([flag, draw(st.sampled_from(SMALL))] if draw(st.booleans()) else [])]
            continue
        if flag == "-h" or (flag and not action.required and not draw(st.booleans())):
            continue
        if flag is None:  # positional
            runs = st.sampled_from(paths[:2])  # a real run most of the time, so the command gets past opening it
            argv += draw(st.lists(override(), max_size=3)) if action.dest == "overrides" else [draw(st.one_of(runs, runs, value))]
        elif action.nargs == 0:
            argv.append(flag)
        elif action.choices:
            argv += [flag, draw(st.sampled_from([*map(str, action.choices), "bogus"]))]
        else:
            argv += [flag, draw(st.sampled_from(NUMBERS) if action.type not in (None, str) else value)]
    if name == "train":
        argv += ["data.download=false", "--device", "cpu"]
    return argv


@st.composite
def override(draw) -> str:
    return f"{draw(st.sampled_from(OVERRIDE_KEYS))}={draw(st.sampled_from(OVERRIDE_VALUES))}"


def run_case(name: str, argv: list[str], runs: list[Path], scratch: Path, capsys) -> None:
    """Run one command line in `scratch` (a fuzzed value may be taken as a relative output path) and check its outcome."""
    before = {run: tree_digest(run) for run in runs}
    cwd = os.getcwd()
    os.chdir(scratch)
    try:
        status = main(argv)
        outcome = "succeeded" if status == 0 else "refused"
    except SystemExit as exit_:  # argparse: usage and one error line
        status, outcome = exit_.code, "refused by argparse"
    finally:
        os.chdir(cwd)
    TRIED.setdefault(name, Counter())[outcome] += 1
    err = capsys.readouterr().err
    assert "Traceback" not in err, f"{argv}: {err}"
    if status == 0:
        return
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert last.startswith("gankit") and ("error" in last or "interrupted" in last), f"{argv}: exit {status}, stderr {err!r}"
    assert len([line for line in err.splitlines() if "error:" in line]) == 1, f"{argv}: {err!r}"
    for run, digest in before.items():
        assert tree_digest(run) == digest, f"{argv} failed (exit {status}) but changed {run}"


@pytest.fixture(autouse=True)
def report_count(request, capsys):
    yield
    name = request.node.callspec.params["name"] if hasattr(request.node, "callspec") else "train config files"
    if name in TRIED:
        with capsys.disabled():
            print(f"\nfuzz cli {name}: {sum(TRIED[name].values())} cases: {dict(TRIED[name])}")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_cli_command(name, world, capsys):
    @FUZZ
    @given(data=st.data())
    def fuzz(data):
        argv = data.draw(command_line(name, world["paths"]))
        if name == "train" and "--out" in argv:
            argv[argv.index("--out") + 1] = str(world["root"] / "new-runs" / f"run-{sum(TRIED.get(name, Counter()).values())}")
        run_case(name, argv, world["runs"], world["scratch"], capsys)

    fuzz()


@FUZZ
@given(document=st.one_of(
    st.dictionaries(st.sampled_from(OVERRIDE_KEYS), st.sampled_from(OVERRIDE_VALUES), max_size=4),
    st.text(max_size=200),
    st.binary(max_size=200),
))
def test_cli_train_config_files(document, world, capsys):
    """Random config files (valid sections with random values, random text, random bytes), fresh and on --resume."""
    config = world["root"] / "fuzzed.yaml"
    if isinstance(document, dict):
        nested: dict = {}
        for key, raw in document.items():
            *sections, name = key.split(".")
            target = nested
            for part in sections:
                target = target.setdefault(part, {})
            target[name] = raw
        base = yaml.safe_load(TOY_CONFIG.read_text())
        text = yaml.safe_dump(base | {section: base.get(section, {}) | values for section, values in nested.items()})
        config.write_text(text)
    else:
        config.write_bytes(document.encode() if isinstance(document, str) else document)
    out = world["root"] / "new-runs" / f"file-{sum(TRIED.get('train config files', Counter()).values())}"
    run_case("train config files", ["train", "--config", str(config), "--out", str(out), "--max-steps", "1", "data.download=false", *TOY], world["runs"], world["scratch"], capsys)
    damaged = world["root"] / "damaged-run"
    shutil.rmtree(damaged, ignore_errors=True)
    shutil.copytree(world["runs"][0], damaged)
    shutil.copy(config, damaged / "config.yaml")
    run_case("train config files", ["train", "--resume", str(damaged), "--max-steps", "1"], [world["runs"][0]], world["scratch"], capsys)
