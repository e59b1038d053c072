"""Issue 16: bad input that used to end in a traceback (or be silently accepted) is one `gankit: error:` line."""

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest

from gankit.cli import main
from gankit.config import MAX_ECHO, load_config
from gankit.data import save_npz
from gankit.errors import ConfigError
from gankit.training.run import train

from .conftest import REPO

TOY_CONFIG = str(REPO / "configs" / "toy-ring8.yaml")
TOY = ["data.generated_samples=1024", "train.epochs=1", "watchdog.every_epochs=0"]
ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9) if previous else ', '.join(['lol'] * 9)}]\n"
    for previous, name in zip([None, *"abcdefg"], "abcdefgh")
) + "train: {seed: *h}\n"


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("gankit"), err
    assert err.strip().splitlines()[-1] == lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    toy = train(TOY_CONFIG, root / "toy", overrides=TOY, max_steps=1, progress=False).run_dir
    save_npz(root / "images.npz", np.random.default_rng(0).integers(0, 256, (32, 1, 28, 28), dtype=np.uint8), np.arange(32) % 4)
    image = train("dcgan-fashion", root / "image", overrides=[f"data.dataset=npz:{root / 'images.npz'}", "train.batch_size=16", "model.width=8"],
                  max_steps=1, progress=False).run_dir
    (root / "a-file").write_text("x")
    (root / "a-folder").mkdir()
    return {"toy": toy, "image": image, "root": root}


