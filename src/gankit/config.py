"""The run config: validated pydantic models, YAML presets and dotted key=value overrides.

Every option has a documented default; an unknown key or a bad value is a ConfigError whose
one-line message names the key and what is allowed.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gankit.degradations import MASK_SHAPES, MAX_BLUR_SIGMA, MAX_NOISE_SIGMA
from gankit.diffaugment import POLICIES
from gankit.errors import ConfigError
from gankit.losses import LOSSES, losses_that
from gankit.models import BUILDERS, architectures_that, spectral_norm_of, unsupported_d_stabilizer

LossName = Literal[tuple(LOSSES)]
ModelName = Literal[tuple(BUILDERS)]
PrecisionName = Literal["fp32", "bf16-mixed", "bf16", "fp16-mixed"]
TaskName = Literal["generate", "restore", "classify"]  # training.tasks.TRAINERS holds the trainer of each
MaskShape = Literal[MASK_SHAPES]
MAX_SEED = 2**32 - 1  # seeds are combined with step and epoch numbers into torch's 64-bit seeds
MAX_CONFIG_VALUES = 10_000  # a config with YAML aliases may not expand beyond this many values
MAX_ECHO = 80  # characters of a user's value repeated in an error line


NAMED_BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}


def background_rgb(text: str) -> tuple[int, int, int]:
    """The (R, G, B) of a data.background value: white, black or #RRGGBB."""
    if text in NAMED_BACKGROUNDS:
        return NAMED_BACKGROUNDS[text]
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", text):
        raise ValueError("use white, black or a colour #RRGGBB (for example #808080)")
    return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Section):
    dataset: str = Field(
        "fashion-mnist", description="mnist, fashion-mnist, idx:PATH, folder:PATH, npz:PATH, toy:ring8, toy:grid25, stacked-mnist[:SOURCE]"
    )
    split: Literal["train", "test"] = Field("train", description="which split of a named dataset")
    data_dir: str | None = Field(None, description="looked in first for named datasets")
    image_size: int | None = Field(None, ge=8, le=1024, description="resize folder images to this; None keeps 64 for folders, native size otherwise")
    channels: Literal[1, 3] | None = Field(None, description="force grayscale (1) or RGB (3) for folder images")
    generated_samples: int = Field(100_000, gt=0, le=2_000_000, description="size of a generated dataset (2-D toys, stacked-mnist)")
    download: bool = Field(True, description="allow downloading a named dataset that is not found locally")
    per_class: int | None = Field(None, gt=0, description="keep only this many labelled images per class (few-shot); None keeps all")
    class_counts: dict[Annotated[int, Field(ge=0)], Annotated[int, Field(gt=0)]] | None = Field(
        None, description="keep only this many images of each listed class, e.g. {2: 60, 4: 60, 6: 60} (an imbalanced set); the other classes stay whole"
    )
    subset_seed: int = Field(
        0, ge=0, le=MAX_SEED, description="picks the per_class or class_counts images and the labels_per_class labels; a larger count with the same seed keeps the smaller pick"
    )
    labels_per_class: int | None = Field(
        None, gt=0, description="task=classify: keep the labels of only this many images per class (picked like per_class); the others train unlabelled"
    )
    holdout: float = Field(
        0.0, ge=0, le=0.5, description="hold out this fraction of a dataset without a test split (a seeded pick, stratified by class) as its test split: data.split=test reads it"
    )
    background: str = Field(
        "white", description="folder images: transparent pixels are composited onto this (white, black or #RRGGBB); padding (fit=pad) uses it too"
    )
    fit: Literal["crop", "pad", "stretch"] = Field(
        "crop", description="folder images that are not square: crop (shorter side to size, centre crop), pad (longer side to size, background around), stretch"
    )
    xflip: bool = Field(False, description="add a mirrored copy of every image (the data doubles; mirrored per batch, no extra memory)")
    workers: int | None = Field(None, gt=0, le=1024, description="processes decoding a folder's images; None: one per CPU core; 1 decodes in this process")
    cache: bool = Field(True, description="keep a folder's decoded images as one .npy file, so the next run loads them without decoding")
    cache_dir: str | None = Field(None, description="where decoded folders are cached; None: $GANKIT_CACHE_DIR, else ~/.cache/gankit/folders")
    device_memory_mb: int = Field(
        1024, ge=0, description="datasets larger than this (MB as uint8) stay in host memory (a folder's memory-mapped from its cache) and go to the device one batch at a time"
    )

    @field_validator("background")
    @classmethod
    def _known_background(cls, text: str) -> str:
        background_rgb(text)
        return text

    @model_validator(mode="after")
    def _one_class_cut(self) -> DataConfig:
        if self.per_class and self.class_counts:
            raise ValueError("data.per_class and data.class_counts both cut classes; give one (class_counts can list every class)")
        return self


