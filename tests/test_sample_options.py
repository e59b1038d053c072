"""gankit sample's options: truncation, a fixed class label, latent interpolation strips and GIFs."""

import pytest
import torch
from PIL import Image

from gankit.apps.sample import interpolate, interpolation, slerp
from gankit.models.sampling import class_labels, latents, render, sample
from gankit.cli import main
from gankit.config import DataConfig, ModelConfig, StabilizerConfig
from gankit.data import load_dataset
from gankit.errors import GankitError
from gankit.models import build_models

SHAPE = (1, 28, 28)


def tiny_generator(num_classes=None):
    torch.manual_seed(0)
    generator, _ = build_models(ModelConfig(name="dcgan", width=8, z_dim=16, conditional=bool(num_classes)), StabilizerConfig(), SHAPE, num_classes)
    return generator.eval()


def test_truncation_redraws_entries_beyond_the_threshold():
    plain = latents(4000, 8, torch.Generator().manual_seed(1))
    truncated = latents(4000, 8, torch.Generator().manual_seed(1), truncation=0.5)
    assert truncated.abs().max() <= 0.5
    inside = plain.abs() <= 0.5
    assert torch.equal(truncated[inside], plain[inside])  # redrawn, not rescaled: the entries inside stay
    assert not torch.equal(truncated[~inside], plain[~inside].clamp(-0.5, 0.5))  # and not clipped either
    assert (truncated.abs() > 0.45).float().mean() > 0.05  # the allowed range is still used to its edge
    with pytest.raises(GankitError, match="truncation must be positive"):
        latents(4, 8, torch.Generator(), truncation=0.0)


def test_default_sampling_is_the_plain_normal_stream():
    generator = tiny_generator()
    images, labels = sample(generator, 600, seed=3, batch_size=500)
    rng = torch.Generator().manual_seed(3)
    z = torch.cat([torch.randn(500, 16, generator=rng), torch.randn(100, 16, generator=rng)])
    with torch.no_grad():
        expected = generator(z)
    assert labels is None
    assert torch.allclose(images, expected, atol=1e-6)
    assert torch.equal(images, sample(generator, 600, seed=3, truncation=1e9)[0])
    truncated = sample(generator, 600, seed=3, truncation=0.5)[0]
    assert not torch.allclose(truncated, images)


def test_label_gives_that_class_and_reaches_the_generator():
    generator = tiny_generator(num_classes=3)
    two = class_labels(generator, 10, 2)
    assert two.tolist() == [2] * 10
    assert class_labels(generator, 5).tolist() == [0, 1, 2, 0, 1]
    images_two, labels = sample(generator, 10, seed=0, labels=two)
    images_one, _ = sample(generator, 10, seed=0, labels=class_labels(generator, 10, 1))
    assert labels.tolist() == [2] * 10
    assert not torch.allclose(images_two, images_one)  # same z, another class: another picture
    with pytest.raises(GankitError, match="out of range: this generator knows classes 0 to 2"):
        class_labels(generator, 4, 3)
    with pytest.raises(GankitError, match="out of range"):
        class_labels(generator, 4, -1)
    with pytest.raises(GankitError, match="unconditional"):
        class_labels(tiny_generator(), 4, 0)


def test_interpolation_ends_are_the_samples_of_its_two_latents():
    generator = tiny_generator(num_classes=3)
    rng = torch.Generator().manual_seed(0)
    start, end = latents(4, 16, rng), latents(4, 16, rng)
    labels = torch.tensor([0, 1, 2, 1])
    frames = interpolate(generator, start, end, 7, labels)
    assert frames.shape == (4, 7, *SHAPE)
    assert torch.allclose(frames[:, 0], render(generator, start, labels), atol=1e-6)
    assert torch.allclose(frames[:, -1], render(generator, end, labels), atol=1e-6)
    assert not torch.allclose(frames[:, 3], frames[:, 0]) and not torch.allclose(frames[:, 3], frames[:, -1])
    middle = frames[:, 3]
    assert torch.allclose(middle, render(generator, slerp(start, end, torch.tensor([0.5]))[:, 0], labels), atol=1e-6)


