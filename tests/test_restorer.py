"""The trained restorer (task: restore): the degradation sampler, the U-Net/PatchGAN pair, paired training
that learns and resumes exactly, `gankit restore` on a restorer run, and the config's refusals."""

import json
import typing

import numpy as np
import pytest
import torch

from gankit.apps.restore import restore_forward
from gankit.cli import main
from gankit.config import Config, DataConfig, DegradationConfig, TaskName, from_dict, load_config
from gankit.data import load_dataset, save_npz, to_model_range
from gankit.degradations import Degradation, DegradationSampler
from gankit.errors import ConfigError
from gankit.models.unet import build_restorer, paste_known, restorer_inputs
from gankit.runs import open_checkpoint
from gankit.training import checkpoint as ckpt
from gankit.training.run import train
from gankit.training.tasks import TRAINERS

from .conftest import FASHION_DIR

SMALL = ["model.width=8", "train.batch_size=32", "train.log_every=50"]


def draw(ranges: DegradationConfig, seed: int, count: int = 200, side: int = 28):
    return DegradationSampler(ranges)(count, side, side, torch.Generator().manual_seed(seed))


# --- the sampler -----------------------------------------------------------------------------


def test_sampler_draws_every_image_its_own_parameters_within_the_ranges():
    ranges = DegradationConfig(noise_sigma=(0.1, 0.2), blur_sigma=(1.0, 1.5), missing_pixels=(0.4, 0.6), masks=["pixels"])
    made = draw(ranges, seed=0)
    noisy, blurred = made.noise_sigma > 0, made.blur_sigma > 0
    masked = (made.keep < 1).flatten(1).any(1)
    assert (noisy | blurred | masked).all(), "an image came out undegraded"
    assert made.noise_sigma[noisy].min() >= 0.1 and made.noise_sigma[noisy].max() <= 0.2
    assert made.blur_sigma[blurred].min() >= 1.0 and made.blur_sigma[blurred].max() <= 1.5
    missing = 1 - made.keep[masked].flatten(1).mean(1)
    assert missing.min() > 0.25 and missing.max() < 0.75  # 784 pixels each: the drawn share 0.4-0.6 give or take sampling
    assert len(set(made.noise_sigma[noisy].tolist())) == int(noisy.sum()), "noise levels are not drawn per image"
    for chosen in (noisy, blurred, masked):  # each with probability 0.5, and more when it is the fallback
        assert 0.35 < chosen.float().mean() < 0.8, "a degradation is drawn far from its probability"