DATA_HANDLING_KEYS = ("data_dir", "download", "workers", "cache", "cache_dir", "device_memory_mb")  # how data is found and held, not what it is


class ModelConfig(_Section):
    name: ModelName = Field("mlp-reference", description="architecture from the model registry")
    z_dim: int = Field(100, gt=0, le=10_000, description="length of the noise vector z")
    conditional: bool = Field(False, description="feed class labels to G (embedding; resnet: class-conditional BatchNorm) and D (projection)")
    width: int = Field(64, gt=0, le=4096, description="dcgan, resnet, stylegan2: base channel count (docs/models.md: sizes per width); mlp-toy: hidden units")
    depth: int = Field(3, gt=0, le=100, description="mlp-toy: hidden layers in G and in D")
    d_output: Literal["logits", "sigmoid"] = Field(
        "logits", description="sigmoid ends D in nn.Sigmoid (the reference network); the loss then reads probabilities"
    )
    d_norm: Literal["batch", "none"] = Field("batch", description="dcgan: normalization in D's hidden layers")
    mapping_layers: int = Field(8, gt=0, le=16, description="stylegan2: linear layers of the mapping network z -> w (the paper's 8; 2 is plenty on small data)")


class LossConfig(_Section):
    name: LossName = Field("non-saturating", description="the adversarial objective")


class StabilizerConfig(_Section):
    instance_noise: float = Field(0.0, ge=0, description="std of Gaussian noise added to D's inputs (real and fake)")
    instance_noise_anneal_steps: int = Field(0, ge=0, description="linearly anneal instance noise to 0 over this many steps; 0 keeps it constant")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="one-sided: D's target for real data is 1 - this")
    d_dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each hidden activation of D")
    spectral_norm: bool | None = Field(None, description="spectral normalization on every weight layer of D; None: what the model implies (resnet: true), else false")
    r1: float = Field(0.0, ge=0, description="gamma of the R1 penalty gamma/2 * |grad D(real)|^2")
    r1_every: int = Field(1, gt=0, description="apply R1 every k D steps (lazy regularization, scaled by k)")
    path_length: float = Field(0.0, ge=0, description="weight of StyleGAN2's path-length penalty on G (the paper's 2); 0 turns it off; needs a model with a mapping network")
    path_length_every: int = Field(4, gt=0, description="apply the path-length penalty every k G updates (lazy regularization, scaled by k)")
    gradient_penalty: float | None = Field(None, ge=0, description="WGAN-GP lambda; None: what the loss implies (wgan-gp: 10), else 0")
    weight_clip: float | None = Field(None, ge=0, description="clip D's weights to [-c, c]; None: what the loss implies (wgan: 0.01), else 0 (off)")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="EMA of G's weights (used for sampling); 0 turns it off")
    n_critic: int = Field(1, gt=0, le=100, description="D updates per step")
    g_steps: int = Field(1, gt=0, le=100, description="G updates per step: the first on the last D update's fakes, the rest on fresh noise (PacGAN's Stacked MNIST code: 2)")
    pack: int = Field(1, gt=0, description="PacGAN: D judges this many samples at once")
    diffaugment: list[str] = Field(
        [], description=f"DiffAugment: policies applied to every image D sees, real and fake ({', '.join(POLICIES)}; a list or a comma string); empty: off"
    )
    ada_target: float | None = Field(
        None, gt=0, lt=1, description="ADA: apply DiffAugment with a probability p steered so E[sign(D's logit on reals)] stays near this (paper: 0.6); None: p = 1"
    )
    ada_interval: int = Field(4, gt=0, description="ADA: D steps between adjustments of p")
    ada_speed_images: int = Field(
        100_000, gt=0, description="ADA: images D sees while p moves by 1 (the paper's 500k suits runs of millions of images; 100k lets p settle within a short run)"
    )

    @field_validator("diffaugment", mode="before")
    @classmethod
    def _split_policies(cls, value: Any) -> Any:
        """Accept "color,cutout" as well as a list; null and "" mean off."""
        if value is None:
            return []
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("diffaugment")
    @classmethod
    def _known_policies(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in POLICIES]
        if unknown:
            raise ValueError(f"unknown DiffAugment policy {_echo(unknown[0])}; choose from {', '.join(POLICIES)}, comma-separated")
        return value


