"""Temporally aligned diffusion upsamplers (Video LDM, section 6).

A diffusion upsampler generates a high-resolution frame given the low-resolution one, concatenated to its
input along channels. **Noise augmentation**: the low-resolution frame is first noised to a level l (random
in training, fixed at sampling) and l is given to the UNet as its class label, so the model does not trust
the low-resolution input more than a generated one deserves. Two forms, one code path:

- ``pixel``: the UNet denoises RGB frames at the output size; the condition is the low-resolution frame
  upsampled (bicubic) to that size. Input channels 3 + 3.
- ``latent``: the layout of Stable Diffusion's x4 upscaler: the UNet denoises latents of the same size as
  the low-resolution frame, which is concatenated as it is (input channels C + 3); an autoencoder that
  downsamples 4x decodes the result at 4x. Folders saved by ``StableDiffusionUpscalePipeline`` load as they are.

The video upsampler is the same UNet inflated with temporal layers (:class:`~videoldm.models.VideoUNet`),
conditioned frame by frame. Large outputs are sampled in overlapping spatial tiles and chunks of frames:
each tile is a full diffusion run on its own, started from its part of one noise field (so tiles agree
where they overlap), and blended into the output with linear ramps; working memory is set by the tile.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiffusionPipeline, UNet2DConditionModel
from torch import nn
from tqdm.auto import tqdm

from ..export import load_upsampler
from ..models.conditioning import TextConditioner, encode_prompts
from ..models.frames import window_starts
from ..models.temporal_decoder import decode_latents
from ..models.video_unet import VideoUNet
from .devices import quiet_casts
from .outputs import VideoOutput, check_output_type, convert_frames
from .pipeline import config_property, text_parts
from .sampling import FrameByFrame, Wrapper, make_scheduler, sample

SPACES = ("pixel", "latent")


def check_upsampler_unet(unet: UNet2DConditionModel, space: str, latent_channels: int | None = None) -> None:
    """A clear error unless ``unet`` has an upsampler's layout: sample + 3 low-res channels in, a noise level."""
    cfg = unet.config
    out = 3 if space == "pixel" else latent_channels
    problems = []
    if cfg.in_channels != cfg.out_channels + 3:
        problems.append(f"in_channels {cfg.in_channels} != out_channels {cfg.out_channels} + 3 low-resolution channels")
    if out is not None and cfg.out_channels != out:
        problems.append(f"out_channels {cfg.out_channels}, expected {out} for {space} space")
    if not cfg.num_class_embeds and cfg.class_embed_type is None:
        problems.append("no class embedding to take the noise level (num_class_embeds)")
    if problems:
        raise ValueError("not an upsampler UNet (" + "; ".join(problems) + ")")


class NoiseAugmentation:
    """x_l = sqrt(ᾱ_l) x + sqrt(1 - ᾱ_l) ε on a DDPM schedule (diffusers' upscaler uses linear 1e-4..0.02, 1000)."""

    def __init__(self, max_noise_level: int = 350, scheduler_config: dict | None = None):
        self.max_noise_level = int(max_noise_level)
        self.scheduler = DDPMScheduler(**(scheduler_config or {}))

    def __call__(self, low_res: torch.Tensor, level: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``low_res`` (B, ...), ``level`` (B,) integers in [0, max_noise_level)."""
        if int(level.max()) >= self.scheduler.config.num_train_timesteps:
            raise ValueError(f"noise level {int(level.max())} beyond the schedule's "
                             f"{self.scheduler.config.num_train_timesteps} steps")
        return self.scheduler.add_noise(low_res, noise, level.long())


def condition_image(low_res: torch.Tensor, space: str, scale: int) -> torch.Tensor:
    """The low-resolution frames ``(N, 3, h, w)`` as the UNet sees them: at the sample's size."""
    if space == "pixel":
        return F.interpolate(low_res, scale_factor=scale, mode="bicubic", align_corners=False).clamp(-1, 1)
    return low_res  # latent: the x4 upscaler's latents have the low-resolution frame's size


def downsample(video: torch.Tensor, scale: int) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B, C, T, H / scale, W / scale)`` by block averages."""
    B, C, T, H, W = video.shape
    if H % scale or W % scale:
        raise ValueError(f"frames of {H}x{W} do not divide by the upsampling scale {scale}")
    return F.avg_pool2d(video.transpose(1, 2).flatten(0, 1), scale).view(B, T, C, H // scale, W // scale).transpose(1, 2)


class ConcatConditioned(Wrapper):
    """A video model (``VideoUNet`` or ``FrameByFrame``) whose input is the sample with ``low_res`` appended.

    ``low_res`` is a keyword, so guidance doubles it with the batch like any other per-sample input.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states=None, low_res=None, **kwargs):
        return self.model(torch.cat([sample, low_res.to(sample)], dim=1), timestep, encoder_hidden_states, **kwargs)


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """Blend weights along one axis of a tile: rising over ``overlap`` pixels on sides that meet another tile."""
    w = torch.ones(length)
    if overlap > 0:
        edge = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
        if not at_start:
            w[:overlap] = torch.minimum(w[:overlap], edge)
        if not at_end:
            w[-overlap:] = torch.minimum(w[-overlap:], edge.flip(0))
    return w


