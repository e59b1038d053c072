"""Check gankit's FID Inception-v3 port against pytorch-fid's own network, number for number.

Why: src/gankit/metrics/inception.py re-implements pytorch-fid's FID Inception (FIDInceptionA/C/E_1/E_2
on torchvision's Inception-v3) without torchvision. The real weights cannot be fetched here, so this
gives pytorch-fid's network random but calibrated weights (fixed seed; every conv, BatchNorm tensor and
the fc randomized, activations kept O(1)), saves them as a torch.save .pth, sends that file through
gankit's real path (convert_inception -> safetensors -> load_inception) and compares pool3 features and
fc logits on [-1, 1] inputs of several sizes. It then breaks the port on purpose (BN eps, padding in
the average pools, Mixed_7b/7c pool kind, resize) to show that these weights would expose such a fault,
and names the first block whose output differs.

It needs torchvision and pytorch-fid, which gankit's own venv must not have; run it from a separate one:
    python3.11 -m venv /tmp/tvenv
    /tmp/tvenv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/tvenv/bin/pip install pytorch-fid safetensors numpy pillow scipy pyyaml pydantic matplotlib tqdm torchmetrics
    /tmp/tvenv/bin/python scripts/check_inception_port.py
    /tmp/tvenv/bin/python scripts/check_inception_port.py --weights pt_inception-2015-12-05-6726825d.pth   # the real file
Exit status 0: every case within tolerance and every deliberate fault detected; 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import torch
import torch.nn.functional as F
from pytorch_fid import inception as pfid
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from gankit.metrics import inception as gankit_inception  # noqa: E402

# Same kernels in the same order on both sides; only pool3's mean (AdaptiveAvgPool2d vs Tensor.mean) may
# sum in another order. fp32 rounding through ~100 layers stays far below 1e-4 of the largest value,
# while every structural fault tried below moves the output by more than 1e-3.
REL_TOLERANCE = 1e-4
# (channels, size, unit): unit feeds pytorch-fid (x + 1) / 2 with its default normalize_input=True (its fid_score path)
CASES = [(1, 28, False), (3, 32, False), (3, 64, False), (3, 299, False), (3, 64, True)]
BATCH = 4
BLOCKS = [
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "Mixed_5b", "Mixed_5c",
    "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
]


def build_pytorch_fid() -> tuple[nn.Module, nn.Module]:
    """pytorch-fid's InceptionV3 wrapper (block 3, resize, no normalization) and the Inception3 it was cut from.

    fid_inception_v3() would download the weights; the loader is replaced by one that hands back the
    freshly built network's own state dict, recorded by wrapping the constructor pytorch-fid calls.
    """
    built, construct = [], pfid._inception_v3

    def record(*args, **kwargs):
        built.append(construct(*args, **kwargs))
        return built[-1]

    with mock.patch.object(pfid, "_inception_v3", record), mock.patch.object(
        pfid, "load_state_dict_from_url", lambda *args, **kwargs: built[-1].state_dict()
    ):
        wrapper = pfid.InceptionV3([3], resize_input=True, normalize_input=False, use_fid_inception=True)
    net = built[-1]
    assert isinstance(net.Mixed_7c, pfid.FIDInceptionE_2) and isinstance(net.Mixed_5b, pfid.FIDInceptionA)
    return wrapper.eval(), net.eval()


def randomize(wrapper: nn.Module, net: nn.Module, calibration: torch.Tensor, generator: torch.Generator) -> None:
    """Random conv/fc weights; BatchNorm running stats set, layer by layer, near the statistics of what reaches it.

    A pre-hook sees each BatchNorm's real input on a calibration batch, so every layer's output stays O(1);
    the stats are then perturbed (mean shifted, variance scaled 0.5-2x) and the affine weight/bias drawn at random.
    """

    def uniform(shape, low, high):
        return torch.rand(shape, generator=generator) * (high - low) + low

    def calibrate(bn: nn.BatchNorm2d, inputs):
        x = inputs[0].detach()
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
        n = bn.num_features
        bn.running_mean.copy_(mean + 0.2 * var.sqrt() * torch.randn(n, generator=generator))
        bn.running_var.copy_(var * uniform(n, 0.5, 2.0) + 1e-2)
        bn.weight.data.copy_(uniform(n, 0.5, 1.5))
        bn.bias.data.copy_(uniform(n, -0.5, 0.5))

    hooks = []
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            module.weight.data.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            if module.bias is not None:
                module.bias.data.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
        elif isinstance(module, nn.BatchNorm2d):
            hooks.append(module.register_forward_pre_hook(calibrate))
    with torch.no_grad():
        wrapper(calibration)
    for hook in hooks:
        hook.remove()


def reference(wrapper: nn.Module, net: nn.Module, images: torch.Tensor, unit: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """pytorch-fid's pool3 (flattened block-3 output) and logits net.fc(pool3); gray repeated to 3 channels first.

    unit: give pytorch-fid [0, 1] images and let it map them to [-1, 1] after resizing, as its fid_score does.
    """
    images = images.expand(-1, 3, -1, -1)
    wrapper.normalize_input = unit
    try:
        pool3 = wrapper((images + 1) / 2 if unit else images)[0].flatten(1)
    finally:
        wrapper.normalize_input = False
    return pool3, net.fc(pool3)


def relative(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    diff = (a - b).abs().max().item()
    return diff, diff / b.abs().max().item()


@contextmanager
def block_outputs(model: nn.Module):
    """Records the output of each named Inception block while the context is open."""
    seen = {}
    hooks = [getattr(model, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o)) for name in BLOCKS]
    try:
        yield seen
    finally:
        for hook in hooks:
            hook.remove()


def first_differing_block(net: nn.Module, wrapper: nn.Module, ours: nn.Module, images: torch.Tensor) -> str:
    with block_outputs(net) as theirs, block_outputs(ours) as mine:
        wrapper(images.expand(-1, 3, -1, -1))
        ours.features(images)
    for name in BLOCKS:
        if theirs[name].shape != mine[name].shape:
            return f"{name} (shape {tuple(mine[name].shape)} vs {tuple(theirs[name].shape)})"
        _, rel = relative(mine[name], theirs[name])
        if rel > REL_TOLERANCE:
            return f"{name} (rel {rel:.2e})"
    return "none"


def faults(ours: nn.Module):
    """Deliberate departures from pytorch-fid, each as (name, context manager applying it to the gankit model)."""
    interpolate = F.interpolate

    def pool_counting_padding(x, kind):
        return F.max_pool2d(x, 3, 1, 1) if kind == "max" else F.avg_pool2d(x, 3, 1, 1, count_include_pad=True)

    @contextmanager
    def pool_kind(block, kind):
        before, block.pool = block.pool, kind
        try:
            yield
        finally:
            block.pool = before

    return [
        ("BN eps 1e-5 instead of 1e-3", mock.patch.object(gankit_inception, "BN_EPS", 1e-5)),
        ("avg pools count padding", mock.patch.object(gankit_inception, "_pool_3x3", pool_counting_padding)),
        ("Mixed_7c avg pool instead of max", pool_kind(ours.Mixed_7c, "avg")),
        ("Mixed_7b max pool instead of avg", pool_kind(ours.Mixed_7b, "max")),
        ("resize with align_corners=True", mock.patch.object(gankit_inception, "F", SimpleNamespace(
            **{**vars(F), "interpolate": lambda x, **kw: interpolate(x, **{**kw, "align_corners": True})}))),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="pytorch-fid's real .pth (trusted, loaded tensors-only); default: random weights")
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(20151205)
    wrapper, net = build_pytorch_fid()
    if args.weights:
        print(f"weights: {args.weights} sha256 {hashlib.sha256(args.weights.read_bytes()).hexdigest()}")
        net.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    else:
        calibration = torch.cat([
            F.interpolate(torch.rand(1, c, s, s, generator=generator) * 2 - 1, size=(299, 299), mode="bilinear").expand(-1, 3, -1, -1)
            for c, s, unit in CASES if not unit
        ])
        randomize(wrapper, net, calibration, generator)
    state = net.state_dict()
    counted = [name for name in state if not name.endswith("num_batches_tracked")]
    print(f"pytorch-fid network: {len(counted)} tensors besides BatchNorm counters, {sum(p.numel() for p in net.parameters()):,} parameters")

    with tempfile.TemporaryDirectory() as folder:
        pth, converted = Path(folder, "random_fid_inception.pth"), Path(folder, "random_fid_inception.safetensors")
        torch.save(state, pth)
        gankit_inception.convert_inception(pth, converted, trust=True)
        ours, _ = gankit_inception.load_inception(converted)

    ok = True
    inputs = {case: torch.rand(BATCH, case[0], case[1], case[1], generator=generator) * 2 - 1 for case in CASES}
    print(f"\n{'input':>18} | {'pool3 max abs':>13} {'pool3 rel':>10} | {'logits max abs':>14} {'logits rel':>10} | feature mean/std  | result")
    with torch.no_grad():
        for (channels, size, unit), images in inputs.items():
            pool3, logits = reference(wrapper, net, images, unit)
            features = ours.features(images)
            (pool_abs, pool_rel), (logit_abs, logit_rel) = relative(features, pool3), relative(ours.head(features), logits)
            sane = bool(torch.isfinite(pool3).all() and torch.isfinite(logits).all()) and pool3.std().item() > 1e-2
            passed = sane and max(pool_rel, logit_rel) <= REL_TOLERANCE
            ok &= passed
            label = f"{BATCH}x{channels}x{size}x{size}" + (" [0,1]" if unit else "")
            print(f"{label:>18} | {pool_abs:13.3e} {pool_rel:10.3e} | {logit_abs:14.3e} {logit_rel:10.3e} | "
                  f"{pool3.mean().item():6.3f} / {pool3.std().item():6.3f} | {'ok' if passed else 'FAIL'}")
            if not passed:
                print(f"    first block that differs: {first_differing_block(net, wrapper, ours, images)}")

        print("\nDeliberate faults in the gankit model (3x32x32 input); each must move pool3 beyond the tolerance:")
        images = inputs[(3, 32, False)]
        pool3, _ = reference(wrapper, net, images)
        for name, fault in faults(ours):
            with fault:
                _, rel = relative(ours.features(images), pool3)
                block = first_differing_block(net, wrapper, ours, images)
            detected = rel > REL_TOLERANCE
            ok &= detected
            print(f"  {name:<36} pool3 rel {rel:9.3e}  first differing block: {block:<28} {'detected' if detected else 'MISSED'}")

    print(f"\n{'PASS' if ok else 'FAIL'} (tolerance: max |diff| <= {REL_TOLERANCE:g} x max |pytorch-fid value|, fp32)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
