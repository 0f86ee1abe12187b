"""Training configs: YAML files checked against dataclasses, so a typo is an error before any work starts."""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class DataConfig:
    """Where clips come from: a video folder (``path``) or a latent cache made from it (``latents``)."""

    path: str | list[str] | None = None  # a folder of videos, or a list of folders mixed into one dataset
    latents: str | None = None  # folder written by `videoldm cache-latents`; used when it exists
    num_frames: int = 16
    fps: float | None = 8.0
    size: list[int] = field(default_factory=lambda: [64, 64])
    batch_size: int = 8
    frames_per_clip: int = 1  # image / autoencoder stages: frames drawn from each clip
    num_workers: int = 0
    seed: int = 0


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 0
    schedule: str = "constant"  # constant | cosine | linear (after warm-up)
    max_grad_norm: float | None = 1.0
    ema_decay: float | None = None  # EMA of the trained parameters; None: no EMA


@dataclass
class RunConfig:
    output_dir: str = "runs/run"
    seed: int = 0
    max_steps: int = 1000
    grad_accum: int = 1
    mixed_precision: str = "auto"  # auto (bf16 where the hardware computes it, else float32) | no | bf16 | fp16
    gradient_checkpointing: bool = False
    log_every: int = 10
    # DDP's search for parameters a step leaves unused (it costs time on GPUs); None: only where the stage may
    # leave some (the decoder's discriminator before disc_start, image batches of a temporal stage)
    find_unused_parameters: bool | None = None
    log_with: str = "tensorboard"  # accelerate's trackers (tensorboard, wandb, mlflow, ...; comma-separated), or none
    sample_every: int = 0  # 0: only at the end
    checkpoint_every: int = 200
    keep_last: int = 3
    num_samples: int = 4
    sample_steps: int = 25
    sampler: str = "ddim"
    guidance_scale: float = 3.0


@dataclass
class AutoencoderModelConfig:
    """``config``: diffusers ``AutoencoderKL`` keyword arguments (trained from scratch), or ``pretrained``:
    an autoencoder export (or diffusers VAE folder) to go on training."""

    config: dict = field(default_factory=dict)
    pretrained: str | None = None
    kl_weight: float = 1e-6


@dataclass
class ImageModelConfig:
    autoencoder: str = ""  # folder of a trained AutoencoderKL (an `autoencoder` run's `final/vae`)
    unet: dict = field(default_factory=dict)  # UNet2DConditionModel kwargs, or {"pretrained": path}
    scheduler: dict = field(default_factory=lambda: {"num_train_timesteps": 1000, "beta_schedule": "linear",
                                                     "beta_start": 0.00085, "beta_end": 0.012,
                                                     "prediction_type": "epsilon"})
    conditioning: str = "text"  # text | attributes | none
    text_encoder: dict = field(default_factory=lambda: {"hidden_size": 64, "layers": 2, "heads": 4,
                                                        "max_length": 16})
    cfg_dropout: float = 0.1


@dataclass
class TemporalModelConfig:
    image_model: str = ""  # an `image` run's `final/`, a diffusers SD folder or an SD single file: frozen
    image_config: str | None = None  # for a single file: a diffusers SD folder of its configs and tokenizer
    temporal: dict = field(default_factory=dict)  # VideoUNet temporal options
    image_batch_prob: float = 0.0  # share of samples trained as images (alpha forced to 1)
    train_spatial: bool = False  # also fine-tune the image UNet (SVD's option); default: temporal only
    # train a copy of the image model's text encoder that feeds only the temporal layers: the image model's
    # learned from single frames, where words of motion ("moving left") carry nothing (docs/training.md)
    temporal_text: bool = False
    # share of the noise variance common to all frames of a clip (PYoCo's mixed noise prior); sampling
    # draws the same (the export records it). 0: independent noise per frame, as in the paper
    shared_noise: float = 0.0
    # "velocity": an epsilon model's error weighed as a v-prediction model's (1 / alpha_bar_t), so the high
    # noise levels where a clip's layout and motion are decided count (stages.base.diffusion_loss)
    loss_weighting: str = "none"
    cfg_dropout: float = 0.1