# --- configs --------------------------------------------------------------------------------------
def test_a_key_given_twice_is_an_error(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  epochs: 1\n  batch_size: 8\n  epochs: 2\n")
    with pytest.raises(ConfigError, match="key 'epochs' appears twice"):
        load_config(tmp_path / "c.yaml")


def test_merge_keys_may_still_be_overridden(tmp_path):
    (tmp_path / "c.yaml").write_text("train: &t {epochs: 1, batch_size: 8}\neval:\n  every_epochs: 1\nwatchdog: {}\nname: x\n")
    assert load_config(tmp_path / "c.yaml").train.epochs == 1


@pytest.mark.parametrize("override", ["optim.lr_g=.inf", "optim.lr_d=.nan", "train.max_abs_loss=.inf", "train.seed=99999999999999999999999",
                                      "model.z_dim=99999999999999999999999", "model.width=99999999999999999999999", "data.generated_samples=1000000000"])
def test_infinite_rates_huge_seeds_and_sizes_fail_validation(override):
    """The sizes were found by tests/test_fuzz_cli.py: torch's 'Overflow when unpacking long long' escaped as a traceback."""
    with pytest.raises(ConfigError, match="bad config value"):
        load_config(TOY_CONFIG, [override])


def test_a_yaml_alias_bomb_is_refused_quickly_with_a_short_line(tmp_path, capsys):
    (tmp_path / "bomb.yaml").write_text(ALIAS_BOMB)
    assert main(["train", "--config", str(tmp_path / "bomb.yaml"), "--out", str(tmp_path / "run")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "expands to more than" in line and len(line) < 300
    assert main(["train", "--config", TOY_CONFIG, "--out", str(tmp_path / "run"), "train.seed=" + "[" + "1," * 20000 + "1]"]) == 2
    assert len(one_error_line(capsys.readouterr().err)) < 300
    assert not (tmp_path / "run").exists()


def test_an_echoed_value_is_cut_short(capsys):
    assert main(["train", "--config", TOY_CONFIG, "name=" + "x" * 10, "train.epochs=" + "y" * 5000]) == 2
    assert len(one_error_line(capsys.readouterr().err)) < 200 + MAX_ECHO


@pytest.mark.parametrize("content", [b"train: {epochs: 1}\n\xff\xfe\x00", bytes(range(256)), b"\x00\x01\x02"])
def test_binary_or_non_utf8_configs_are_one_line(tmp_path, runs, content, capsys):
    (tmp_path / "bin.yaml").write_bytes(content)
    assert main(["train", "--config", str(tmp_path / "bin.yaml"), "--out", str(tmp_path / "run")]) == 2
    one_error_line(capsys.readouterr().err)
    damaged = tmp_path / "damaged"
    shutil.copytree(runs["toy"], damaged)
    (damaged / "config.yaml").write_bytes(content)
    for argv in (["train", "--resume", str(damaged)], ["report", str(damaged)]):
        assert main(argv) == 2
        one_error_line(capsys.readouterr().err)


# --- sample ---------------------------------------------------------------------------------------
SAMPLE_CASES = {
    "device cuda": "{toy} --device cuda --npz {root}/a.npz",
    "device tpu": "{toy} --device tpu --npz {root}/a.npz",
    "device cuda:abc": "{toy} --device cuda:abc --npz {root}/a.npz",
    "grid is a folder": "{image} --grid {root}/a-folder/",
    "grid of unknown type": "{image} --grid {root}/g.xyz",
    "npz is a folder": "{image} --npz {root}/a-folder",
    "out-dir is a file": "{image} --out-dir {root}/a-file",
    "grid below a file": "{image} --grid {root}/a-file/g.png",
    "seed 1e23": "{image} --seed 1e23 --grid {root}/g.png",
    "huge seed": "{image} --seed 100000000000000000000000 --grid {root}/g.png",
}


@pytest.mark.parametrize("case", sorted(SAMPLE_CASES))
def test_bad_sample_options_are_one_line(case, runs, capsys):
    argv = ["sample", *SAMPLE_CASES[case].format(**runs).split()]
    with pytest.raises(SystemExit) if "seed" in case else nullcontext():
        assert main(argv) == 2
    one_error_line(capsys.readouterr().err)
    assert not (runs["root"] / "g.xyz").exists()


def test_more_samples_than_memory_holds_says_how_much_is_needed(runs, monkeypatch, capsys):
    monkeypatch.setattr("gankit.apps.sample.available_memory", lambda: 2**20)
    assert main(["sample", str(runs["image"]), "-n", "1000", "--npz", str(runs["root"] / "big.npz")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "GiB of memory" in line and not (runs["root"] / "big.npz").exists()


def test_npz_of_a_toy_run_holds_its_points(runs, tmp_path):
    assert main(["sample", str(runs["toy"]), "-n", "10", "--npz", str(tmp_path / "p.npz")]) == 0
    with np.load(tmp_path / "p.npz") as archive:
        assert archive["points"].shape == (10, 2) and archive["points"].dtype == np.float32


def test_overrides_are_accepted_after_options(tmp_path, capsys):
    argv = ["train", "--config", TOY_CONFIG, "--out", str(tmp_path / "run"), "--max-steps", "1", *TOY, "--device", "cpu", "train.log_every=1"]
    assert main(argv) == 0
    assert "log_every: 1" in (tmp_path / "run" / "config.yaml").read_text()
    with pytest.raises(SystemExit):
        main(["train", "--config", TOY_CONFIG, "--out", str(tmp_path / "run2"), "--no-such-option"])


# --- unreadable folders (as an unprivileged user: root reads everything) ---------------------------
UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@functools.cache
def unprivileged_can_import_gankit() -> bool:
    """A checkout under a private folder (mktemp -d makes 0700 ones) hides gankit from the unprivileged user."""
    return subprocess.run([*UNPRIVILEGED, sys.executable, "-c", "import gankit"], capture_output=True, cwd="/", timeout=120).returncode == 0


def run_unprivileged(args: list[str], home: Path) -> subprocess.CompletedProcess:
    prefix = []
    if os.getuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot drop privileges to test permissions")
        if not unprivileged_can_import_gankit():
            pytest.skip("user 65534 cannot import gankit from this checkout (a folder above it is private); run from a world-readable path")
        prefix = UNPRIVILEGED
    env = {**os.environ, "HOME": str(home), "MPLCONFIGDIR": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("GANKIT_DATA", None)
    return subprocess.run([*prefix, sys.executable, "-m", "gankit", *args], capture_output=True, text=True, env=env, cwd=home, timeout=300)


@pytest.fixture
def open_dir():
    """A folder everyone may use (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="gankit-perm-"))
    path.chmod(0o777)
    yield path
    for folder in (path, *path.rglob("*")):
        if folder.is_dir():
            folder.chmod(0o777)
    shutil.rmtree(path)


def locked_folder(parent: Path, name: str) -> Path:
    folder = parent / name
    folder.mkdir(parents=True)
    save_npz(parent / "x.npz", np.zeros((4, 1, 28, 28), np.uint8))
    (folder / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + (1).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(784))
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "a.png")
    folder.chmod(0)
    return folder


@pytest.mark.parametrize("case", ["idx folder", "image folder", "data-dir", "cache"])
def test_unreadable_folders_name_the_real_cause(open_dir, case):
    out = str(open_dir / "run")
    if case == "cache":
        locked_folder(open_dir / ".cache", "gankit")
        args = ["train", "--config", "reference-mnist", "--out", out, "data.download=false"]
    else:
        folder = locked_folder(open_dir, "data")
        dataset = {"idx folder": f"idx:{folder}", "image folder": f"folder:{folder}", "data-dir": "mnist"}[case]
        args = ["train", "--config", "reference-mnist", "--out", out, f"data.dataset={dataset}", "data.download=false", "--data-dir", str(folder)]
    result = run_unprivileged(args, open_dir)
    assert result.returncode == 2, result.stderr
    assert "Permission denied" in one_error_line(result.stderr)
    assert not Path(out).exists()


def test_an_idx_header_of_an_empty_but_huge_array_is_refused():
    """Found by tests/test_fuzz.py: a 0 dimension beside huge ones made numpy's reshape raise ValueError."""
    from gankit.data.idx import parse_idx
    from gankit.errors import DataError

    with pytest.raises(DataError, match="no data that numpy can hold"):
        parse_idx(b"\x00\x00\x08\x04" + bytes(4) + b"\x00\x20\x00\x00" * 3, "fuzz.idx")


def test_onnx_export_says_only_what_it_wrote(runs, tmp_path):
    pytest.importorskip("onnxscript")
    result = subprocess.run([sys.executable, "-m", "gankit", "export", str(runs["image"]), "--format", "onnx", "--out", str(tmp_path / "g.onnx")],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "output samples: images" in result.stdout


@pytest.mark.parametrize("override", ["0\n0=1", "x\ny.z=1"])
def test_a_key_with_a_line_break_is_echoed_on_one_line(override):
    """Found by tests/test_fuzz.py (test_config_overrides): the unknown key was echoed with its raw line break."""
    with pytest.raises(ConfigError) as caught:
        load_config(TOY_CONFIG, [override])
    assert "\n" not in str(caught.value)
