"""Stage `temporal`: temporal layers on a frozen image LDM, trained on clips (Video LDM, section 3)."""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from ...export import load_image_model, reference, write_index
from ...inference.sampling import mix_shared_noise
from ...models.conditioning import TextConditioner, encode_prompts
from ...models.video_unet import VideoUNet
from ..config import TrainConfig
from ..samples import sample_and_write
from .base import LOSS_WEIGHTINGS, DiffusionStage, build_dataset, condition, diffusion_loss, per_sample, require_labels


class TemporalModule(nn.Module):
    """What the temporal stages train: the video UNet's temporal layers and, with ``temporal_conditioner``,
    the text encoder that feeds only them (``temporal_prompts``: the captions, None where dropped)."""

    def __init__(self, video_unet: VideoUNet, temporal_conditioner: TextConditioner | None = None):
        super().__init__()
        self.video_unet = video_unet
        self.temporal_conditioner = temporal_conditioner

    def forward(self, noisy, timesteps, tokens, image_only, context=None, context_mask=None, temporal_prompts=None):
        temporal_tokens = None
        if self.temporal_conditioner is not None and temporal_prompts is not None:
            temporal_tokens = encode_prompts(self.temporal_conditioner, temporal_prompts).to(noisy.device)
        return self.video_unet(noisy, timesteps, tokens, image_only=image_only, context=context,
                               context_mask=context_mask, temporal_encoder_hidden_states=temporal_tokens).sample


class TemporalStage(DiffusionStage):
    def __init__(self, config: TrainConfig):
        self.config, m = config, config.model
        parts = load_image_model(m.image_model, m.image_config)
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
        if not 0.0 <= m.shared_noise < 1.0:
            raise ValueError(f"model.shared_noise must lie in [0, 1), got {m.shared_noise}")
        if m.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"model.loss_weighting: {m.loss_weighting!r} is not one of "
                             f"{', '.join(LOSS_WEIGHTINGS)}")
        self.temporal_conditioner = None
        if m.temporal_text:
            if not isinstance(self.conditioner, TextConditioner):
                raise ValueError("model.temporal_text: the image model has no text encoder to start the temporal "
                                 "one from")
            self.temporal_conditioner = self.initial_temporal_conditioner().requires_grad_(True).train()
        self.module = TemporalModule(self.video_unet, self.temporal_conditioner)
        self.cfg_dropout = m.cfg_dropout

    def initial_temporal_conditioner(self) -> TextConditioner:
        """Where a trained temporal text encoder starts: a copy of the image model's."""
        return copy.deepcopy(self.conditioner)

    def temporal_prompts(self, batch, drop: torch.Tensor) -> dict:
        """The module's ``temporal_prompts`` keyword (the captions, None where dropped), where it has its own."""
        if self.temporal_conditioner is None:
            return {}
        return {"temporal_prompts": [None if d else c for c, d in zip(batch["captions"], drop.tolist())]}

    def noise_and_timesteps(self, latents, positions, seed):
        noise, t, drop = super().noise_and_timesteps(latents, positions, seed)
        share = self.config.model.shared_noise
        if share:
            shape = (latents.shape[1], 1, *latents.shape[3:])
            shared = per_sample(positions, seed, 8, lambda g: torch.randn(shape, generator=g)).to(latents)
            noise = mix_shared_noise(noise, shared, share)
        return noise, t, drop

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
        out = model(noisy, t, tokens, image_only.to(self.device) if image_only is not None else None,
                    **self.temporal_prompts(batch, drop))
        return diffusion_loss(out, self.scheduler, latents, noise, t, weighting=self.config.model.loss_weighting), {}

    def export(self, directory: Path) -> None:
        """Only the temporal layers: the frozen image model is referenced by path, not copied."""
        self.video_unet.save_temporal_layers(directory / "temporal_layers")
        index = {"stage": "temporal", "image_model": reference(self.config.model.image_model, directory),
                 **({"image_config": reference(self.config.model.image_config, directory)}
                    if self.config.model.image_config else {}),
                 "temporal_layers": "temporal_layers", "latent_size": self.latent_size(),
                 "num_frames": self.config.data.num_frames, "fps": self.config.data.fps, **self.export_info()}
        if self.config.model.train_spatial:
            self.video_unet.unet.save_pretrained(directory / "unet")
            index["unet"] = "unet"
        if self.temporal_conditioner is not None:
            self.temporal_conditioner.save_pretrained(directory / "temporal_conditioner")
            index["temporal_conditioner"] = "temporal_conditioner"
        if self.config.model.shared_noise:
            index["shared_noise"] = self.config.model.shared_noise
        write_index(directory, index)

    def export_info(self) -> dict:
        """What a subclass adds to the exported ``videoldm.json``."""
        return {}

    def sample(self, directory: Path, step: int) -> None:
        sample_and_write(self, directory, step, video=True)