@dataclass
class ContextModelConfig(TemporalModelConfig):
    """Prediction and interpolation models: a video model with context conditioning (the given frames)."""

    init_temporal: str | None = None  # a `temporal` (or other context) export whose layers to start from
    context_frames: list[int] = field(default_factory=lambda: [0, 1, 2])  # prediction: S drawn from these
    keyframe_every: int = 4  # interpolation: frames 0, k, 2k, ... are given
    context_dropout: float = 0.1  # share of clips trained with no given frame (S = 0), for guidance


@dataclass
class DecoderModelConfig:
    """Temporal decoder fine-tuning: ``temporal`` are ``TemporalDecoder`` options, ``discriminator`` are
    ``VideoDiscriminator`` options; the adversarial term starts at step ``disc_start``."""

    autoencoder: str = ""  # an `autoencoder` run's `final/` folder (its encoder stays frozen)
    temporal: dict = field(default_factory=dict)
    train_decoder: bool = False  # also fine-tune the image decoder's own weights; default: temporal layers only
    # a `decoder` export (e.g. a shipped one) to go on from: its temporal layers, and its image decoder when it
    # trained that too; a fresh schedule, unlike resuming a checkpoint
    init_temporal: str | None = None
    discriminator: dict = field(default_factory=dict)
    disc_start: int = 0
    disc_weight: float = 0.5
    disc_loss: str = "hinge"  # hinge | non-saturating
    perceptual: str | None = None  # a local TorchScript perceptual distance (e.g. LPIPS), optional
    perceptual_weight: float = 1.0
    temporal_weight: float = 0.0  # L1 between the frame differences of reconstruction and input (flicker)


@dataclass
class UpsamplerModelConfig:
    """Diffusion upsamplers (Video LDM, section 6), trained on random patches of the data's frames.

    ``upsampler-image``: a UNet from scratch (``unet``: ``UNet2DConditionModel`` kwargs; its in/out
    channels and noise-level classes are filled in). ``upsampler-video``: temporal layers (``temporal``)
    on the frozen UNet of an ``upsampler-image`` export (``image_model``).
    """

    space: str = "pixel"  # pixel | latent (the SD x4 upscaler layout: latents at the low-resolution size)
    scale: int = 4
    autoencoder: str = ""  # latent space: an autoencoder that downsamples by `scale`
    unet: dict = field(default_factory=dict)
    scheduler: dict = field(default_factory=lambda: {"num_train_timesteps": 1000, "beta_schedule": "linear",
                                                     "beta_start": 0.0001, "beta_end": 0.02,
                                                     "prediction_type": "v_prediction"})
    residual: bool = True  # pixel space: generate the difference to the bicubic upsampled input
    # ... multiplied by this: the difference is small (std ~0.1 on driving frames), and a signal that small
    # under unit noise is visible to the denoiser only in the last few steps
    residual_scale: float = 1.0
    patch_size: int = 64  # output pixels (a multiple of `scale`); the whole frame if larger
    max_noise_level: int = 350  # noise augmentation: training levels in [0, max_noise_level)
    noise_level: int = 20  # the fixed level sampling uses
    # training levels in [0, this) when set (the UNet still takes any level below max_noise_level): fine detail
    # survives only low levels (a 4x photo's sharpening is gone above ~20), so most of [0, 350) teaches none
    max_train_noise_level: int = 0
    # upsampler-video: the upsampler-image export under the temporal layers; upsampler-image: one to continue
    image_model: str = ""
    temporal: dict = field(default_factory=dict)
    # the sampling steps the export takes by default: a residual upsampler is measured best at few (1 on the
    # driving and camera clips, docs/upsampling.md), a diffusion model generating whole frames at more
    sampling_steps: int = 25


# the stages a recipe may name, and the schema of each one's `model:` section
MODEL_CONFIGS = {"autoencoder": AutoencoderModelConfig, "image": ImageModelConfig, "temporal": TemporalModelConfig,
                 "decoder": DecoderModelConfig, "prediction": ContextModelConfig,
                 "interpolation": ContextModelConfig, "upsampler-image": UpsamplerModelConfig,
                 "upsampler-video": UpsamplerModelConfig}


