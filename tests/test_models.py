"""Model contracts: the exact reference pair, shapes and ranges, conditioning, and D's stabilizers."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gankit.config import ModelConfig, StabilizerConfig
from gankit.errors import ConfigError
from gankit.models import build_models

NUM_CLASSES = 10
# (model name, sample shape, width): dcgan at width 8 keeps the tests fast on CPU.
CASES = [
    ("mlp-reference", (1, 28, 28), 64),
    ("mlp-reference", (3, 32, 32), 64),
    ("dcgan", (1, 28, 28), 8),
    ("dcgan", (3, 32, 32), 8),
    ("dcgan", (3, 64, 64), 8),
    ("mlp-toy", (2,), 16),
]
CASE_IDS = [f"{name}-{'x'.join(map(str, shape))}" for name, shape, _ in CASES]


def build(name: str, shape: tuple[int, ...], width: int = 64, *, conditional: bool = False, **stabilizers):
    model = ModelConfig(name=name, width=width, conditional=conditional)
    return build_models(model, StabilizerConfig(**stabilizers), shape, NUM_CLASSES if conditional else None)


def leaves(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if not list(m.children())]


def describe(layers: list[nn.Module]) -> list[tuple]:
    return [(type(m).__name__, m.in_features, m.out_features) if isinstance(m, nn.Linear) else (type(m).__name__,) for m in layers]


def weight_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.Embedding))]


def first_weight_layer(module: nn.Module) -> nn.Module:
    return weight_layers(module)[0]


def top_singular_value(matrix: torch.Tensor) -> float:
    """sqrt of the top eigenvalue of the smaller Gram matrix: a full SVD of D's 1024 x 3072 layer takes seconds."""
    gram = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
    return torch.linalg.eigvalsh(gram.double())[-1].sqrt().item()


# --- the reference pair ------------------------------------------------------------------------

REFERENCE_G = [("Linear", 100, 256), ("ReLU",), ("Linear", 256, 512), ("ReLU",), ("Linear", 512, 1024), ("ReLU",), ("Linear", 1024, 784), ("Tanh",)]
REFERENCE_D = [("Linear", 784, 1024), ("ReLU",), ("Linear", 1024, 512), ("ReLU",), ("Linear", 512, 256), ("ReLU",), ("Linear", 256, 1), ("Sigmoid",)]


def reference_pair():
    model = ModelConfig(name="mlp-reference", d_output="sigmoid")
    return build_models(model, StabilizerConfig(), (1, 28, 28), None)


def test_reference_layers_and_parameter_counts():
    generator, discriminator = reference_pair()
    assert describe(leaves(generator)) == REFERENCE_G
    assert describe(leaves(discriminator)) == REFERENCE_D
    assert sum(p.numel() for p in generator.parameters()) == 1_486_352
    assert sum(p.numel() for p in discriminator.parameters()) == 1_460_225
    assert (generator.z_dim, generator.sample_shape, generator.num_classes) == (100, (1, 28, 28), None)
    assert (discriminator.pack, discriminator.num_classes) == (1, None)


def test_reference_matches_a_hand_built_sequential():
    torch.manual_seed(0)
    generator, discriminator = reference_pair()
    for ours, spec in ((generator, REFERENCE_G), (discriminator, REFERENCE_D)):
        hand_built = nn.Sequential(*(nn.Linear(*layer[1:]) if layer[0] == "Linear" else getattr(nn, layer[0])() for layer in spec))
        for theirs_param, our_param in zip(hand_built.parameters(), ours.parameters(), strict=True):
            theirs_param.data.copy_(our_param.data)
        if ours is generator:
            z = torch.randn(5, 100)
            torch.testing.assert_close(generator(z), hand_built(z).view(5, 1, 28, 28), rtol=0, atol=0)
        else:
            x = torch.rand(5, 1, 28, 28) * 2 - 1
            torch.testing.assert_close(discriminator(x), hand_built(x.view(5, 784)).squeeze(1), rtol=0, atol=0)


def test_sigmoid_output_is_probabilities_and_default_is_logits():
    _, discriminator = reference_pair()
    scores = discriminator(torch.randn(64, 1, 28, 28) * 5)
    assert discriminator.score_space == "probabilities"
    assert ((scores > 0) & (scores < 1)).all()
    _, logits_d = build("mlp-reference", (1, 28, 28))
    assert logits_d.score_space == "logits"
    assert not any(isinstance(m, nn.Sigmoid) for m in logits_d.modules())


# --- every architecture ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "shape", "width"), CASES, ids=CASE_IDS)
def test_shapes_and_range(name, shape, width):
    torch.manual_seed(0)
    generator, discriminator = build(name, shape, width)
    fake = generator(torch.randn(6, generator.z_dim))
    assert fake.shape == (6, *shape)
    assert discriminator(fake).shape == (6,)
    if len(shape) == 3:
        assert fake.min() >= -1 and fake.max() <= 1
    else:  # toy output is unbounded: no Tanh squashing it
        assert not any(isinstance(m, nn.Tanh) for m in generator.modules())