class OptimConfig(_Section):
    optimizer: Literal["adam", "rmsprop"] = Field("adam", description="rmsprop is the original WGAN's choice")
    lr_g: float = Field(2e-4, gt=0, description="G learning rate")
    lr_d: float = Field(2e-4, gt=0, description="D learning rate (differs from lr_g for TTUR)")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2")
    lr_decay: Literal["none", "linear", "cosine"] = Field("none", description="anneal both learning rates over the run (lets G settle onto the modes)")
    lr_decay_start: float = Field(0.0, ge=0, lt=1, description="fraction of the run's steps before the decay begins")
    lr_decay_to: float = Field(0.0, ge=0, le=1, description="learning rate at the last step, as a fraction of lr_g/lr_d")


class TrainConfig(_Section):
    batch_size: int = Field(64, gt=0, le=2**20, description="real images per D step (and fakes per G step)")
    epochs: int = Field(5, gt=0, description="passes over the data, counted in D batches")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seeds weights, noise and data order")
    class_balance: bool = Field(
        False, description="draw real batches with every class equally likely (with replacement), so a conditional GAN sees scarce classes as often as the rest"
    )
    deterministic: bool = Field(False, description="deterministic kernels: a resumed run equals an uninterrupted one bit for bit")
    precision: PrecisionName = Field(
        "fp32", description="fp32, bf16 (bf16 compute, fp32 master weights), bf16-mixed (autocast), fp16-mixed (CUDA); bf16 falls back to fp32 where it is slow"
    )
    precision_fallback: bool = Field(
        True, description="bf16/bf16-mixed: train in fp32 where bf16 matrix products are not faster (measured at start); false keeps bf16, e.g. to check its numerics"
    )
    tensorboard: bool = Field(False, description="also log scalars and sample grids to RUN/tensorboard (needs the tensorboard extra)")
    log_every: int = Field(50, gt=0, description="steps between metrics.jsonl lines (and host syncs)")
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints; 0: at the end of each epoch")
    keep_checkpoints: int = Field(3, gt=0, description="how many recent checkpoints to keep")
    sample_grid: int = Field(64, gt=0, le=1024, description="images in each sample grid (fixed noise)")
    divergence_retries: int = Field(2, ge=0, description="on NaN/Inf or an exploding loss: roll back to the last checkpoint and continue at most this many times")
    divergence_lr_factor: float = Field(0.5, gt=0, lt=1, description="each rollback multiplies every learning rate by this")
    max_abs_loss: float | None = Field(None, gt=0, description="a logged |d_loss| or |g_loss| above this counts as divergence; None: only NaN/Inf do")


LOWER_IS_BETTER = ("fid", "kid_mean", "class_kl", "memorized_fraction", "reverse_kl", "stacked_kl", "stacked_digit_kl", "stacked_unsure_fraction")
HIGHER_IS_BETTER = ("precision", "recall", "density", "coverage", "is_mean", "classes_covered", "modes_captured", "high_quality_fraction", "stacked_modes")
MetricName = Literal[LOWER_IS_BETTER + HIGHER_IS_BETTER]


class EvalConfig(_Section):
    every_epochs: int = Field(0, ge=0, description="evaluate every this many epochs during training (0: never); results go to metrics.jsonl")
    num_samples: int = Field(10_000, gt=0, le=1_000_000, description="generated images per evaluation (2-D toys always use 2,500; stacked-mnist 26,000)")
    num_real: int = Field(10_000, gt=0, le=1_000_000, description="real training images in the reference set (fewer if the data has fewer)")
    evaluator: str | None = Field(
        None,
        description="feature extractor: fashion-mnist, mnist, a .safetensors path from `gankit evaluator train` (docs/evaluators.md) or inception:PATH "
        "(docs/inception.md); None picks the shipped one by dataset, else pixel metrics only",
    )
    best_metric: MetricName | None = Field(None, description="keep checkpoints/best.safetensors by this metric (needs every_epochs > 0)")


