"""The first three training stages of a Video LDM: autoencoder, image LDM, temporal alignment.

Each stage builds its models (checking that they fit together before any step runs), owns the module
whose forward returns the loss (what data parallelism wraps), draws each sample's noise from that
sample's own generator, and exports what it trained in diffusers formats.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from torch import nn

from ..data import VideoFolderDataset
from ..models.video_unet import VideoUNet
from .config import TrainConfig
from .data import LatentCache, MixedDataset, sample_generator

MODEL_INDEX = "videoldm.json"  # what an exported folder holds, so loaders know how to rebuild it


def reference(target: str | Path, directory: str | Path) -> str:
    """How an export refers to another folder (its frozen image model, its autoencoder): relative to the
    export, so a tree of exports can be moved or shipped as a whole. Read back with :func:`referenced`."""
    return os.path.relpath(Path(target).resolve(), Path(directory).resolve())


def referenced(root: str | Path, value: str) -> Path:
    """The folder an export's reference names (relative to the export; older exports hold absolute paths)."""
    return Path(root) / value


def per_sample(positions, seed: int, salt: int, fn):
    """Stacks ``fn(generator)`` over the batch, one generator per stream position."""
    return torch.stack([fn(sample_generator(seed, p, salt)) for p in positions])


def pick_frames(x: torch.Tensor, positions, seed: int, k: int) -> torch.Tensor:
    """``(B, C, T, H, W)`` clips -> ``(B*k, C, H, W)``: k frames of each clip, chosen per sample."""
    T = x.shape[2]
    idx = per_sample(positions, seed, 11, lambda g: torch.randperm(T, generator=g)[:k])
    frames = torch.stack([x[b, :, idx[b]] for b in range(x.shape[0])])  # (B, C, k, H, W)
    return frames.transpose(1, 2).flatten(0, 1)


def build_dataset(config: TrainConfig, need_pixels: bool = False):
    """The latent cache when configured and present (unless pixels are needed), else the video folder."""
    data = config.data
    if data.latents and Path(data.latents).exists() and not need_pixels:
        return LatentCache(data.latents, num_frames=data.num_frames, seed=data.seed or 0)
    if not data.path:
        raise ValueError("data.path is not set (and no latent cache exists at data.latents)")
    paths = [data.path] if isinstance(data.path, str) else list(data.path)
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"dataset {path} not found")
    datasets = [VideoFolderDataset(path, num_frames=data.num_frames, fps=data.fps, size=tuple(data.size),
                                   seed=data.seed, start="random", crop="center") for path in paths]
    return datasets[0] if len(datasets) == 1 else MixedDataset(datasets)


def _records(dataset) -> list[dict]:
    return dataset.meta if isinstance(dataset, LatentCache) else [dataset.record(i) for i in range(len(dataset))]


def dataset_captions(dataset) -> list[str]:
    return [m.get("caption") or "" for m in _records(dataset)]


def require_labels(conditioning: str, dataset, where: str) -> None:
    """A text or attribute model on data without a single caption or attribute would train as an
    unconditional one and say nothing: e.g. on a `data synth` folder interrupted before its manifest."""
    records = _records(dataset)
    if conditioning == "text" and not any(m.get("caption") for m in records):
        raise ValueError(f"{where}: a text-conditioned model, but no clip of {len(records)} has a caption "
                         "(no manifest.jsonl or sidecar .txt/.json; an interrupted `videoldm data synth` leaves "
                         "none: run it again)")
    if conditioning == "attributes" and not any(m.get("attributes") for m in records):
        raise ValueError(f"{where}: an attribute-conditioned model, but no clip of {len(records)} has attributes "
                         "(no manifest.jsonl or sidecar .json)")


