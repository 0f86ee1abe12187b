"""What every training stage shares: the stage protocol, per-sample randomness, data, conditioning, loss.

Each stage builds its models (checking that they fit together before any step runs), owns the module
whose forward returns the loss (what data parallelism wraps), draws each sample's noise from that
sample's own generator, and exports what it trained in diffusers formats (:mod:`videoldm.export`).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from ...data import VideoFolderDataset
from ...data.synthetic.driving import DRIVING_ATTRIBUTES
from ...inference.seeding import sample_generator
from ...models.conditioning import (AttributeConditioner, TextConditioner, encode_batch, make_text_encoder,
                                    train_tokenizer)
from ...models.temporal_decoder import encode_latents
from ..config import TrainConfig
from ..data import LatentCache, MixedDataset


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
                   frame_weights: torch.Tensor | None = None, weighting: str = "none") -> torch.Tensor:
    """MSE to the scheduler's target: the noise (epsilon) or the velocity (v-prediction).

    ``frame_weights`` ``(B, T)`` for video latents ``(B, C, T, h, w)``: the mean over the frames weighted so
    (a frame of weight 0, e.g. a given frame of a clean-context model, is no part of the loss).
    ``weighting="velocity"``: an epsilon model's squared error divided by alpha_bar_t, the loss a v-prediction
    model gets. At high noise an epsilon error hardly depends on the clip (it is sqrt(SNR) times the clean
    clip's error), so a wrong layout or motion, decided there, costs next to nothing unweighted."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise ValueError(f"prediction_type {kind!r} is not supported for training (epsilon or v_prediction)")
    if weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {weighting!r}; options: {', '.join(LOSS_WEIGHTINGS)}")
    velocity = weighting == "velocity" and kind == "epsilon"  # a v-prediction model's loss is so already
    if frame_weights is None and not velocity:
        return F.mse_loss(model_output.float(), target.float())
    sq = (model_output.float() - target.float()).pow(2)
    if velocity:
        alpha_bar = scheduler.alphas_cumprod.to(sq.device)[timesteps.to(sq.device)]
        sq = sq / alpha_bar.view(alpha_bar.shape[0], *([1] * (sq.ndim - 1)))
    if frame_weights is None:
        return sq.mean()
    per_frame = sq.mean(dim=(1, 3, 4))  # (B, T)
    w = frame_weights.to(per_frame)
    return (per_frame * w).sum() / w.sum().clamp_min(1e-8)


LOSS_WEIGHTINGS = ("none", "velocity")


class Stage:
    """A stage owns ``module``: an ``nn.Module`` whose forward returns the loss (what DDP wraps).

    ``step`` is the optimizer step being computed (set by the trainer), for losses that change over a run.
    """

    step: int = 0

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device


# ---------------------------------------------------------------------------------------- conditioning
def build_conditioner(kind: str, dataset, text_options: dict, cross_attention_dim: int | None):
    if kind == "none":
        return None
    if kind == "text":
        tokenizer = train_tokenizer(dataset_captions(dataset), max_length=text_options.get("max_length", 16))
        encoder = make_text_encoder(tokenizer, **text_options)
        conditioner = TextConditioner(tokenizer, encoder)
        width = encoder.config.hidden_size
    elif kind == "attributes":
        conditioner = AttributeConditioner(DRIVING_ATTRIBUTES, dim=cross_attention_dim)
        width = cross_attention_dim
    else:
        raise ValueError(f"model.conditioning must be text, attributes or none; got {kind!r}")
    if cross_attention_dim is not None and width != cross_attention_dim:
        raise ValueError(f"the {kind} conditioner makes tokens of width {width} but the UNet's cross_attention_dim "
                         f"is {cross_attention_dim}")
    return conditioner


def condition(conditioner, batch, drop: torch.Tensor, device):
    """Conditioning tokens for a batch; samples where ``drop`` is True get the unconditional tokens."""
    tokens = encode_batch(conditioner, batch, drop.tolist())
    return tokens.to(device) if tokens is not None else None


class DiffusionStage(Stage):
    """What the image and temporal stages share: latents, noise, timesteps, dropout, loss."""

    def latents_of(self, x: torch.Tensor) -> torch.Tensor:
        """Clips from the cache are latents already; pixel clips are encoded (frozen VAE, scaled)."""
        if isinstance(self.dataset, LatentCache):
            return x
        return encode_latents(self.vae, x.to(self.device))

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