class SamplingConfig(_Section):
    """How gankit sample and gankit eval (and evaluations during training) draw from G (models/sampling.py)."""

    truncation: float | None = Field(None, gt=0, description="redraw z entries beyond +-T (the BigGAN trick): more typical, less varied samples; None: plain normal z")
    jacobian_truncation: float = Field(
        0.0, ge=0, lt=0.5, description="drop this fraction of z with the steepest G (largest ||dG/dz||): the off-mode samples between modes (Tanielian et al. 2020); 0: off"
    )

    def overridden(self, truncation: float | None = None, jacobian_truncation: float | None = None) -> SamplingConfig:
        """These settings with the given ones (a command line's) in place; None keeps the run's. models/sampling.py checks the values."""
        given = {"truncation": truncation, "jacobian_truncation": jacobian_truncation}
        return self.model_copy(update={key: value for key, value in given.items() if value is not None})


class WatchdogConfig(_Section):
    every_epochs: int = Field(0, ge=0, description="check for mode collapse every this many epochs (0: never); warnings go to stderr and metrics.jsonl")
    min_coverage: float = Field(0.5, ge=0, le=1, description="warn when fewer than this fraction of the modes (toys) or classes (images) is covered")
    min_diversity: float = Field(0.5, ge=0, le=1, description="images: warn when fake features spread less than this fraction of the real ones")
    patience: int = Field(2, gt=0, description="warn only after this many consecutive failed checks (early training looks collapsed too)")
    num_samples: int = Field(1000, ge=100, le=100_000, description="images generated per check (2-D toys always use 2,500)")


Range = tuple[float, float]


class DegradationConfig(_Section):
    """How task: restore degrades each training image (gankit.degradations.DegradationSampler)."""

    mask_probability: float = Field(0.5, ge=0, le=1, description="chance that an image loses pixels to a mask")
    masks: list[MaskShape] = Field(list(MASK_SHAPES), min_length=1, description="mask shapes drawn uniformly: center (square hole), box (anywhere, any aspect), pixels (scattered), strokes (free-form brush lines)")
    hole_size: Range = Field((0.25, 0.6), description="side of a center or box hole, as a fraction of the image side [low, high]")
    missing_pixels: Range = Field((0.3, 0.9), description="share of pixels a pixels mask removes [low, high]")
    strokes: tuple[int, int] = Field((1, 4), description="brush strokes per strokes mask [low, high]")
    stroke_width: Range = Field((0.04, 0.12), description="brush diameter as a fraction of the image side [low, high]")
    noise_probability: float = Field(0.5, ge=0, le=1, description="chance of additive Gaussian noise")
    noise_sigma: Range = Field((0.05, 0.5), description=f"noise std on the [-1, 1] pixel scale [low, high], within (0, {MAX_NOISE_SIGMA}]")
    blur_probability: float = Field(0.5, ge=0, le=1, description="chance of a Gaussian blur (applied before noise and mask)")
    blur_sigma: Range = Field((0.5, 2.0), description=f"blur std in pixels [low, high], within (0, {MAX_BLUR_SIGMA}]")

    @model_validator(mode="after")
    def _check_ranges(self) -> DegradationConfig:
        limits = {"hole_size": (0, 1), "missing_pixels": (0, 1), "strokes": (0, 100), "stroke_width": (0, 1), "noise_sigma": (0, MAX_NOISE_SIGMA), "blur_sigma": (0, MAX_BLUR_SIGMA)}
        for key, (floor, ceiling) in limits.items():
            low, high = getattr(self, key)
            if not floor < low <= high <= ceiling:
                raise ValueError(f"restore.degradations.{key}=[{low}, {high}] must be [low, high] with {floor} < low <= high <= {ceiling}")
        if not (self.mask_probability or self.noise_probability or self.blur_probability):
            raise ValueError("restore.degradations: mask_probability, noise_probability and blur_probability are all 0; give at least one a chance")
        return self


class RestoreConfig(_Section):
    """task: restore, a paired image-to-image GAN (U-Net G, PatchGAN D; docs/restore.md)."""

    degradations: DegradationConfig = DegradationConfig()
    l1_weight: float = Field(100.0, ge=0, description="weight of the mean absolute error to the clean image (pix2pix: 100)")
    l2_weight: float = Field(0.0, ge=0, description="weight of the mean squared error to the clean image")
    adv_weight: float = Field(1.0, ge=0, description="weight of the adversarial loss (loss.name) of D's verdict on (degraded, restored) pairs")
    paste_known: bool = Field(True, description="where pixels were observed exactly (a mask without noise or blur), the output keeps them")

    @model_validator(mode="after")
    def _check_weights(self) -> RestoreConfig:
        if not (self.l1_weight or self.l2_weight or self.adv_weight):
            raise ValueError("restore: l1_weight, l2_weight and adv_weight are all 0, so nothing would be learned; set l1_weight=100")
        return self


