"""Stages `upsampler-image` and `upsampler-video` (Video LDM, section 6).

Both learn from random patches: the same window of every frame of a clip, its low-resolution version made
by averaging ``scale`` x ``scale`` blocks (so a patch's low-resolution version is exactly the matching
region of the downsampled frame). The low-resolution patch is noise-augmented to a random level per
sample, that level is the UNet's class label, and the loss is the usual diffusion loss on the
high-resolution patch (pixels, or latents of the autoencoder in latent space).
`upsampler-image` trains a UNet from scratch on single frames; `upsampler-video` freezes it and trains
temporal layers on clips, conditioned frame by frame.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from torch import nn

from ...data.io import write_gif
from ...export import is_export, load_autoencoder, read_index, reference, write_index
from ...inference.outputs import to_uint8
from ...inference.sampling import FrameByFrame
from ...inference.upsampling import (ConcatConditioned, NoiseAugmentation, Upsampler, check_upsampler_unet,
                                     condition_image, downsample)
from ...models.conditioning import encode_prompts
from ...models.frames import vae_scale_factor
from ...models.temporal_decoder import encode_latents
from ..config import TrainConfig
from .base import Stage, build_dataset, diffusion_loss, per_sample, pick_frames


class UpsamplerModule(nn.Module):
    """The trained model: ``(noisy, t, low_res, levels, tokens)`` -> the prediction, on videos ``(B, C, T, H, W)``
    (``tokens``: the text of a text-conditioned upsampler, as the SD x4 upscaler; None for the others)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = ConcatConditioned(model)

    def forward(self, noisy, timesteps, low_res, levels, tokens=None):
        return self.model(noisy, timesteps, tokens, low_res=low_res, class_labels=levels).sample