@pytest.mark.parametrize(("name", "shape", "width"), CASES, ids=CASE_IDS)
def test_conditional_outputs_depend_on_the_label(name, shape, width):
    torch.manual_seed(0)
    generator, discriminator = build(name, shape, width, conditional=True)
    generator.eval(), discriminator.eval()
    assert generator.num_classes == discriminator.num_classes == NUM_CLASSES
    z = torch.randn(4, generator.z_dim)
    zeros, threes = torch.zeros(4, dtype=torch.long), torch.full((4,), 3)
    fake = generator(z, zeros)
    assert fake.shape == (4, *shape)
    assert not torch.allclose(fake, generator(z, threes))
    scores = discriminator(fake, zeros)
    assert scores.shape == (4,)
    assert not torch.allclose(scores, discriminator(fake, threes))
    with pytest.raises(ValueError, match="labels"):
        discriminator(fake)


def test_dcgan_init_and_layout():
    generator, discriminator = build("dcgan", (3, 64, 64), 32)
    convs = [m for m in weight_layers(generator) + weight_layers(discriminator) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(abs(m.weight.std().item() - 0.02) < 0.005 for m in convs)
    norms = [m for m in discriminator.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(abs(m.weight.mean().item() - 1) < 0.01 for m in norms)
    # D's first block has no BatchNorm, the other three do; widths double inward from `width`.
    d_convs = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in d_convs] == [32, 64, 128, 256] and len(norms) == 3
    g_convs = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.out_channels for m in g_convs] == [256, 128, 64, 32, 3]
    _, no_norm_d = build_models(ModelConfig(name="dcgan", width=32, d_norm="none"), StabilizerConfig(), (3, 64, 64), None)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in no_norm_d.modules())


# --- D's stabilizers ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "shape", "width"), CASES, ids=CASE_IDS)
def test_packing(name, shape, width):
    torch.manual_seed(0)
    _, discriminator = build(name, shape, width, pack=4)
    discriminator.eval()
    first = first_weight_layer(discriminator)
    in_width = first.in_features if isinstance(first, nn.Linear) else first.in_channels
    unpacked_width = shape[0] if len(shape) == 3 and name == "dcgan" else torch.Size(shape).numel()
    assert in_width == 4 * unpacked_width
    x = torch.randn(8, *shape)
    scores = discriminator(x)
    assert scores.shape == (2,)
    changed = x.clone()
    changed[5] += 1  # sample 5 belongs to the second group of four only
    changed_scores = discriminator(changed)
    assert changed_scores[0] == scores[0] and changed_scores[1] != scores[1]
    with pytest.raises(ValueError, match="multiple of 4"):
        discriminator(torch.randn(6, *shape))


@pytest.mark.parametrize(("name", "shape", "width"), CASES, ids=CASE_IDS)
def test_spectral_norm(name, shape, width):
    torch.manual_seed(0)
    _, discriminator = build(name, shape, width, conditional=True, spectral_norm=True)
    layers = weight_layers(discriminator)
    assert len(layers) >= 3 and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert isinstance(layers[-1], nn.Embedding)  # the projection embedding is normalized too
    discriminator.train()
    x, labels = torch.randn(8, *shape), torch.randint(0, NUM_CLASSES, (8,))
    with torch.no_grad():
        for _ in range(5):
            discriminator(x, labels)
        for layer in layers:
            assert top_singular_value(layer.weight.flatten(1)) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize(("name", "shape", "width"), CASES, ids=CASE_IDS)
def test_dropout(name, shape, width):
    torch.manual_seed(0)
    _, plain = build(name, shape, width)
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    _, discriminator = build(name, shape, width, d_dropout=0.5)
    activations = [m for m in discriminator.features if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    dropouts = [m for m in discriminator.features if isinstance(m, nn.Dropout)]
    assert len(dropouts) == len(activations) and all(m.p == 0.5 for m in dropouts)
    x = torch.randn(8, *shape)
    discriminator.train()
    assert not torch.equal(discriminator(x), discriminator(x))
    discriminator.eval()
    assert torch.equal(discriminator(x), discriminator(x))


# --- model and data that do not fit -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("dcgan", (3, 48, 48), "28x28, 32x32, 64x64"),
        ("dcgan", (1, 28, 32), "not 28x32"),
        ("dcgan", (2,), "image model"),
        ("mlp-reference", (2,), "image model"),
        ("mlp-toy", (1, 28, 28), "points"),
    ],
)
def test_model_for_the_wrong_data_is_a_config_error(name, shape, message):
    with pytest.raises(ConfigError, match=message):
        build(name, shape)


def test_conditional_without_labels_is_a_config_error():
    with pytest.raises(ConfigError, match="conditional"):
        build_models(ModelConfig(conditional=True), StabilizerConfig(), (1, 28, 28), None)