def test_sampler_is_reproducible_from_its_seed_and_differs_across_seeds():
    ranges = DegradationConfig()
    first, again, other = draw(ranges, 3), draw(ranges, 3), draw(ranges, 4)
    for name in ("keep", "blur_sigma", "noise_sigma"):
        assert torch.equal(getattr(first, name), getattr(again, name))
        assert not torch.equal(getattr(first, name), getattr(other, name))
    clean = torch.rand(200, 1, 28, 28) * 2 - 1
    assert torch.equal(first.corrupt(clean, torch.Generator().manual_seed(1)), again.corrupt(clean, torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("shape", ["center", "box", "strokes"])
def test_each_mask_shape_removes_a_share_of_the_image_in_its_range(shape):
    ranges = DegradationConfig(mask_probability=1.0, noise_probability=0.0, blur_probability=0.0, masks=[shape], hole_size=(0.3, 0.5))
    keep = draw(ranges, 0, count=64).keep
    missing = 1 - keep.flatten(1).mean(1)
    assert (missing > 0).all()
    if shape == "strokes":
        assert missing.max() < 0.6
    else:
        assert missing.min() >= 0.3**2 * 0.8 and missing.max() <= 0.5**2 * 1.3
    if shape == "center":  # centred: the middle pixel is always missing, the corners never
        assert (keep[:, 0, 14, 14] == 0).all() and (keep[:, 0, 0, 0] == 1).all()


def test_per_image_blur_equals_blurring_each_image_alone():
    from gankit.degradations import GaussianBlur

    images = torch.rand(3, 2, 16, 16)
    sigmas = torch.tensor([0.0, 0.7, 2.0])
    together = GaussianBlur(sigmas)(images)
    alone = torch.cat([images[:1]] + [GaussianBlur(float(s))(images[i : i + 1]) for i, s in enumerate(sigmas) if s > 0])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)


# --- the networks ----------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("side", [28, 32, 64])
def test_unet_and_patchgan_shapes(channels, side):
    config = from_dict({"task": "restore", "model": {"width": 4}})
    generator, discriminator = build_restorer(config.model, config.stabilizers, (channels, side, side), None)
    observed = torch.rand(2, channels, side, side) * 2 - 1
    inputs = restorer_inputs(observed, torch.ones(1, 1, side, side))
    restored = generator(inputs)
    assert inputs.shape == (2, channels + 1, side, side)
    assert restored.shape == (2, channels, side, side) and restored.abs().max() <= 1
    scores = discriminator(torch.cat([inputs, restored], 1))
    assert scores.dim() == 2 and len(scores) == 2 and scores.shape[1] > 1  # one logit per patch


def test_paste_keeps_exactly_observed_pixels_only_where_exact():
    observed = torch.rand(2, 1, 8, 8)
    keep = torch.zeros(2, 1, 8, 8)
    keep[..., :4] = 1
    inputs = restorer_inputs(observed, keep)
    restored = torch.full((2, 1, 8, 8), -1.0)
    pasted = paste_known(restored, inputs, torch.tensor([True, False]))
    assert torch.equal(pasted[0, ..., :4], observed[0, ..., :4]) and (pasted[0, ..., 4:] == -1).all()
    assert (pasted[1] == -1).all()


# --- training ----------------------------------------------------------------------------------

LEARN = [
    *SMALL, f"data.data_dir={FASHION_DIR}", "data.download=false", "data.per_class=64", "train.epochs=10", "optim.lr_g=2e-3",
    "restore.degradations.mask_probability=0", "restore.degradations.blur_probability=0", "restore.degradations.noise_sigma=[0.3,0.3]",
]  # 640 images, 20 steps an epoch: 200 steps of denoising at sigma 0.3 (about 17 s of one core)


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST not found at {FASHION_DIR}")
    return train("configs/restore-fashion.yaml", tmp_path_factory.mktemp("restorer") / "run", overrides=LEARN, progress=False)


def held_out(count: int = 200) -> torch.Tensor:
    data = load_dataset(DataConfig(dataset="fashion-mnist", split="test", data_dir=str(FASHION_DIR), download=False))
    return to_model_range(data.samples[:count])


def test_short_training_lowers_held_out_error_well_below_the_degraded_inputs(learned):
    truth = held_out()
    degradation = Degradation(noise_sigma=0.3)
    observed = degradation.corrupt(truth, torch.Generator().manual_seed(0))
    restored = restore_forward(open_checkpoint(learned.run_dir, task="restore").generator, observed, degradation)
    degraded_l1, restored_l1 = (observed - truth).abs().mean().item(), (restored - truth).abs().mean().item()
    assert restored_l1 < 0.5 * degraded_l1, f"held-out L1 {restored_l1:.3f} against the noisy input's {degraded_l1:.3f}"
    grid = learned.run_dir / "samples" / "final.png"
    assert grid.is_file()
    records = [json.loads(line) for line in (learned.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"l1", "psnr"} <= records[-1].keys()


def test_gankit_restore_on_a_restorer_run_writes_outputs_and_raises_psnr(learned, tmp_path, capsys):
    images = ((held_out(24) + 1) * 127.5).round().to(torch.uint8).numpy()
    save_npz(tmp_path / "clean.npz", images, None)
    assert main(["restore", str(learned.run_dir), "--input", str(tmp_path / "clean.npz"), "--out", str(tmp_path / "out"), "--noise", "0.3"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["method"] == "forward" and summary["images"] == 24
    assert summary["psnr_restored"] > summary["psnr_observed"] + 3
    assert all((tmp_path / "out" / name).is_file() for name in ("restored.npz", "restored.png", "strips.png"))
    assert "(forward)" in capsys.readouterr().out


def test_inversion_options_on_a_restorer_run_are_refused_in_one_line(learned, tmp_path, capsys):
    save_npz(tmp_path / "clean.npz", np.zeros((2, 1, 28, 28), np.uint8), None)
    common = ["restore", str(learned.run_dir), "--input", str(tmp_path / "clean.npz"), "--out", str(tmp_path / "out"), "--noise", "0.3"]
    assert main([*common, "--method", "invert"]) == 2
    assert "--method invert does not apply" in capsys.readouterr().err
    assert main([*common, "--steps", "5"]) == 2
    assert "belong to --method invert" in capsys.readouterr().err


def test_commands_that_need_a_generator_refuse_a_restorer_run_in_one_line(learned, tmp_path, capsys):
    assert main(["sample", str(learned.run_dir), "--grid", str(tmp_path / "grid.png")]) == 2
    assert "is a task=restore run, and this needs a task=generate run; restore images with it" in capsys.readouterr().err
    assert main(["info", str(learned.run_dir)]) == 0
    assert "restore" in capsys.readouterr().out


def test_forward_restoration_of_a_generator_run_is_refused(tiny_runs, tmp_path, capsys):
    _, generator_run = tiny_runs
    save_npz(tmp_path / "clean.npz", np.zeros((2, 1, 28, 28), np.uint8), None)
    code = main(["restore", str(generator_run), "--input", str(tmp_path / "clean.npz"), "--out", str(tmp_path / "out"), "--noise", "0.3", "--method", "forward"])
    assert code == 2 and "use --method invert" in capsys.readouterr().err


def test_resumed_restorer_run_equals_an_uninterrupted_one(tmp_path, tiny_npz):
    overrides = [*SMALL, f"data.dataset=npz:{tiny_npz}", "train.deterministic=true", "train.log_every=2", "train.checkpoint_every=3",
                 "train.epochs=3", "stabilizers.ema_decay=0.9", "stabilizers.r1=1", "optim.lr_decay=cosine"]
    straight = train("configs/restore-fashion.yaml", tmp_path / "straight", overrides=overrides, progress=False)
    cut = train("configs/restore-fashion.yaml", tmp_path / "cut", overrides=overrides, max_steps=4, progress=False)
    assert cut.step == 4 < straight.step
    resumed = train(resume=tmp_path / "cut", progress=False)
    expected, state = ckpt.load_checkpoint(straight.checkpoint)
    got, _ = ckpt.load_checkpoint(resumed.checkpoint)
    assert state["config"]["task"] == "restore"
    assert expected.keys() == got.keys()
    different = [name for name in expected if not torch.equal(expected[name], got[name])]
    assert not different, f"tensors differ after resume: {different[:5]}"
    with pytest.raises(ConfigError, match="task cannot change when resuming|only applies to task=restore"):
        train(resume=tmp_path / "cut", overrides=["task=generate"], progress=False)


# --- the config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task=restore", "model.conditional=true"], "task=restore does not support model.conditional"),
        (["task=restore", "stabilizers.pack=2"], "task=restore does not support stabilizers.pack"),
        (["task=restore", "eval.every_epochs=1"], "task=restore does not support eval.every_epochs"),
        (["restore.adv_weight=0.5"], "the restore section only applies to task=restore"),
        (["task=restore", "restore.degradations.blur_sigma=[2,1]"], r"blur_sigma=\[2.0, 1.0\] must be \[low, high\]"),
        (["task=restore", "restore.degradations.noise_sigma=[0,0.3]"], "0 < low <= high"),
        (["task=restore", "restore.degradations.masks=[ring]"], "'center', 'box', 'pixels' or 'strokes'"),
        (["task=restore", "restore.degradations.mask_probability=0", "restore.degradations.noise_probability=0",
          "restore.degradations.blur_probability=0"], "give at least one a chance"),
        (["task=restore", "restore.l1_weight=0", "restore.adv_weight=0"], "nothing would be learned"),
        (["task=paint"], "'generate', 'restore' or 'classify'"),
    ],
)
def test_config_refusals_are_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(None, overrides)
    assert "\n" not in str(caught.value)


def test_every_config_task_has_a_trainer_and_the_presets_load():
    assert set(TRAINERS) == set(typing.get_args(TaskName))
    assert load_config("restore-fashion").task == "restore"
    folder = load_config("restore-folder", ["data.dataset=folder:/somewhere"])
    assert folder.task == "restore" and folder.data.dataset == "folder:/somewhere"
    assert Config().task == "generate"