class ClassifyConfig(_Section):
    """task: classify, a semi-supervised K+1 GAN classifier (Salimans et al. 2016; docs/classify.md)."""

    unlabelled_weight: float = Field(1.0, ge=0, description="weight of D's real-vs-fake loss on unlabelled and generated images beside the labelled cross-entropy")
    input_noise: float = Field(0.3, ge=0, le=2, description="std of Gaussian noise D adds to its inputs while training (on the [0, 1] pixel scale)")
    hidden_noise: float = Field(0.5, ge=0, le=2, description="std of Gaussian noise D adds after each hidden layer while training")


class Config(_Section):
    name: str = Field("run", description="used in the default run folder name")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    stabilizers: StabilizerConfig = StabilizerConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    sampling: SamplingConfig = SamplingConfig()
    watchdog: WatchdogConfig = WatchdogConfig()
    task: TaskName = Field(
        "generate",
        description="generate: a GAN from noise; restore: a restorer trained on (degraded, clean) pairs made on the fly; "
        "classify: a classifier trained on a few labels and many unlabelled images (a semi-supervised GAN)",
    )
    restore: RestoreConfig = RestoreConfig()
    classify: ClassifyConfig = ClassifyConfig()

    @model_validator(mode="after")
    def _fill_implied_defaults(self) -> Config:
        """Make the settings the loss and the model imply (their registry entries' `implied`) explicit, so the saved config shows what ran."""
        implied = LOSSES[self.loss.name].implied
        for key in ("gradient_penalty", "weight_clip"):
            if getattr(self.stabilizers, key) is None:
                setattr(self.stabilizers, key, implied.get(key, 0.0))
        self.stabilizers.spectral_norm = spectral_norm_of(self.model.name, self.stabilizers)
        return self

    @model_validator(mode="after")
    def _check_combinations(self) -> Config:
        stab, model = self.stabilizers, self.model
        loss = LOSSES[self.loss.name]
        if model.d_output == "sigmoid" and "probabilities" not in loss.score_spaces:
            suited = ", ".join(losses_that(lambda entry: "probabilities" in entry.score_spaces))
            raise ValueError(f"model.d_output=sigmoid only suits the BCE losses ({suited}), not loss.name={self.loss.name}; set model.d_output=logits")
        if stab.label_smoothing and not loss.label_smoothing:
            *others, last = losses_that(lambda entry: entry.label_smoothing)
            raise ValueError(f"stabilizers.label_smoothing has no meaning for loss.name={self.loss.name}; use it with {', '.join(others)} or {last}")
        if self.train.batch_size % stab.pack:
            raise ValueError(f"train.batch_size={self.train.batch_size} must be a multiple of stabilizers.pack={stab.pack}")
        if self.eval.best_metric and not self.eval.every_epochs:
            raise ValueError(f"eval.best_metric={self.eval.best_metric} needs eval.every_epochs > 0 to have something to compare")
        if stab.pack > 1 and model.conditional:
            raise ValueError("stabilizers.pack>1 cannot be combined with model.conditional=true; pick one")
        if stab.ada_target is not None and not stab.diffaugment:
            raise ValueError(f"stabilizers.ada_target adapts how often DiffAugment applies; also set stabilizers.diffaugment={','.join(POLICIES)}")
        if stab.ada_target is not None and not loss.gives_verdicts:
            suited = ", ".join(losses_that(lambda entry: entry.gives_verdicts))
            raise ValueError(f"stabilizers.ada_target steers by the sign of D's scores, which a {self.loss.name} critic does not fix; use it with {suited}")
        if problem := unsupported_d_stabilizer(model.name, stab):
            raise ValueError(problem)
        if stab.path_length and not BUILDERS[model.name].mapping:
            with_mapping = ", ".join(architectures_that(lambda entry: entry.mapping))
            raise ValueError(f"stabilizers.path_length needs a generator with a mapping network (model.name={with_mapping}), not model.name={model.name}; set it to 0")
        return self

    @model_validator(mode="after")
    def _check_task(self) -> Config:
        """A restorer (a U-Net and a PatchGAN) and a semi-supervised classifier (a K+1 D) train one D and one G step
        at a time with their own networks; what only a GAN from noise has (a conditional G, packing, a Sigmoid D,
        sample evaluations, augmenting D's inputs) is refused for them, and each task's own section is refused
        elsewhere, so no setting is silently ignored."""
        for task, section, default in (("restore", self.restore, RestoreConfig()), ("classify", self.classify, ClassifyConfig())):
            if self.task != task and section != default:
                raise ValueError(f"the {task} section only applies to task={task}; set task={task} or drop it")
        if self.data.labels_per_class and self.task != "classify":
            raise ValueError("data.labels_per_class hides the other labels, which only task=classify learns without; use data.per_class to keep fewer images")
        if self.task == "generate":
            return self
        unsupported = {
            "model.conditional": (self.model.conditional, False),
            "model.d_output": (self.model.d_output, "logits"),
            "stabilizers.pack": (self.stabilizers.pack, 1),
            "stabilizers.n_critic": (self.stabilizers.n_critic, 1),
            "stabilizers.g_steps": (self.stabilizers.g_steps, 1),
            "stabilizers.diffaugment": (",".join(self.stabilizers.diffaugment), ""),
            "eval.every_epochs": (self.eval.every_epochs, 0),
            "watchdog.every_epochs": (self.watchdog.every_epochs, 0),
        }
        what = {"restore": "a restorer trains one D and one G step at a time on unlabelled image pairs", "classify": "a semi-supervised classifier trains its own K+1 D and a G by feature matching"}
        for key, (value, allowed) in unsupported.items():
            if value != allowed:
                shown = "[]" if allowed == "" else str(allowed).lower()
                raise ValueError(f"task={self.task} does not support {key}={value}; set {key}={shown} ({what[self.task]})")
        return self


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        section = _section_at(first["loc"][:-1])
        known = ", ".join(section.model_fields) if section else ""
        return f"unknown config key {_echo(key)}; known keys here: {known}"
    msg = first["msg"].removeprefix("Value error, ")
    if not key:
        return f"bad config: {msg}"
    return f"bad config value {key}={_echo(first.get('input'))}: {msg}"