def diffusion_loss(model_output: torch.Tensor, scheduler: DDPMScheduler, latents, noise, timesteps,
                   frame_weights: torch.Tensor | None = None) -> torch.Tensor:
    """MSE to the scheduler's target: the noise (epsilon) or the velocity (v-prediction).

    ``frame_weights`` ``(B, T)`` for video latents ``(B, C, T, h, w)``: the mean over the frames weighted so
    (a frame of weight 0, e.g. a given frame of a clean-context model, is no part of the loss)."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise ValueError(f"prediction_type {kind!r} is not supported for training (epsilon or v_prediction)")
    if frame_weights is None:
        return F.mse_loss(model_output.float(), target.float())
    per_frame = (model_output.float() - target.float()).pow(2).mean(dim=(1, 3, 4))  # (B, T)
    w = frame_weights.to(per_frame)
    return (per_frame * w).sum() / w.sum().clamp_min(1e-8)


# ------------------------------------------------------------------------------------------ autoencoder
class AutoencoderModule(nn.Module):
    def __init__(self, vae: AutoencoderKL, kl_weight: float):
        super().__init__()
        self.vae, self.kl_weight = vae, kl_weight

    def forward(self, images: torch.Tensor, eps: torch.Tensor):
        posterior = self.vae.encode(images).latent_dist
        z = posterior.mean + posterior.std * eps
        recon = self.vae.decode(z).sample
        rec = F.l1_loss(recon.float(), images.float())
        kl = posterior.kl().mean() / math.prod(images.shape[1:])
        return rec + self.kl_weight * kl, {"l1": rec.detach(), "kl": kl.detach()}


class Stage:
    """A stage owns ``module``: an ``nn.Module`` whose forward returns the loss (what DDP wraps).

    ``step`` is the optimizer step being computed (set by the trainer), for losses that change over a run.
    """

    step: int = 0

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device


class AutoencoderStage(Stage):
    def __init__(self, config: TrainConfig):
        self.config = config
        if config.model.pretrained:
            if config.model.config:
                raise ValueError("model.config and model.pretrained: give one (pretrained brings its own config)")
            self.vae = load_autoencoder(config.model.pretrained)
        else:
            cfg = dict(config.model.config)
            cfg.setdefault("in_channels", 3)
            cfg.setdefault("out_channels", 3)
            self.vae = AutoencoderKL(**cfg)
        self.module = AutoencoderModule(self.vae, config.model.kl_weight)
        self.dataset = build_dataset(config, need_pixels=True)

    def loss(self, model, batch, seed: int):
        images = pick_frames(batch["x"], batch["positions"], seed, self.config.data.frames_per_clip)
        k = self.config.data.frames_per_clip
        f = 2 ** (len(self.vae.config.block_out_channels) - 1)  # the encoder's downsampling
        latent_shape = (self.vae.config.latent_channels, images.shape[-2] // f, images.shape[-1] // f)
        eps = per_sample(batch["positions"], seed, 1, lambda g: torch.randn((k, *latent_shape), generator=g))
        return model(images.to(self.device), eps.flatten(0, 1).to(self.device))

    def export(self, directory: Path) -> None:
        """Saves the VAE with a scaling factor that gives its latents unit variance on the data."""
        self.vae.eval()
        with torch.no_grad():
            frames = [self.dataset[i][0].transpose(0, 1) for i in range(min(len(self.dataset), 16))]
            latents = self.vae.encode(torch.cat(frames).to(self.device)).latent_dist.mean
        self.vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
        self.vae.save_pretrained(directory / "vae")
        (directory / MODEL_INDEX).write_text(json.dumps({"stage": "autoencoder", "vae": "vae"}, indent=2))

    def sample(self, directory: Path, step: int) -> None:
        from ..data.io import write_gif

        self.vae.eval()
        with torch.no_grad():
            clip = self.dataset[0][0]  # (C, T, H, W)
            recon = self.vae.decode(self.vae.encode(clip.transpose(0, 1).to(self.device)).latent_dist.mean).sample
        side_by_side = torch.cat([clip.transpose(0, 1), recon.cpu()], dim=-1)
        write_gif(directory / f"reconstruction-{step:08d}.gif", to_uint8(side_by_side), self.config.data.fps or 8)
        self.vae.train()


def to_uint8(frames: torch.Tensor):
    """``(T, C, H, W)`` in [-1, 1] -> ``(T, H, W, 3)`` uint8 numpy."""
    from ..outputs import convert_frames

    return convert_frames(frames[None], "np")[0]


# ---------------------------------------------------------------------------------------- conditioning
def build_conditioner(kind: str, dataset, text_options: dict, cross_attention_dim: int | None):
    if kind == "none":
        return None
    if kind == "text":
        from ..conditioning import TextConditioner, make_text_encoder, train_tokenizer

        tokenizer = train_tokenizer(dataset_captions(dataset), max_length=text_options.get("max_length", 16))
        encoder = make_text_encoder(tokenizer, **text_options)
        conditioner = TextConditioner(tokenizer, encoder)
        width = encoder.config.hidden_size
    elif kind == "attributes":
        from ..conditioning import AttributeConditioner

        conditioner = AttributeConditioner(dim=cross_attention_dim)  # the driving attributes
        width = cross_attention_dim
    else:
        raise ValueError(f"model.conditioning must be text, attributes or none; got {kind!r}")
    if cross_attention_dim is not None and width != cross_attention_dim:
        raise ValueError(f"the {kind} conditioner makes tokens of width {width} but the UNet's cross_attention_dim "
                         f"is {cross_attention_dim}")
    return conditioner


def condition(conditioner, batch, drop: torch.Tensor, device):
    """Conditioning tokens for a batch; samples where ``drop`` is True get the unconditional tokens."""
    if conditioner is None:
        return None
    if hasattr(conditioner, "tokenizer"):  # text
        captions = ["" if d else c for c, d in zip(batch["captions"], drop.tolist())]
        return conditioner.encode(captions).to(device)
    attributes = [{} if d else a for a, d in zip(batch["attributes"], drop.tolist())]
    return conditioner(attributes).to(device)


def load_autoencoder(path: str) -> AutoencoderKL:
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"autoencoder {path} not found")
    if (root / "vae" / "config.json").is_file():
        root = root / "vae"
    return AutoencoderKL.from_pretrained(root)


# ---------------------------------------------------------------------------------------------- image
class ImageModule(nn.Module):
    def __init__(self, unet: UNet2DConditionModel, conditioner):
        super().__init__()
        self.unet, self.conditioner = unet, conditioner

    def forward(self, noisy, timesteps, tokens):
        return self.unet(noisy, timesteps, tokens).sample


class DiffusionStage(Stage):
    """What the image and temporal stages share: latents, noise, timesteps, dropout, loss."""

    def latents_of(self, x: torch.Tensor) -> torch.Tensor:
        """Clips from the cache are latents already; pixel clips are encoded (frozen VAE, scaled)."""
        if isinstance(self.dataset, LatentCache):
            return x
        B, C, T, H, W = x.shape
        with torch.no_grad():
            z = self.vae.encode(x.transpose(1, 2).flatten(0, 1).to(self.device)).latent_dist.mode()
        z = z * self.vae.config.scaling_factor
        return z.view(B, T, *z.shape[1:]).transpose(1, 2)

    def latent_size(self) -> list[int]:
        """(h, w) of the training latents: the size the exported model samples at by default."""
        return list(self.latents_of(self.dataset[0][0][None]).shape[-2:])

    def noise_and_timesteps(self, latents, positions, seed):
        shape = latents.shape[1:]
        noise = per_sample(positions, seed, 2, lambda g: torch.randn(shape, generator=g)).to(latents)
        t = per_sample(positions, seed, 3, lambda g: torch.randint(0, self.scheduler.config.num_train_timesteps,
                                                                   (), generator=g)).to(latents.device)
        drop = per_sample(positions, seed, 4, lambda g: torch.rand((), generator=g)) < self.cfg_dropout
        return noise, t, drop


class ImageStage(DiffusionStage):
    def __init__(self, config: TrainConfig):
        self.config, m = config, config.model
        self.vae = load_autoencoder(m.autoencoder).requires_grad_(False).eval()
        pretrained = m.unet.get("pretrained")
        base = load_image_model(pretrained) if pretrained and (Path(pretrained) / MODEL_INDEX).is_file() else None
        if base is not None:  # fine-tuning an image export (a new style): its UNet, schedule and conditioner
            unet = base["unet"]
        elif pretrained:
            from ..models.loading import load_image_unet

            unet = load_image_unet(pretrained)
        else:
            unet = UNet2DConditionModel(**m.unet)
        if unet.config.in_channels != self.vae.config.latent_channels:
            raise ValueError(f"the UNet takes {unet.config.in_channels} latent channels but the autoencoder makes "
                             f"{self.vae.config.latent_channels}")
        self.scheduler = base["scheduler"] if base is not None else DDPMScheduler(**m.scheduler)
        self.dataset = build_dataset(config)
        require_labels(m.conditioning, self.dataset, "stage image")
        cross = unet.config.cross_attention_dim if m.conditioning != "none" else None
        if base is not None and base["conditioner"] is not None:
            self.conditioner = base["conditioner"]
        else:
            self.conditioner = build_conditioner(m.conditioning, self.dataset, m.text_encoder, cross)
        self.module = ImageModule(unet, self.conditioner)
        self.cfg_dropout = m.cfg_dropout

    def loss(self, model, batch, seed: int):
        k = self.config.data.frames_per_clip
        latents = pick_frames(self.latents_of(batch["x"]), batch["positions"], seed, k).to(self.device)
        keys = [p * k + j for p in batch["positions"] for j in range(k)]  # one generator per frame
        noise, t, drop = self.noise_and_timesteps(latents, keys, seed)
        repeated = {**batch, "captions": [c for c in batch["captions"] for _ in range(k)],
                    "attributes": [a for a in batch["attributes"] for _ in range(k)]}
        tokens = condition(self.conditioner, repeated, drop, self.device)
        noisy = self.scheduler.add_noise(latents, noise, t)
        loss = diffusion_loss(model(noisy, t, tokens), self.scheduler, latents, noise, t)
        return loss, {}

    def export(self, directory: Path) -> None:
        self.module.unet.save_pretrained(directory / "unet")
        self.scheduler.save_pretrained(directory / "scheduler")
        self.vae.save_pretrained(directory / "vae")
        if self.conditioner is not None:
            self.conditioner.save_pretrained(directory / "conditioner")
        index = {"stage": "image", "unet": "unet", "scheduler": "scheduler", "vae": "vae",
                 "conditioning": self.config.model.conditioning,
                 "conditioner": "conditioner" if self.conditioner is not None else None,
                 "latent_size": self.latent_size(), "fps": self.config.data.fps}
        (directory / MODEL_INDEX).write_text(json.dumps(index, indent=2))

    def sample(self, directory: Path, step: int) -> None:
        from .sampling_io import sample_and_write

        sample_and_write(self, directory, step, video=False)


# ------------------------------------------------------------------------------------------- temporal
class TemporalModule(nn.Module):
    def __init__(self, video_unet: VideoUNet):
        super().__init__()
        self.video_unet = video_unet

    def forward(self, noisy, timesteps, tokens, image_only, context=None, context_mask=None):
        return self.video_unet(noisy, timesteps, tokens, image_only=image_only, context=context,
                               context_mask=context_mask).sample


def load_image_model(path: str) -> dict:
    """The parts of an `image` stage export: unet, scheduler, vae, conditioner (or None)."""
    root = Path(path)
    if not (root / MODEL_INDEX).is_file():
        raise FileNotFoundError(f"{path} is not an exported image model (no {MODEL_INDEX}); "
                                "train one with stage: image")
    index = json.loads((root / MODEL_INDEX).read_text())
    parts = {"index": index, "unet": UNet2DConditionModel.from_pretrained(root / index["unet"]),
             "scheduler": DDPMScheduler.from_pretrained(root / index["scheduler"]),
             "vae": AutoencoderKL.from_pretrained(root / index["vae"]), "conditioner": None}
    if index.get("conditioner"):
        from ..conditioning import AttributeConditioner, TextConditioner

        cls = TextConditioner if index["conditioning"] == "text" else AttributeConditioner
        parts["conditioner"] = cls.from_pretrained(root / index["conditioner"])
    return parts


class TemporalStage(DiffusionStage):
    def __init__(self, config: TrainConfig):
        self.config, m = config, config.model
        parts = load_image_model(m.image_model)
        self.vae = parts["vae"].requires_grad_(False).eval()
        self.scheduler = parts["scheduler"]
        self.conditioner = parts["conditioner"]
        if self.conditioner is not None:
            self.conditioner.requires_grad_(False).eval()
        self.dataset = build_dataset(config)
        require_labels(parts["index"].get("conditioning", "none"), self.dataset, f"stage {config.stage}")
        self.video_unet = self.build_video_unet(parts["unet"])
        if m.train_spatial:
            self.video_unet.unet.requires_grad_(True)
        self.module = TemporalModule(self.video_unet)
        self.cfg_dropout = m.cfg_dropout

    def build_video_unet(self, unet: UNet2DConditionModel) -> VideoUNet:
        return VideoUNet.from_unet2d(unet, **self.config.model.temporal)

    def loss(self, model, batch, seed: int):
        latents = self.latents_of(batch["x"]).to(self.device)
        noise, t, drop = self.noise_and_timesteps(latents, batch["positions"], seed)
        with torch.no_grad():
            tokens = condition(self.conditioner, batch, drop, self.device)
        image_only = None
        if self.config.model.image_batch_prob > 0:
            image_only = per_sample(batch["positions"], seed, 5, lambda g: torch.rand((), generator=g)) \
                < self.config.model.image_batch_prob
        noisy = self.scheduler.add_noise(latents, noise, t)
        out = model(noisy, t, tokens, image_only.to(self.device) if image_only is not None else None)
        return diffusion_loss(out, self.scheduler, latents, noise, t), {}

    def export(self, directory: Path) -> None:
        """Only the temporal layers: the frozen image model is referenced by path, not copied."""
        self.video_unet.save_temporal_layers(directory / "temporal_layers")
        index = {"stage": "temporal", "image_model": reference(self.config.model.image_model, directory),
                 "temporal_layers": "temporal_layers", "latent_size": self.latent_size(),
                 "num_frames": self.config.data.num_frames, "fps": self.config.data.fps, **self.export_info()}
        if self.config.model.train_spatial:
            self.video_unet.unet.save_pretrained(directory / "unet")
            index["unet"] = "unet"
        (directory / MODEL_INDEX).write_text(json.dumps(index, indent=2))

    def export_info(self) -> dict:
        """What a subclass adds to the exported ``videoldm.json``."""
        return {}

    def sample(self, directory: Path, step: int) -> None:
        from .sampling_io import sample_and_write

        sample_and_write(self, directory, step, video=True)