def test_slerp_keeps_the_norm_between_equal_norm_ends():
    a, b = torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([[0.0, 3.0, 0.0]])
    path = slerp(a, b, torch.linspace(0, 1, 5))[0]
    assert torch.allclose(path.norm(dim=1), torch.full((5,), 3.0))
    assert torch.equal(path[0], a[0]) and torch.equal(path[-1], b[0])
    assert torch.allclose(slerp(a, a, torch.tensor([0.5]))[0, 0], a[0])  # parallel ends: no division by zero


def test_interpolation_rows_hold_one_label_and_start_from_the_seed():
    generator = tiny_generator(num_classes=3)
    frames = interpolation(generator, 4, 5, seed=9)
    ends = latents(8, 16, torch.Generator().manual_seed(9))
    assert torch.allclose(frames[:, 0], render(generator, ends[:4], torch.tensor([0, 1, 2, 0])), atol=1e-6)
    fixed = interpolation(generator, 2, 5, seed=9, label=1)
    assert torch.allclose(fixed[:, -1], render(generator, latents(4, 16, torch.Generator().manual_seed(9))[2:], torch.tensor([1, 1])), atol=1e-6)


def test_cli_label_truncation_and_interpolation(tiny_runs, tmp_path, capsys):
    conditional, unconditional = tiny_runs
    assert main(["sample", str(conditional), "-n", "9", "--label", "2", "--truncation", "0.7", "--npz", str(tmp_path / "two.npz")]) == 0
    two = load_dataset(DataConfig(dataset=f"npz:{tmp_path / 'two.npz'}"))
    assert two.labels.tolist() == [2] * 9

    assert main(["sample", str(conditional), "--interpolate", "6", "-n", "3", "--grid", str(tmp_path / "walk.png")]) == 0
    strip = Image.open(tmp_path / "walk.png")
    assert strip.size == (6 * 30 + 2, 3 * 30 + 2)  # 6 steps across, 3 walks down, 28 px + 2 px padding
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames == 2 * 6 - 2  # forward, then back without repeating the ends
        assert gif.size == (3 * 30 + 2, 32)
    assert main(["sample", str(unconditional), "--interpolate", "4", "--out-dir", str(tmp_path / "dir")]) == 0
    assert (tmp_path / "dir" / "interpolation.png").is_file() and (tmp_path / "dir" / "interpolation.gif").is_file()
    assert Image.open(tmp_path / "dir" / "interpolation.png").size == (4 * 30 + 2, 8 * 30 + 2)  # 8 walks by default

    steep = ["sample", str(conditional), "-n", "12", "--label", "1", "--npz"]  # z_dim 100: the random-direction estimate through a conv G
    assert main([*steep, str(tmp_path / "plain.npz")]) == 0 and main([*steep, str(tmp_path / "flat.npz"), "--jacobian-truncation", "0.2"]) == 0
    plain, flat = (load_dataset(DataConfig(dataset=f"npz:{tmp_path / name}")) for name in ("plain.npz", "flat.npz"))
    assert flat.labels.tolist() == [1] * 12 and not torch.equal(plain.samples, flat.samples)
    capsys.readouterr()


