"""`VideoLDMPipeline`: text (or attributes) to video with a trained Video LDM stack.

Loads what the trainer exports: an `image` stage folder (UNet, scheduler, VAE, conditioner) or a
`temporal` stage folder (temporal layers plus a reference to its image model), and optionally a
`decoder` stage folder (a temporal decoder for the same autoencoder).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..export import load_temporal_decoder, load_video_model
from ..models.conditioning import encode_prompts
from ..models.frames import vae_scale_factor
from ..models.temporal_decoder import decode_latents, encode_latents
from ..models.video_unet import VideoUNet
from .devices import place
from .outputs import VideoOutput, check_output_type, convert_frames
from .sampling import FrameByFrame, make_scheduler, sample


class VideoLDMPipeline:
    def __init__(self, unet, vae, scheduler_config: dict, conditioner=None, conditioning: str = "none",
                 latent_size: tuple[int, int] | None = None, fps: float | None = None, decoder=None):
        self.unet, self.vae, self.conditioner = unet, vae, conditioner
        self.decoder = decoder  # a TemporalDecoder on `vae`, or None: frame-by-frame decoding
        self.scheduler_config, self.conditioning = dict(scheduler_config), conditioning
        self.latent_size, self.fps = latent_size, fps  # what the model was trained at
        self.info: dict = {}
        # text tokens for the temporal layers when they must differ from the spatial ones: a DreamBooth
        # text encoder feeds the fine-tuned spatial layers, the one the temporal layers were trained with
        # feeds them (the paper's personalized video); None: both read `conditioner`
        self.temporal_conditioner = None

    @classmethod
    def from_pretrained(cls, path: str | Path, temporal_decoder: str | Path | None = None,
                        image_model: str | Path | None = None) -> "VideoLDMPipeline":
        """``path``: an exported `temporal` folder (a video model) or `image` folder (frame by frame);
        ``temporal_decoder``: an exported `decoder` folder made for the same autoencoder;
        ``image_model``: another `image` export of the same architecture (e.g. fine-tuned on a new style)
        to put the temporal layers on instead of the one they were trained with."""
        parts = load_video_model(path, image_model)
        unet = parts["unet"]
        model = unet if isinstance(unet, VideoUNet) else FrameByFrame(unet)
        model.eval()
        index, image_index = parts["index"], parts["image_index"]
        size = index.get("latent_size") or image_index.get("latent_size")
        decoder = None
        if temporal_decoder is not None:
            decoder = load_temporal_decoder(temporal_decoder, vae=parts["vae"])
        pipeline = cls(model, parts["vae"].eval(), parts["scheduler"].config, parts["conditioner"],
                       image_index.get("conditioning", "none"), tuple(size) if size else None,
                       index.get("fps") or image_index.get("fps"), decoder)
        pipeline.info = index  # what the export says of itself (stage, frames, keyframe_every, ...)
        return pipeline

    @property
    def image_unet(self):
        return self.unet.unet

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "VideoLDMPipeline":
        """Moves every model (and casts it to ``dtype``), as diffusers pipelines do; returns the pipeline."""
        for module in (self.unet, self.vae, self.decoder, self.conditioner, self.temporal_conditioner):
            place(module, device, dtype)
        return self

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def vae_scale_factor(self) -> int:
        return vae_scale_factor(self.vae)

    def tokens(self, prompts: list, uncond: bool = False):
        """The conditioner's tokens for ``prompts`` (``uncond``: the unconditional ones); None without one."""
        with torch.no_grad():
            return encode_prompts(self.conditioner, prompts, [uncond] * len(prompts))

    @torch.no_grad()
    def __call__(self, prompts: list | str | dict | None, num_frames: int = 16, latent_size: tuple[int, int] | None = None,
                 num_inference_steps: int = 25, guidance_scale: float = 3.0, sampler: str = "ddim",
                 seed: int | torch.Generator = 0, frame_by_frame: bool = False, progress: bool = True,
                 output_type: str = "pt", context: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, callback_on_step_end=None) -> VideoOutput:
        """Samples one video per prompt (a caption, or an attribute dict for attribute models; a single one
        needs no list).

        ``frame_by_frame=True`` forces alpha = 1: the image model alone, frame by frame, with the same
        noise: the baseline a video model is compared with (decoded by the image decoder too).
        Returns a :class:`VideoOutput`: ``.frames`` per ``output_type`` ("pt": ``(B, T, 3, H, W)`` in [-1, 1];
        "np": uint8 ``(B, T, H, W, 3)``; "pil": lists of images; "latent": the latents ``(B, C, T, h, w)``),
        ``.fps`` the model's frame rate, ``.export("clip.mp4")``.
        ``context``: for a prediction model, scaled latents ``(B, C, S, h, w)`` (see :meth:`encode`) given as
        the first S frames; guidance then drops them (and the prompt) in the unconditional branch, and the
        result starts with them exactly.
        ``generator``: a ``torch.Generator`` instead of ``seed``, as diffusers pipelines take it.
        ``callback_on_step_end(pipeline, step, timestep, {"latents": latents})``: called after every denoising
        step, as in diffusers; a dict it returns with ``"latents"`` replaces them; raising stops the sampling.
        """
        check_output_type(output_type)
        if prompts is None or isinstance(prompts, (str, dict)):  # one video, as diffusers pipelines take it
            prompts = [prompts]
        if len(prompts) == 0:
            raise ValueError("no prompts: give one prompt (or None for an unconditional model) per video")
        if int(num_frames) != num_frames or num_frames < 1:
            raise ValueError(f"num_frames must be a whole number >= 1, got {num_frames}")
        cfg = self.image_unet.config
        h, w = latent_size or self.latent_size or (cfg.sample_size, cfg.sample_size)
        if h < 1 or w < 1:
            raise ValueError(f"latent_size must be positive, got {h}x{w}")
        B = len(prompts)
        shape = (B, cfg.in_channels, num_frames, h, w)
        cond, uncond = self.tokens(prompts), self.tokens(prompts, uncond=True)
        # an image export is frame by frame already; a video model is told alpha = 1 per sample
        kwargs = {"image_only": torch.ones(B, dtype=torch.bool)} if frame_by_frame and isinstance(self.unet, VideoUNet) else {}
        uncond_kwargs = None
        if context is not None:
            kwargs.update(self._context(context, shape))
            uncond_kwargs = {"context_mask": torch.zeros(B, num_frames)}
        if self.temporal_conditioner is not None and cond is not None:  # (__call__ runs without gradients)
            kwargs["temporal_encoder_hidden_states"] = encode_prompts(self.temporal_conditioner, prompts)
            uncond_kwargs = {**(uncond_kwargs or {}),
                             "temporal_encoder_hidden_states": encode_prompts(self.temporal_conditioner, [None] * B)}
        latents = sample(self.unet, make_scheduler(sampler, self.scheduler_config), shape,
                         cond=cond, uncond=uncond if cond is not None else None, guidance_scale=guidance_scale,
                         num_inference_steps=num_inference_steps, generator=generator if generator is not None else seed,
                         progress=progress, model_kwargs=kwargs or None, uncond_kwargs=uncond_kwargs,
                         callback=self._step_callback(callback_on_step_end))
        if context is not None:
            latents[:, :, :context.shape[2]] = context
        fps = self.fps or 8.0
        if output_type == "latent":
            return VideoOutput(frames=latents, fps=fps)
        if self.decoder is not None:
            frames = decode_latents(self.decoder, latents, image_only=frame_by_frame, progress=progress)
        else:
            frames = decode_latents(self.vae, latents)
        return VideoOutput(frames=convert_frames(frames, output_type), fps=fps)

    def _step_callback(self, callback_on_step_end):
        """diffusers' ``callback_on_step_end(pipeline, step, timestep, tensors)`` as :func:`sample` calls it."""
        if callback_on_step_end is None:
            return None

        def call(step, timestep, latents):
            returned = callback_on_step_end(self, step, timestep, {"latents": latents}) or {}
            return returned.get("latents")
        return call

    def _context(self, context: torch.Tensor, shape: tuple) -> dict:
        if getattr(self.unet, "context_encoder", None) is None:
            raise ValueError("context frames need a prediction model (stage: prediction)")
        B, C, T, h, w = shape
        if context.ndim != 5 or context.shape[0] != B or context.shape[1] != C or tuple(context.shape[-2:]) != (h, w):
            raise ValueError(f"context must be latents (B={B}, C={C}, S, {h}, {w}), got {tuple(context.shape)}")
        S = context.shape[2]
        if not 0 < S < T:
            raise ValueError(f"{S} context frames for a clip of {T}: give 1..{T - 1}")
        full = torch.zeros(shape)
        full[:, :, :S] = context
        mask = torch.zeros(B, T)
        mask[:, :S] = 1
        return {"context": full, "context_mask": mask}

    def latent_size_for(self, size: tuple[int, int]) -> tuple[int, int]:
        """The latent ``(h, w)`` that decodes to frames of ``size`` = (height, width) pixels. The UNet halves
        the latent twice or more, so a size must be a multiple of 8 x the autoencoder's downsampling."""
        f = self.vae_scale_factor
        if size[0] % (8 * f) or size[1] % (8 * f):
            raise ValueError(f"size {size[0]}x{size[1]}: height and width must be multiples of {8 * f}")
        return size[0] // f, size[1] // f

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``(B, T, 3, H, W)`` in [-1, 1] -> scaled latents ``(B, C, T, h, w)`` (the distribution's mean)."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be (B, T, 3, H, W), got {tuple(frames.shape)}")
        return encode_latents(self.vae, frames.transpose(1, 2), chunk_size=16)

    def decode(self, latents: torch.Tensor, progress: bool = False) -> torch.Tensor:
        """Scaled latents ``(B, C, T, h, w)`` -> frames ``(B, T, 3, H, W)`` in [-1, 1], by the temporal decoder if loaded."""
        return decode_latents(self.decoder if self.decoder is not None else self.vae, latents, progress=progress)