@dataclass
class TrainConfig:
    stage: str
    data: DataConfig
    model: (AutoencoderModelConfig | ImageModelConfig | TemporalModelConfig | DecoderModelConfig | ContextModelConfig
            | UpsamplerModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    source: str | None = None  # the YAML file it came from

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls, values, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(repr(f'{where}.{k}') for k in unknown)}"
                         f"; known keys of {where}: {', '.join(sorted(names))}")
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            value = _build(hint, value or {}, f"{where}.{key}")
        else:
            _check_type(value, hint, f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


def _check_type(value, hint, where: str) -> None:
    origin = typing.get_origin(hint)
    options = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
    for option in options:
        base = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if isinstance(base, type) and isinstance(value, base) and not (base is int and isinstance(value, bool)):
            return
    raise ValueError(f"{where}: {value!r} is not a valid {hint}")


def parse_config(values: dict, source: str | None = None) -> TrainConfig:
    """Builds a ``TrainConfig`` from a mapping; unknown keys and wrong types raise ``ValueError``."""
    if not isinstance(values, dict):
        raise ValueError("a training config is a mapping with keys stage, data, model, optim, run")
    values = dict(values)
    stage = values.get("stage")
    if stage not in MODEL_CONFIGS:
        raise ValueError(f"stage must be one of {', '.join(MODEL_CONFIGS)}; got {stage!r}")
    unknown = sorted(set(values) - {"stage", "data", "model", "optim", "run"})
    if unknown:
        raise ValueError(f"unknown top-level key(s) {unknown}; known: stage, data, model, optim, run")
    config = TrainConfig(
        stage=stage,
        data=_build(DataConfig, values.get("data") or {}, "data"),
        model=_build(MODEL_CONFIGS[stage], values.get("model") or {}, "model"),
        optim=_build(OptimConfig, values.get("optim") or {}, "optim"),
        run=_build(RunConfig, values.get("run") or {}, "run"),
        source=source,
    )
    if config.run.mixed_precision not in ("auto", "no", "bf16", "fp16"):
        raise ValueError(f"run.mixed_precision must be auto, no, bf16 or fp16; got {config.run.mixed_precision!r}")
    if config.optim.schedule not in ("constant", "cosine", "linear"):
        raise ValueError(f"optim.schedule must be constant, cosine or linear; got {config.optim.schedule!r}")
    _check_ranges(config)
    return config


# key -> (the test a value must pass, what it means); None always passes (an optional setting left off)
RANGES = {
    "data.batch_size": (lambda v: v >= 1, "at least 1"),
    "data.frames_per_clip": (lambda v: v >= 1, "at least 1"),
    "data.num_workers": (lambda v: v >= 0, "0 or more"),
    "optim.lr": (lambda v: v > 0, "above 0"),
    "optim.weight_decay": (lambda v: v >= 0, "0 or more"),
    "optim.betas": (lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    "optim.warmup_steps": (lambda v: v >= 0, "0 or more"),
    "optim.max_grad_norm": (lambda v: v > 0, "above 0 (or null: no clipping)"),
    "optim.ema_decay": (lambda v: 0 <= v < 1, "in [0, 1) (or null: no EMA)"),
    "run.max_steps": (lambda v: v >= 1, "at least 1"),
    "run.grad_accum": (lambda v: v >= 1, "at least 1"),
    "run.log_every": (lambda v: v >= 1, "at least 1"),
    "run.sample_every": (lambda v: v >= 0, "0 (only at the end) or more"),
    "run.checkpoint_every": (lambda v: v >= 0, "0 (only at the end) or more"),
    "run.keep_last": (lambda v: v >= 0, "0 (keep all) or more"),
    "run.num_samples": (lambda v: v >= 0, "0 or more"),
    "run.sample_steps": (lambda v: v >= 1, "at least 1"),
}


def _check_ranges(config: TrainConfig) -> None:
    """Values of the right type that cannot train: a batch of 0 failed deep in the loop; a negative warm-up,
    an EMA decay of 1.5 or 0 steps trained nothing or garbage, and said `done`."""
    for key, (ok, meaning) in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value is not None and not ok(value):
            raise ValueError(f"{key} must be {meaning}; got {value!r}")


class RecipeLoader(yaml.SafeLoader):
    """YAML as recipes mean it: only true/false are booleans (YAML 1.2), so ``mixed_precision: no`` is the
    word "no", not False."""


RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
RecipeLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))


def load_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """Reads a YAML config; ``overrides`` are ``section.key=value`` strings (the value parsed as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config {path} not found")
    values = yaml.load(path.read_text(), Loader=RecipeLoader) or {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r}: expected section.key=value")
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.load(raw, Loader=RecipeLoader)
    return parse_config(values, str(path))