def test_eval_uses_the_runs_sampling_settings_unless_told_otherwise(tiny_runs, tmp_path, capsys):
    import json

    run = tmp_path / "run"
    data = f"data.dataset=npz:{tiny_runs[1].parent / 'tiny.npz'}"
    train = ["train", "--config", "dcgan-fashion", "--out", str(run), "--max-steps", "2", data, "train.batch_size=16", "model.width=8"]
    assert main([*train, "sampling.jacobian_truncation=0.1"]) == 0
    assert main(["eval", str(run), "-n", "200", "--out", str(tmp_path / "saved.json")]) == 0  # pixel metrics: no evaluator fits random images
    assert main(["eval", str(run), "-n", "200", "--jacobian-truncation", "0", "--out", str(tmp_path / "off.json")]) == 0
    saved, off = (json.loads((tmp_path / name).read_text()) for name in ("saved.json", "off.json"))
    assert saved["sampling"]["jacobian_truncation"] == 0.1 and off["sampling"]["jacobian_truncation"] == 0.0
    assert saved["metrics"]["pixel_nn_distance_ratio"] != off["metrics"]["pixel_nn_distance_ratio"]  # other samples were scored
    capsys.readouterr()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--label", "0", "--grid", "g.png"], "unconditional"),
        (["--truncation", "-1", "--grid", "g.png"], "truncation must be positive"),
        (["--interpolate", "3", "--npz", "x.npz"], "drop --npz"),
        (["--interpolate", "1", "--grid", "g.png"], "at least 2 steps"),
        (["--jacobian-truncation", "0.5", "--grid", "g.png"], "fraction of z dropped, in [0, 0.5)"),
        (["--interpolate", "3", "--jacobian-truncation", "0.1", "--grid", "g.png"], "interpolation walks through every latent"),
    ],
)
def test_cli_mistakes_get_one_line(tiny_runs, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.chdir(tmp_path)
    assert main(["sample", str(tiny_runs[1]), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


class Step(torch.nn.Module):
    """x = (tanh(30 z_0) + label, 0): two modes at -1 and +1 joined by a steep ramp where z_0 is near 0."""

    num_classes = None

    def __init__(self, z_dim, num_classes=None):
        super().__init__()
        self.z_dim, self.num_classes = z_dim, num_classes
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # so the sampler finds the device

    def forward(self, z, labels=None):
        first = torch.tanh(30 * z[:, :1]) + self.anchor
        if labels is not None:
            first = first + 10 * labels.view(-1, 1)
        return torch.cat([first, torch.zeros_like(first)], 1)


@pytest.mark.parametrize("z_dim", [1, 16])  # the exact norm from the basis, and the random-direction estimate
def test_jacobian_truncation_drops_the_samples_between_modes(z_dim):
    between = lambda samples: samples[:, 0].abs() < 0.9  # noqa: E731
    plain, _ = sample(Step(z_dim), 4000, seed=1)
    assert 0.02 < between(plain).float().mean() < 0.06  # |z_0| < atanh(0.9) / 30 for about 4% of z
    kept, _ = sample(Step(z_dim), 4000, seed=1, jacobian_truncation=0.1)
    assert not between(kept).any()
    assert 0.4 < (kept[:, 0] > 0).float().mean() < 0.6  # both modes stay, in their proportions


def test_jacobian_truncation_keeps_each_samples_label_and_refuses_bad_fractions():
    generator = Step(1, num_classes=3)
    labels = torch.tensor([0, 1, 2] * 200)
    kept, returned = sample(generator, 600, seed=0, labels=labels, jacobian_truncation=0.2)
    assert torch.equal(returned, labels)
    assert torch.equal(kept[:, 0].round().div(10).round().long(), labels)  # each sample drawn for its own class
    assert (kept[:, 0] - 10 * labels).abs().min() > 0.9
    for fraction in (-0.1, 0.5):
        with pytest.raises(GankitError, match=r"fraction of z dropped, in \[0, 0.5\)"):
            sample(generator, 10, jacobian_truncation=fraction)


def test_jacobian_norm_is_the_frobenius_norm_of_dg_dz():
    from gankit.models.sampling import jacobian_norms

    class Linear(torch.nn.Module):
        z_dim, num_classes = 3, None

        def __init__(self):
            super().__init__()
            self.matrix = torch.nn.Parameter(torch.tensor([[1.0, 2.0, 0.0], [0.0, -2.0, 4.0]]))

        def forward(self, z, labels=None):
            return z @ self.matrix.T

    norms = jacobian_norms(Linear(), torch.randn(5, 3), None, torch.Generator())
    assert torch.allclose(norms, torch.full((5,), 5.0))  # sqrt(1 + 4 + 4 + 16)