def noise_field(seed: int, shape: tuple, y0: int, x0: int, cell: int) -> torch.Tensor:
    """The part ``[y0:y0+h, x0:x0+w]`` of a noise field drawn per ``cell`` x ``cell`` block from a generator
    keyed by (seed, block row, block column): any tile gets the same noise where it overlaps another."""
    B, C, T, h, w = shape
    rows, cols = range(y0 // cell, (y0 + h - 1) // cell + 1), range(x0 // cell, (x0 + w - 1) // cell + 1)
    blocks = []
    for r in rows:
        row = []
        for c in cols:
            g = torch.Generator().manual_seed((int(seed) * 1_000_003 + r) * 1_000_033 + c)
            row.append(torch.randn(B, C, T, cell, cell, generator=g))
        blocks.append(torch.cat(row, dim=-1))
    field = torch.cat(blocks, dim=-2)
    oy, ox = y0 - rows[0] * cell, x0 - cols[0] * cell
    return field[..., oy:oy + h, ox:ox + w]


class Upsampler(DiffusionPipeline):
    """A trained (or loaded) upsampler, as a diffusers pipeline; :meth:`video` gives its temporally aligned version.

    Components as in diffusers' ``StableDiffusionUpscalePipeline``: ``unet`` (an image UNet, or a
    :class:`VideoUNet` on one), ``scheduler`` (the training scheduler: samplers are built on its noise
    schedule), ``low_res_scheduler`` (the noise augmentation's schedule), and for the latent form ``vae``;
    ``tokenizer`` + ``text_encoder`` where the UNet reads text (the SD x4 upscaler). ``scheduler`` may also
    be given as a scheduler config (a DDPM scheduler is made from it).
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["vae", "tokenizer", "text_encoder", "low_res_scheduler"]

    def __init__(self, unet: UNet2DConditionModel | VideoUNet, scheduler, space: str = "pixel", scale: int = 4,
                 vae=None, tokenizer=None, text_encoder=None, low_res_scheduler=None, noise_level: int = 20,
                 max_noise_level: int = 350, fps: float | None = None, residual: bool = False,
                 residual_scale: float = 1.0, sampling_steps: int = 25):
        super().__init__()
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        image_unet = unet.unet if isinstance(unet, VideoUNet) else unet
        if space == "latent" and vae is None:
            raise ValueError("a latent upsampler needs its autoencoder (vae=...)")
        check_upsampler_unet(image_unet, space, vae.config.latent_channels if vae is not None else None)
        if residual and space != "pixel":
            raise ValueError("residual upsampling (adding to the bicubic upsampled input) is a pixel-space option")
        if (tokenizer is None) != (text_encoder is None):
            raise ValueError("a text encoder needs its tokenizer (and a tokenizer its text encoder)")
        if isinstance(scheduler, Mapping):
            scheduler = DDPMScheduler.from_config(scheduler)
        low_res_scheduler = low_res_scheduler or DDPMScheduler()
        self.register_modules(unet=unet, scheduler=scheduler, vae=vae, tokenizer=tokenizer, text_encoder=text_encoder,
                              low_res_scheduler=low_res_scheduler)
        # residual: the model generates the difference to the bicubic upsampled input, times residual_scale
        # (see UpsamplerModelConfig.residual_scale); sampling_steps: the default of __call__, what the export
        # was measured best at
        self.register_to_config(space=space, scale=int(scale), noise_level=int(noise_level),
                                max_noise_level=int(max_noise_level), fps=fps, residual=bool(residual),
                                residual_scale=float(residual_scale), sampling_steps=int(sampling_steps))
        self.augmentation = NoiseAugmentation(max_noise_level, dict(low_res_scheduler.config))

    space = config_property("space")
    scale = config_property("scale")
    noise_level = config_property("noise_level")
    fps = config_property("fps")
    residual = config_property("residual")
    residual_scale = config_property("residual_scale")
    sampling_steps = config_property("sampling_steps")

    @property
    def text(self) -> TextConditioner | None:
        """The prompt encoder of a UNet that reads text (the SD x4 upscaler's), or None."""
        if self.text_encoder is None:
            return None
        return TextConditioner(self.tokenizer, self.text_encoder, check_eos=False)

    @property
    def image_unet(self) -> UNet2DConditionModel:
        return self.unet.unet if isinstance(self.unet, VideoUNet) else self.unet

    @property
    def is_video(self) -> bool:
        return isinstance(self.unet, VideoUNet)

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | Path, temporal_layers: str | Path | None = None, **kwargs) -> "Upsampler":
        """A folder written by :meth:`save_pretrained`, an exported ``upsampler-image`` / ``upsampler-video``
        folder, or a folder in the layout of diffusers' ``StableDiffusionUpscalePipeline`` (the SD x4
        upscaler). ``temporal_layers``: a temporal-layer folder to inflate it with (an ``upsampler-video``
        export brings its own). ``kwargs`` (``dtype``, ...) go to diffusers' loader for a saved pipeline."""
        index = Path(path) / "model_index.json"
        if index.is_file() and json.loads(index.read_text()).get("_class_name") == cls.__name__:
            upsampler = super().from_pretrained(path, **kwargs)
            return upsampler.video(temporal_layers=temporal_layers) if temporal_layers is not None else upsampler
        options = load_upsampler(path)
        layers = temporal_layers or options.pop("temporal_layers")  # given ones replace an export's own
        low_res = options.pop("low_res_scheduler_config", None)
        not_arguments = ("scheduler_config", "text", "temporal_layers")  # made into components below
        upsampler = cls(**{k: v for k, v in options.items() if k not in not_arguments},
                        scheduler=DDPMScheduler.from_config(options["scheduler_config"]),
                        low_res_scheduler=DDPMScheduler.from_config(low_res) if low_res else None,
                        **text_parts(options.get("text")))
        upsampler = upsampler.video(temporal_layers=layers) if layers is not None else upsampler
        dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
        if kwargs:
            raise ValueError(f"an export takes temporal_layers and dtype; not {sorted(kwargs)}")
        return upsampler.to(dtype=dtype) if dtype is not None else upsampler

    def to(self, *args, **kwargs) -> "Upsampler":
        """diffusers' ``to(device, dtype)``; the low-resolution input is prepared on the CPU and tiles go to the
        device one at a time."""
        with quiet_casts():
            return super().to(*args, **kwargs)

    def video(self, temporal_layers: str | Path | None = None, **temporal_options) -> "Upsampler":
        """The same upsampler with temporal layers (new ones with ``temporal_options``, or loaded); the
        spatial UNet and the other components are shared, not copied."""
        unet = VideoUNet.from_unet2d(self.image_unet, temporal_layers=temporal_layers, **temporal_options)
        components = {**self.components, "unet": unet.eval()}
        config = {k: v for k, v in self.config.items() if not k.startswith("_") and k not in components}
        return type(self)(**components, **config)

    # ----------------------------------------------------------------------------------------- sampling

    @torch.no_grad()
    def __call__(self, low_res: torch.Tensor, prompt: str | list | None = None, *, num_inference_steps: int | None = None,
                 noise_level: int | None = None, guidance_scale: float = 1.0, sampler: str = "ddim", seed: int = 0,
                 tile_size: int | None = None, tile_overlap: int = 32, frames_per_chunk: int = 8,
                 frame_by_frame: bool = False, output_type: str = "pt", progress: bool = True) -> VideoOutput:
        """``low_res``: frames ``(B, T, 3, h, w)`` in [-1, 1] -> a :class:`VideoOutput` at ``scale`` times the size.

        ``tile_size``: sample the output in tiles of this many pixels (latent space: latent pixels) with
        ``tile_overlap``; None: whole frames. Frames go through in chunks of ``frames_per_chunk``.
        ``frame_by_frame``: a video upsampler with alpha = 1 (the image upsampler, frame by frame).
        ``num_inference_steps``: None takes the model's own default (``sampling_steps``, from its recipe).
        """
        check_output_type(output_type)
        if low_res.ndim != 5 or low_res.shape[2] != 3:
            raise ValueError(f"low_res must be frames (B, T, 3, h, w) in [-1, 1], got {tuple(low_res.shape)}")
        if frames_per_chunk < 1:
            raise ValueError(f"frames_per_chunk must be at least 1, got {frames_per_chunk}")
        if tile_size is not None and tile_size < 1:
            raise ValueError(f"tile_size must be at least 1 (or None: whole frames), got {tile_size}")
        peak = float(low_res.abs().max()) if low_res.numel() else 0.0
        if peak > 2:  # a little past 1 is a decoder's overshoot; 255 is not
            raise ValueError(f"low_res must be in [-1, 1], got values up to {peak:g} (uint8 frames: x / 127.5 - 1)")
        B, T, _, h, w = low_res.shape
        num_inference_steps = self.sampling_steps if num_inference_steps is None else num_inference_steps
        prompts = prompt if isinstance(prompt, list) else [prompt] * B
        level = self.noise_level if noise_level is None else int(noise_level)
        if not 0 <= level < self.augmentation.max_noise_level:
            raise ValueError(f"noise_level must be in 0..{self.augmentation.max_noise_level - 1}, got {level}")
        model = self.unet if self.is_video else FrameByFrame(self.unet)
        kwargs = {"image_only": torch.ones(B, dtype=torch.bool)} if frame_by_frame and self.is_video else {}
        channels = self.image_unet.config.out_channels
        size = (h * self.scale, w * self.scale) if self.space == "pixel" else (h, w)
        cond, uncond = encode_prompts(self.text, prompts), encode_prompts(self.text, prompts, [True] * B)
        # the augmented low-resolution video, at its own size: a fixed level, noise from the seed
        g = torch.Generator().manual_seed(seed)
        levels = torch.full((B,), level, dtype=torch.long)
        frames = low_res.transpose(1, 2)  # (B, 3, T, h, w)
        augmented = self.augmentation(frames, levels, torch.randn(frames.shape, generator=g))
        out = torch.zeros(B, channels, T, *size)
        weight = torch.zeros(*size)
        tile = tile_size or max(size)
        ys, xs = window_starts(size[0], min(tile, size[0]), tile_overlap), window_starts(size[1], min(tile, size[1]), tile_overlap)
        th, tw = min(tile, size[0]), min(tile, size[1])
        cell = math.gcd(th, tw, *ys, *xs) or max(th, tw)
        # frames are bounded by [-1, 1], so their x0 estimates are clipped; a residual's bound is not known
        scheduler = make_scheduler(sampler, self.scheduler.config, clip_sample=self.space == "pixel" and not self.residual)
        s = self.scale if self.space == "pixel" else 1  # output pixels per low-resolution pixel
        jobs = [(t0, y, x) for t0 in range(0, T, frames_per_chunk) for y in ys for x in xs]
        for t0, y, x in tqdm(jobs, desc="upsampling", disable=not progress or len(jobs) == 1):
            t1 = min(t0 + frames_per_chunk, T)
            low = self._low_res_tile(augmented[:, :, t0:t1], y, x, th, tw, s)
            shape = (B, channels, t1 - t0, th, tw)
            noise = noise_field(seed, (B, channels, T, th, tw), y, x, cell)[:, :, t0:t1]
            result = sample(ConcatConditioned(model), scheduler, shape, cond=cond, uncond=uncond,
                            guidance_scale=guidance_scale, num_inference_steps=num_inference_steps, progress=False,
                            latents=noise, model_kwargs={**kwargs, "low_res": low, "class_labels": levels})
            if self.residual:
                result = result / self.residual_scale + self._low_res_tile(frames[:, :, t0:t1], y, x, th, tw, s)
            ramp = _ramp(th, tile_overlap, y == 0, y + th >= size[0])[:, None] * \
                _ramp(tw, tile_overlap, x == 0, x + tw >= size[1])[None, :]
            out[:, :, t0:t1, y:y + th, x:x + tw] += result.cpu() * ramp
            if t0 == 0:
                weight[y:y + th, x:x + tw] += ramp
        out /= weight
        if self.space == "latent":
            if output_type == "latent":
                return VideoOutput(frames=out, fps=self.fps or 8.0)
            frames_out = decode_latents(self.vae, out)
        else:
            frames_out = out.clamp_(-1, 1).transpose(1, 2)  # in place: the output is the largest tensor
        return VideoOutput(frames=convert_frames(frames_out, output_type), fps=self.fps or 8.0)

    def _low_res_tile(self, augmented: torch.Tensor, y: int, x: int, th: int, tw: int, s: int) -> torch.Tensor:
        """The conditioning of one output tile: its low-resolution region (with a margin, so bicubic
        upsampling sees the same neighbours as on the whole frame), brought to the tile's size."""
        B, C, T = augmented.shape[:3]
        if s == 1:
            return augmented[..., y:y + th, x:x + tw]
        m = 2  # bicubic reads 2 pixels either side
        ly0, lx0 = max(y // s - m, 0), max(x // s - m, 0)
        ly1, lx1 = min((y + th) // s + m, augmented.shape[-2]), min((x + tw) // s + m, augmented.shape[-1])
        region = augmented[..., ly0:ly1, lx0:lx1].transpose(1, 2).flatten(0, 1)
        up = condition_image(region, "pixel", s)
        oy, ox = y - ly0 * s, x - lx0 * s
        up = up[..., oy:oy + th, ox:ox + tw]
        return up.view(B, T, C, th, tw).transpose(1, 2)
