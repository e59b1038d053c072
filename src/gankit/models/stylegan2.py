"""A StyleGAN2-style G and a residual D (Karras et al. 2020) for 32-256 px.

G = synthesis(mapping(z)). The mapping network normalizes z (with the label code appended when
conditional) and maps it through `model.mapping_layers` equalized linear layers to w. Synthesis
starts from a learned 4x4 constant; each layer is a 3x3 convolution whose weights are modulated by
a style (an affine map of w) and demodulated to unit output variance, plus per-pixel noise of a
learned strength; every resolution adds its toRGB output to the up-sampled image so far (the skip
architecture). All weights use the equalized learning rate: stored N(0, 1), scaled by He's
constant at run time, so Adam's per-weight steps are the same relative size everywhere.
Departures, for short code: bilinear up-sampling and average pooling instead of FIR filters, one w
for all layers (no style mixing), and a final Tanh so images obey G's [-1, 1] contract.

D: fromRGB, residual blocks down to 4x4 (outputs scaled by sqrt(1/2)), a minibatch standard
deviation channel (groups of 4 consecutive samples), conv3, a linear layer; the wrapper's head and
projection score it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gankit.models.common import Discriminator, DSettings, Generator, ModelSettings, RunningMean, generator_input_width, settings_discriminator

SIZES = (32, 64, 128, 256)
START_SIDE = 4
MAPPING_LR_MULTIPLIER = 0.01  # the mapping network learns 100x slower (StyleGAN's setting)
MINIBATCH_STD_GROUP = 4
ACTIVATION_GAIN = math.sqrt(2)  # keeps unit variance through LeakyReLU(0.2) at He's init


def channels_at(side: int, width: int) -> int:
    """Feature channels at a resolution: 512 * width / side, at most 8 * width (StyleGAN2's
    32768 / side capped at 512 when width is 64)."""
    return min(8 * width, 512 * width // side)


def build_stylegan2(
    model: ModelSettings, stabilizers: DSettings, sample_shape: tuple[int, ...], num_classes: int | None
) -> tuple[Generator, Discriminator]:
    channels, side, _ = sample_shape
    sides = [START_SIDE * 2**i for i in range(int(math.log2(side // START_SIDE)) + 1)]
    w_dim = 8 * model.width
    mapping = MappingNetwork(generator_input_width(model.z_dim, num_classes), w_dim, model.mapping_layers)
    synthesis = SynthesisNetwork(w_dim, [channels_at(s, model.width) for s in sides], channels)
    generator = StyleGenerator(mapping, synthesis, model.z_dim, sample_shape, num_classes)
    features = StyleDiscriminatorFeatures(channels * stabilizers.pack, [channels_at(s, model.width) for s in reversed(sides)])
    discriminator = settings_discriminator(features, features.feature_dim, sample_shape, model, stabilizers, num_classes)
    return generator, discriminator


class StyleGenerator(Generator):
    """G(z, labels) = synthesize(map(z, labels)), with both halves exposed for path-length
    regularization, and the running mean of path lengths in a buffer, so a checkpoint keeps it."""

    def __init__(self, mapping: MappingNetwork, synthesis: SynthesisNetwork, z_dim: int, sample_shape: tuple[int, ...], num_classes: int | None) -> None:
        super().__init__(nn.Sequential(mapping, synthesis), z_dim, sample_shape, num_classes)
        self.path_length_mean = RunningMean()

    def map(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """(N, z_dim) z [and labels] -> (N, w_dim) w."""
        mapping, _ = self.body
        return mapping(self.code(z, labels))

    def synthesize(self, w: torch.Tensor) -> torch.Tensor:
        """(N, w_dim) w -> (N, C, side, side) images in [-1, 1]."""
        _, synthesis = self.body
        return synthesis(w)


class EqualizedLinear(nn.Module):
    """Linear with the equalized learning rate: weight N(0, 1 / lr_multiplier), used times lr_multiplier / sqrt(in)."""

    def __init__(self, width_in: int, width_out: int, bias_init: float = 0.0, lr_multiplier: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(width_out, width_in) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((width_out,), bias_init / lr_multiplier))
        self.weight_gain = lr_multiplier / math.sqrt(width_in)
        self.lr_multiplier = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_multiplier)


class EqualizedConv2d(nn.Module):
    """Conv2d (same padding) with the equalized learning rate."""

    def __init__(self, width_in: int, width_out: int, kernel: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(width_out, width_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(width_out)) if bias else None
        self.weight_gain = 1 / math.sqrt(width_in * kernel * kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.weight.shape[-1] // 2)


def normalize_second_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x^2)) per sample: z on the sphere of radius sqrt(dim), whatever its draw."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """(N, input_width) -> (N, w_dim): normalize, then `layers` equalized linear layers with LeakyReLU."""

    def __init__(self, input_width: int, w_dim: int, layers: int) -> None:
        super().__init__()
        widths = [input_width] + [w_dim] * layers
        self.layers = nn.ModuleList(EqualizedLinear(a, b, lr_multiplier=MAPPING_LR_MULTIPLIER) for a, b in zip(widths, widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = normalize_second_moment(x)
        for layer in self.layers:
            x = _activate(layer(x))
        return x


class ModulatedConv2d(nn.Module):
    """A conv whose input channels are scaled per sample by a style s = affine(w); with `demodulate`,
    each output filter is then divided by its norm, so unit-variance inputs give unit-variance
    outputs whatever the style. One grouped convolution runs every sample's own weights."""

    def __init__(self, width_in: int, width_out: int, kernel: int, w_dim: int, demodulate: bool = True) -> None:
        super().__init__()
        self.affine = EqualizedLinear(w_dim, width_in, bias_init=1.0)  # styles start at 1: the plain conv
        self.weight = nn.Parameter(torch.randn(width_out, width_in, kernel, kernel))
        self.weight_gain = 1 / math.sqrt(width_in * kernel * kernel)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)
        if _exporting():
            return self._shared_weight_form(x, styles)
        batch, width_in, height, width = x.shape
        weight = self.weight[None] * self.weight_gain * styles[:, None, :, None, None]  # (N, out, in, k, k)
        if self.demodulate:
            weight = weight * (weight.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
        out = F.conv2d(x.reshape(1, batch * width_in, height, width), weight.flatten(0, 1), padding=self.weight.shape[-1] // 2, groups=batch)
        return out.view(batch, -1, height, width)

    def _shared_weight_form(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        """The same result with one weight for the batch: scale the input channels by the styles, convolve,
        scale the output channels by the demodulation factors. A traced or exported graph needs it: the
        grouped form's group count is the batch size, which tracing would freeze to the example's."""
        weight = self.weight * self.weight_gain
        out = F.conv2d(x * styles[:, :, None, None], weight, padding=self.weight.shape[-1] // 2)
        if not self.demodulate:
            return out
        norms = (styles.square() @ weight.square().sum(dim=(2, 3)).T + 1e-8).rsqrt()  # (N, out)
        return out * norms[:, :, None, None]


class StyleLayer(nn.Module):
    """[Up-sample,] modulated conv3, noise times a learned strength (0 at init), bias, LeakyReLU.

    Training draws fresh per-pixel noise; in eval mode the layer adds its own fixed noise map (drawn
    once, kept with the weights), so a sample is a function of z alone: the same seed, the same
    images, and a traced or exported G is deterministic (StyleGAN2's 'const' noise mode)."""

    def __init__(self, width_in: int, width_out: int, w_dim: int, side: int, up: bool = False) -> None:
        super().__init__()
        self.up = up
        self.conv = ModulatedConv2d(width_in, width_out, 3, w_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("fixed_noise", torch.randn(1, 1, side, side))
        self.bias = nn.Parameter(torch.zeros(width_out))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = _upsample(x)
        x = self.conv(x, w)
        noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) if self.training else self.fixed_noise
        return _activate(x + noise * self.noise_strength + self.bias[:, None, None])


class ToImage(nn.Module):
    """toRGB: a modulated 1x1 conv without demodulation, plus a bias, to `channels` image channels."""

    def __init__(self, width_in: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(width_in, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[:, None, None]


class SynthesisNetwork(nn.Module):
    """(N, w_dim) w -> (N, channels, side, side) in [-1, 1]; widths[i] channels at side 4 * 2**i."""

    def __init__(self, w_dim: int, widths: list[int], channels: int) -> None:
        super().__init__()
        self.constant = nn.Parameter(torch.randn(widths[0], START_SIDE, START_SIDE))
        self.first = StyleLayer(widths[0], widths[0], w_dim, START_SIDE)
        self.first_image = ToImage(widths[0], channels, w_dim)
        self.blocks = nn.ModuleList(
            nn.ModuleList([
                StyleLayer(width_in, width_out, w_dim, side, up=True),
                StyleLayer(width_out, width_out, w_dim, side),
                ToImage(width_out, channels, w_dim),
            ])
            for side, (width_in, width_out) in zip((START_SIDE * 2**i for i in range(1, len(widths))), zip(widths, widths[1:]))
        )

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        x = self.first(self.constant.expand(w.shape[0], -1, -1, -1), w)
        image = self.first_image(x, w)
        for up_layer, layer, to_image in self.blocks:
            x = layer(up_layer(x, w), w)
            image = _upsample(image) + to_image(x, w)
        return torch.tanh(image)


class MinibatchStd(nn.Module):
    """Appends one channel: the standard deviation across each group of `group` consecutive samples,
    averaged over features and positions, so D can see a batch's lack of variety. Consecutive (not
    strided) groups keep the real and the fake halves of a joint D pass apart when the half is a
    multiple of the group; a batch the group does not divide uses the largest size that does."""

    def __init__(self, group: int = MINIBATCH_STD_GROUP) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        group = math.gcd(self.group, batch)
        grouped = x.view(batch // group, group, channels, height, width)
        spread = (grouped.var(dim=1, unbiased=False) + 1e-8).sqrt()  # the epsilon keeps the gradient finite at zero spread
        spread = spread.mean(dim=(1, 2, 3)).repeat_interleave(group)  # one value per sample
        return torch.cat([x, spread.view(batch, 1, 1, 1).expand(batch, 1, height, width)], dim=1)


class ResidualDownBlock(nn.Module):
    """(N, in, s, s) -> (N, out, s/2, s/2): conv3-act-conv3-act-pool plus a pooled 1x1 shortcut, times sqrt(1/2)."""

    def __init__(self, width_in: int, width_out: int) -> None:
        super().__init__()
        self.conv1 = EqualizedConv2d(width_in, width_in, 3)
        self.conv2 = EqualizedConv2d(width_in, width_out, 3)
        self.shortcut = EqualizedConv2d(width_in, width_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _activate(self.conv2(_activate(self.conv1(x))))
        return (F.avg_pool2d(h, 2) + self.shortcut(F.avg_pool2d(x, 2))) * math.sqrt(0.5)


class StyleDiscriminatorFeatures(nn.Module):
    """(N, in_channels, side, side) -> (N, widths[-1]); widths[i] channels at side / 2**i, the last at 4x4."""

    def __init__(self, in_channels: int, widths: list[int]) -> None:
        super().__init__()
        self.from_image = EqualizedConv2d(in_channels, widths[0], 1)
        self.blocks = nn.Sequential(*(ResidualDownBlock(a, b) for a, b in zip(widths, widths[1:])))
        self.minibatch_std = MinibatchStd()
        self.conv = EqualizedConv2d(widths[-1] + 1, widths[-1], 3)
        self.fc = EqualizedLinear(widths[-1] * START_SIDE * START_SIDE, widths[-1])
        self.feature_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(_activate(self.from_image(x)))
        x = _activate(self.conv(self.minibatch_std(x)))
        return _activate(self.fc(x.flatten(1)))


def _exporting() -> bool:
    """Whether this forward is being traced (TorchScript) or exported (ONNX, torch.export)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def _activate(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * ACTIVATION_GAIN


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
