"""Stages `prediction` and `interpolation`: video models that are given some frames (Video LDM, sections 4-5).

Both are the temporal stage with context conditioning: the clean latents of the given frames and their
mask reach every temporal layer (``VideoUNet(context_conditioning=True)``), spatial layers frozen. What
differs is which frames are given:

- prediction: the first S frames, S drawn per clip from ``context_frames`` (0, 1 or 2), so one model
  starts a video (S = 0) and continues one (S = 1, 2) for long rollouts;
- interpolation: every ``keyframe_every``-th frame (0, k, 2k, ...); the model fills in the frames between.

A share ``context_dropout`` of clips is given no frame at all, the unconditional branch of guidance on
context. The mask is drawn from each sample's own generator, so a resumed run sees the same masks.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from ...export import temporal_layers_folder
from ...models.conditioning import TextConditioner
from ...models.video_unet import VideoUNet, read_temporal_config
from .base import condition, diffusion_loss, per_sample
from .temporal import TemporalStage


class ContextStage(TemporalStage):
    kind = ""

    def build_video_unet(self, unet: UNet2DConditionModel) -> VideoUNet:
        m = self.config.model
        options = {**m.temporal, "context_conditioning": True}
        if not m.init_temporal:
            return VideoUNet.from_unet2d(unet, **options)
        folder = temporal_layers_folder(m.init_temporal)
        saved = read_temporal_config(folder)["options"]
        merged = {**saved, **options}
        model = VideoUNet.from_unet2d(unet, **merged)
        # a context encoder of another design (carry on/off) is not loaded: this one starts new (a no-op)
        redesigned = saved.get("context_conditioning", False) and \
            saved.get("context_carry", False) != merged.get("context_carry", False)
        model.load_temporal_layers(folder, context_optional=True, fresh_context=redesigned)
        return model

    def initial_temporal_conditioner(self) -> TextConditioner:
        """Continuing an export that trained its own temporal text encoder: that one."""
        init = self.config.model.init_temporal
        if init and (Path(init) / "temporal_conditioner").is_dir():
            return TextConditioner.from_pretrained(Path(init) / "temporal_conditioner")
        return super().initial_temporal_conditioner()

    def masks(self, positions, num_frames: int, seed: int) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, model, batch, seed: int):
        latents = self.latents_of(batch["x"]).to(self.device)
        T = latents.shape[2]
        noise, t, drop = self.noise_and_timesteps(latents, batch["positions"], seed)
        mask = self.masks(batch["positions"], T, seed).to(self.device)
        dropped = per_sample(batch["positions"], seed, 7, lambda g: torch.rand((), generator=g)) \
            < self.config.model.context_dropout
        mask = mask * (~dropped.to(self.device)).to(mask.dtype)[:, None]
        with torch.no_grad():
            tokens = condition(self.conditioner, batch, drop, self.device)
        noisy = self.scheduler.add_noise(latents, noise, t)
        out = model(noisy, t, tokens, None, latents, mask, **self.temporal_prompts(batch, drop))
        # a clean-context model sees its given frames as they are: nothing to predict there
        weights = 1 - mask if self.video_unet.config.clean_context else None
        return diffusion_loss(out, self.scheduler, latents, noise, t, weights,
                              weighting=self.config.model.loss_weighting), {}

    def export_info(self) -> dict:
        return {"stage": self.kind, **self.context_settings()}

    def context_settings(self) -> dict:
        raise NotImplementedError


class PredictionStage(ContextStage):
    kind = "prediction"

    def __init__(self, config):
        super().__init__(config)
        frames = config.model.context_frames
        if not frames or any(not 0 <= s < config.data.num_frames for s in frames):
            raise ValueError(f"model.context_frames must be numbers of given frames below data.num_frames "
                             f"({config.data.num_frames}); got {frames}")

    def masks(self, positions, num_frames: int, seed: int) -> torch.Tensor:
        choices = torch.tensor(self.config.model.context_frames)
        S = per_sample(positions, seed, 6, lambda g: choices[torch.randint(len(choices), (), generator=g)])
        return (torch.arange(num_frames)[None] < S[:, None]).float()

    def context_settings(self) -> dict:
        return {"context_frames": self.config.model.context_frames}


class InterpolationStage(ContextStage):
    kind = "interpolation"

    def __init__(self, config):
        super().__init__(config)
        k, T = config.model.keyframe_every, config.data.num_frames
        if k < 2 or (T - 1) % k:
            raise ValueError(f"interpolation needs data.num_frames = n * keyframe_every + 1 (keyframes first and "
                             f"last), keyframe_every >= 2; got num_frames {T}, keyframe_every {k}")

    def masks(self, positions, num_frames: int, seed: int) -> torch.Tensor:
        keyframes = (torch.arange(num_frames) % self.config.model.keyframe_every == 0).float()
        return keyframes[None].expand(len(positions), num_frames)

    def context_settings(self) -> dict:
        return {"keyframe_every": self.config.model.keyframe_every}