class UpsamplerStage(Stage):
    """What the image and video upsampler stages share: patches, noise augmentation, loss, samples."""

    def setup_data(self, config: TrainConfig) -> None:
        m = config.model
        if not 0 <= m.max_train_noise_level <= m.max_noise_level:
            raise ValueError(f"model.max_train_noise_level must be in 0..{m.max_noise_level} (max_noise_level), "
                             f"got {m.max_train_noise_level}")
        self.dataset = build_dataset(config, need_pixels=True)
        if m.patch_size % m.scale:
            raise ValueError(f"model.patch_size {m.patch_size} is not a multiple of the scale {m.scale}")
        H, W = config.data.size
        if H % m.scale or W % m.scale:
            raise ValueError(f"data.size {H}x{W} does not divide by the scale {m.scale}")
        if self.vae is not None:
            f = vae_scale_factor(self.vae)
            if f != m.scale:
                raise ValueError(f"a latent upsampler needs an autoencoder that downsamples by the scale {m.scale}; "
                                 f"this one downsamples by {f}")

    def patches(self, video: torch.Tensor, positions, seed: int) -> torch.Tensor:
        """The same random window (aligned to the scale) of every frame, per clip."""
        m = self.config.model
        H, W = video.shape[-2:]
        ph, pw = min(m.patch_size, H), min(m.patch_size, W)
        ys = per_sample(positions, seed, 21, lambda g: torch.randint(0, (H - ph) // m.scale + 1, (), generator=g))
        xs = per_sample(positions, seed, 22, lambda g: torch.randint(0, (W - pw) // m.scale + 1, (), generator=g))
        return torch.stack([v[..., y * m.scale:y * m.scale + ph, x * m.scale:x * m.scale + pw]
                            for v, y, x in zip(video, ys.tolist(), xs.tolist())])

    def diffusion_inputs(self, hi: torch.Tensor, positions, seed: int):
        """High-resolution patches ``(B, 3, T, H, W)`` -> (target, low-res condition, noise levels)."""
        m = self.config.model
        clean = downsample(hi, m.scale)
        top = m.max_train_noise_level or m.max_noise_level
        levels = per_sample(positions, seed, 23, lambda g: torch.randint(0, top, (), generator=g))
        eps = per_sample(positions, seed, 24, lambda g: torch.randn(clean.shape[1:], generator=g))
        cond = self._at_sample_size(self.augmentation(clean, levels, eps))
        target = (hi - self._at_sample_size(clean)) * self.residual_scale if self.residual else hi
        if self.vae is not None:
            target = encode_latents(self.vae, hi)
        return target, cond, levels

    def _at_sample_size(self, low: torch.Tensor) -> torch.Tensor:
        """Low-resolution clips ``(B, 3, T, h, w)`` as the UNet sees them (pixel space: bicubic to the output)."""
        m = self.config.model
        B, C, T = low.shape[:3]
        x = condition_image(low.transpose(1, 2).flatten(0, 1), m.space, m.scale)
        return x.view(B, T, *x.shape[1:]).transpose(1, 2)

    def loss(self, model, batch, seed: int):
        clips, keys = self.clips(batch, seed)
        hi = self.patches(clips, keys, seed).to(self.device)
        target, cond, levels = self.diffusion_inputs(hi, keys, seed)
        noise = per_sample(keys, seed, 2, lambda g: torch.randn(target.shape[1:], generator=g)).to(target)
        t = per_sample(keys, seed, 3, lambda g: torch.randint(
            0, self.scheduler.config.num_train_timesteps, (), generator=g)).to(self.device)
        noisy = self.scheduler.add_noise(target, noise, t)
        out = model(noisy, t, cond, levels.to(self.device), self.tokens(batch))
        return diffusion_loss(out, self.scheduler, target, noise, t), {}

    def tokens(self, batch):
        """The captions' tokens for a text-conditioned upsampler (its text encoder frozen), else None."""
        return None

    def clips(self, batch, seed: int):
        """The training clips ``(N, 3, T, H, W)`` of a batch and one stream key per clip (its generators)."""
        return batch["x"], batch["positions"]

    def sample(self, directory: Path, step: int) -> None:
        """Bicubic | upsampled | truth for the first clip's first frames, at the data's full size."""
        m = self.config.model
        clip = self.dataset[0][0][None][:, :, :4]  # (1, 3, T, H, W)
        low = downsample(clip, m.scale).transpose(1, 2)
        model = self.module.model.model
        was_training = model.training
        model.eval()
        up = self.upsampler()(low, num_inference_steps=self.config.run.sample_steps, progress=False).frames
        model.train(was_training)
        bicubic = condition_image(low[0], "pixel", m.scale)
        side_by_side = torch.cat([bicubic, up[0].cpu(), clip[0].transpose(0, 1)], dim=-1)
        write_gif(directory / f"upsampler-{step:08d}.gif", to_uint8(side_by_side), self.config.data.fps or 8)


class UpsamplerImageStage(UpsamplerStage):
    def __init__(self, config: TrainConfig):
        self.config, m = config, config.model
        if m.space not in ("pixel", "latent"):
            raise ValueError(f"model.space must be pixel or latent, got {m.space!r}")
        self.vae = load_autoencoder(m.autoencoder).requires_grad_(False).eval() if m.space == "latent" else None
        self.residual = m.residual and m.space == "pixel"
        self.residual_scale = m.residual_scale
        channels = 3 if self.vae is None else self.vae.config.latent_channels
        unet_cfg = {"in_channels": channels + 3, "out_channels": channels, "num_class_embeds": m.max_noise_level,
                    **m.unet}
        if m.image_model:  # continue an upsampler-image export (e.g. on other data): its UNet and settings
            index = read_index(m.image_model) if is_export(m.image_model) else {}
            if index.get("stage") != "upsampler-image":
                raise ValueError(f"model.image_model: {m.image_model} is not an upsampler-image export")
            for key, ours in (("space", m.space), ("scale", m.scale), ("max_noise_level", m.max_noise_level),
                              ("residual", self.residual), ("residual_scale", self.residual_scale)):
                if index[key] != ours:
                    raise ValueError(f"model.{key} is {ours!r} but {m.image_model} was trained with {index[key]!r}")
            unet = UNet2DConditionModel.from_pretrained(Path(m.image_model) / index["unet"])
        else:
            unet = UNet2DConditionModel(**unet_cfg)
        check_upsampler_unet(unet, m.space, channels)
        self.scheduler = DDPMScheduler(**m.scheduler)
        self.augmentation = NoiseAugmentation(m.max_noise_level)
        self.setup_data(config)
        self.module = UpsamplerModule(FrameByFrame(unet))
        self.unet = unet

    def clips(self, batch, seed: int):
        """Single frames: ``frames_per_clip`` of each clip, as clips of one frame, one key per frame."""
        k = self.config.data.frames_per_clip
        frames = pick_frames(batch["x"], batch["positions"], seed, k)
        return frames[:, :, None], [p * k + j for p in batch["positions"] for j in range(k)]

    def upsampler(self) -> Upsampler:
        m = self.config.model
        return Upsampler(self.unet, self.scheduler, m.space, m.scale, self.vae, noise_level=m.noise_level,
                         max_noise_level=m.max_noise_level, fps=self.config.data.fps, residual=self.residual,
                         residual_scale=self.residual_scale, sampling_steps=m.sampling_steps)

    def export(self, directory: Path) -> None:
        m = self.config.model
        self.unet.save_pretrained(directory / "unet")
        self.scheduler.save_pretrained(directory / "scheduler")
        index = {"stage": "upsampler-image", "unet": "unet", "scheduler": "scheduler", "space": m.space,
                 "scale": m.scale, "noise_level": m.noise_level, "max_noise_level": m.max_noise_level,
                 "residual": self.residual, "residual_scale": self.residual_scale,
                 "patch_size": m.patch_size, "fps": self.config.data.fps, "sampling_steps": m.sampling_steps}
        if self.vae is not None:
            self.vae.save_pretrained(directory / "vae")
            index["vae"] = "vae"
        write_index(directory, index)


class UpsamplerVideoStage(UpsamplerStage):
    def __init__(self, config: TrainConfig):
        self.config, m = config, config.model
        if not m.image_model:
            raise ValueError("model.image_model: the upsampler-image export whose UNet the temporal layers go on")
        base = Upsampler.from_pretrained(m.image_model)  # an upsampler-image export, or the SD x4 upscaler's folder
        if base.is_video:
            raise ValueError(f"{m.image_model} is a video upsampler already; give its upsampler-image export")
        # the recipe follows the model it starts from
        m.space, m.scale, m.max_noise_level = base.space, base.scale, base.augmentation.max_noise_level
        self.base, self.text = base, base.text
        if self.text is not None:
            self.text.requires_grad_(False)
        self.video_upsampler = base.video(**m.temporal)
        self.video_upsampler.sampling_steps = m.sampling_steps
        self.vae, self.augmentation, self.residual = base.vae, base.augmentation, base.residual
        self.residual_scale = base.residual_scale
        self.scheduler = DDPMScheduler.from_config(base.scheduler.config)
        self.setup_data(config)
        self.module = UpsamplerModule(self.video_upsampler.unet)

    def upsampler(self) -> Upsampler:
        return self.video_upsampler

    def tokens(self, batch):
        if self.text is None:
            return None
        with torch.no_grad():
            return encode_prompts(self.text, batch["captions"]).to(self.device)

    def export(self, directory: Path) -> None:
        self.video_upsampler.unet.save_temporal_layers(directory / "temporal_layers")
        index = {"stage": "upsampler-video", "image_model": reference(self.config.model.image_model, directory),
                 "temporal_layers": "temporal_layers", "num_frames": self.config.data.num_frames,
                 "fps": self.config.data.fps, "sampling_steps": self.config.model.sampling_steps}
        write_index(directory, index)