def _echo(value: Any) -> str:
    """A value as an error line may repeat it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."


def _section_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split 'a.b=value' into (['a', 'b'], value) with the value read as YAML (so 1e-4, true, null work);
    a value starting with '#' is text (a colour such as #808080), not a YAML comment."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {_echo(text)} is not KEY=VALUE (for example train.epochs=3)")
    try:
        value = parse_yaml(raw) if raw.strip() and not raw.lstrip().startswith("#") else raw.strip()
    except yaml.YAMLError:
        value = raw
    _check_size(value, f"override {key.strip()}")
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {_echo(text)}: {_echo(part)} is a value, not a section")
            node = child
        node[path[-1]] = value
    return raw


def from_dict(raw: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("gankit.presets").iterdir() if p.name.endswith(".yaml"))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file, or a packaged preset by bare name (e.g. 'reference-fashion')."""
    path = Path(path)
    if not path.exists() and path.suffix == "" and path.name in preset_names():
        text = resources.files("gankit.presets").joinpath(f"{path.name}.yaml").read_text()
    elif not path.is_file():
        raise ConfigError(f"config file {path} not found; give a YAML path or a preset name ({', '.join(preset_names())})")
    else:
        text = _read_text(path)
    try:
        raw = parse_yaml(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0][:200]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(raw).__name__}")
    _check_size(raw, f"config file {path}")
    return raw


def _read_text(path: Path) -> str:
    try:
        payload = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {payload[err.start]:#04x} at offset {err.start}); save it as UTF-8 YAML") from None


class _DuplicateKey(yaml.YAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping, where the last would silently win."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys merged in with << may be overridden: that is what merging is for
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                raise _DuplicateKey(f"key '{key}' appears twice (line {key_node.start_mark.line + 1}); keep one")
            seen.add(key if isinstance(key, str) else id(key_node))
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)


def _check_size(value: Any, where: str) -> None:
    """Refuse a value that expands (through YAML aliases) to more than MAX_CONFIG_VALUES values; the walk stops there."""
    pending, count = [value], 0
    while pending:
        item = pending.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(f"{where} expands to more than {MAX_CONFIG_VALUES} values (nested YAML aliases?); a gankit config is a few dozen")
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    raw = read_yaml(path) if path is not None else {}
    return from_dict(apply_overrides(raw, list(overrides)))


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
