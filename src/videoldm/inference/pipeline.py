"""`VideoLDMPipeline`: text (or attributes) to video with a trained Video LDM stack, as a diffusers pipeline.

Components, as in diffusers' text-to-image pipelines: ``unet`` (a :class:`VideoUNet`, or an image
``UNet2DConditionModel`` sampled frame by frame), ``vae``, ``scheduler`` (the training scheduler: samplers
are built on its noise schedule), ``tokenizer`` + ``text_encoder`` (text models) or ``attribute_encoder``
(attribute models), optionally ``decoder`` (a temporal decoder for ``vae``) and ``temporal_tokenizer`` +
``temporal_text_encoder`` (the text the temporal layers were trained with, when the spatial layers read a
fine-tuned one). So ``save_pretrained``/``from_pretrained`` of the whole pipeline, ``.to(device, dtype)``,
``enable_model_cpu_offload`` and the progress-bar settings are diffusers' own.

``from_pretrained`` also takes what the trainer exports (an `image` or `temporal`/`prediction`/
`interpolation` folder, optionally with a `decoder` folder) and a Stable Diffusion folder (its image model,
frame by frame, until temporal layers are loaded with :meth:`load_temporal_layers`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel

from ..export import is_export, load_temporal_decoder, load_video_model, temporal_layers_folder
from ..models.conditioning import TextConditioner, encode_prompts
from ..models.frames import vae_scale_factor
from ..models.temporal_decoder import decode_latents, encode_latents
from ..models.video_unet import VideoUNet
from .devices import quiet_casts
from .outputs import VideoOutput, check_output_type, convert_frames
from .sampling import FrameByFrame, make_scheduler, mixed_noise, sample


def text_parts(conditioner) -> dict:
    """A prompt encoder as pipeline components: a :class:`TextConditioner`'s tokenizer and text encoder, or an
    attribute encoder."""
    if conditioner is None:
        return {}
    if isinstance(conditioner, TextConditioner):
        return {"tokenizer": conditioner.tokenizer, "text_encoder": conditioner.text_encoder}
    return {"attribute_encoder": conditioner}


def config_property(name: str, doc: str = "") -> property:
    """A pipeline setting kept in its config (so ``save_pretrained`` writes it), read and set as an attribute."""
    return property(lambda self: self.config[name], lambda self, value: self.register_to_config(**{name: value}),
                    doc=doc)


class VideoLDMPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->temporal_text_encoder->attribute_encoder->unet->decoder->vae"
    _optional_components = ["tokenizer", "text_encoder", "attribute_encoder", "decoder", "temporal_tokenizer",
                            "temporal_text_encoder"]

    def __init__(self, unet, vae, scheduler, tokenizer=None, text_encoder=None, attribute_encoder=None,
                 decoder=None, temporal_tokenizer=None, temporal_text_encoder=None,
                 latent_size: tuple[int, int] | list | None = None, fps: float | None = None, info: dict | None = None):
        super().__init__()
        if (tokenizer is None) != (text_encoder is None) or (temporal_tokenizer is None) != (temporal_text_encoder is None):
            raise ValueError("a text encoder needs its tokenizer (and a tokenizer its text encoder)")
        if text_encoder is not None and attribute_encoder is not None:
            raise ValueError("a model reads text or attributes, not both: give text_encoder or attribute_encoder")
        self.register_modules(unet=unet, vae=vae, scheduler=scheduler, tokenizer=tokenizer, text_encoder=text_encoder,
                              attribute_encoder=attribute_encoder, decoder=decoder, temporal_tokenizer=temporal_tokenizer,
                              temporal_text_encoder=temporal_text_encoder)
        # what the model was trained at, and what its export says of itself (stage, frames, keyframe_every, ...)
        self.register_to_config(latent_size=list(latent_size) if latent_size else None, fps=fps, info=dict(info or {}))

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | Path, temporal_decoder: str | Path | None = None,
                        image_model: str | Path | None = None, **kwargs) -> "VideoLDMPipeline":
        """``path``: a folder written by :meth:`save_pretrained`, a Stable Diffusion folder (frame by frame), or
        an exported `temporal` folder (a video model) or `image` folder (frame by frame);
        ``temporal_decoder``: an exported `decoder` folder made for the same autoencoder;
        ``image_model``: (exports) another `image` export of the same architecture (e.g. fine-tuned on a new
        style) to put the temporal layers on instead of the one they were trained with.
        ``kwargs`` (``dtype``, ...) go to diffusers' loader; an export takes ``dtype`` only."""
        if is_export(path):
            dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
            if kwargs:
                raise ValueError(f"an export takes temporal_decoder, image_model and dtype; not {sorted(kwargs)}")
            pipeline = cls.from_export(path, image_model)
        else:
            if image_model is not None:
                raise ValueError("image_model is for exports; put temporal layers on this pipeline's UNet with "
                                 "load_temporal_layers")
            dtype, pipeline = None, super().from_pretrained(path, **kwargs)
        if temporal_decoder is not None:
            pipeline.register_modules(decoder=load_temporal_decoder(temporal_decoder, vae=pipeline.vae))
        return pipeline.to(dtype=dtype) if dtype is not None else pipeline

    @classmethod
    def from_export(cls, path: str | Path, image_model: str | Path | None = None) -> "VideoLDMPipeline":
        parts = load_video_model(path, image_model)
        index, image_index = parts["index"], parts["image_index"]
        pipeline = cls(parts["unet"].eval(), parts["vae"].eval(), parts["scheduler"], **text_parts(parts["conditioner"]),
                       latent_size=index.get("latent_size") or image_index.get("latent_size"),
                       fps=index.get("fps") or image_index.get("fps"), info=index)
        if parts.get("temporal_conditioner") is not None:
            pipeline.temporal_conditioner = parts["temporal_conditioner"].eval()
        return pipeline

    def load_temporal_layers(self, folder: str | Path) -> "VideoLDMPipeline":
        """Puts the temporal layers of ``folder`` (a temporal-layer folder or a temporal export) on this
        pipeline's image UNet, shared, not copied: the pipeline becomes a video model (as diffusers'
        ``load_lora_weights`` puts adapters on a loaded model)."""
        unet = VideoUNet.from_unet2d(self.image_unet, temporal_layers=temporal_layers_folder(folder))
        self.register_modules(unet=unet.eval())
        return self

    def to(self, *args, **kwargs) -> "VideoLDMPipeline":
        """diffusers' ``to(device, dtype)``: every component moved and cast; returns the pipeline."""
        with quiet_casts():
            return super().to(*args, **kwargs)

    # ------------------------------------------------------------------------------------- properties
    @property
    def image_unet(self) -> UNet2DConditionModel:
        return self.unet.unet if isinstance(self.unet, VideoUNet) else self.unet

    @property
    def conditioner(self):
        """The prompt encoder (:mod:`videoldm.models.conditioning` protocol) of the spatial layers, or None."""
        if self.text_encoder is not None:
            return TextConditioner(self.tokenizer, self.text_encoder, check_eos=False)
        return self.attribute_encoder

    @property
    def conditioning(self) -> str:
        """What the model is conditioned on: ``text``, ``attributes`` or ``none``."""
        return "text" if self.text_encoder is not None else "attributes" if self.attribute_encoder is not None else "none"

    @property
    def temporal_conditioner(self):
        """The prompt encoder of the temporal layers where it differs from :attr:`conditioner`: a DreamBooth
        text encoder feeds the fine-tuned spatial layers, the one the temporal layers were trained with feeds
        them (the paper's personalized video); None: both read :attr:`conditioner`."""
        if self.temporal_text_encoder is None:
            return None
        return TextConditioner(self.temporal_tokenizer, self.temporal_text_encoder, check_eos=False)

    @temporal_conditioner.setter
    def temporal_conditioner(self, conditioner: TextConditioner | None) -> None:
        self.register_modules(temporal_tokenizer=getattr(conditioner, "tokenizer", None),
                              temporal_text_encoder=getattr(conditioner, "text_encoder", None))

    @property
    def latent_size(self) -> tuple[int, int] | None:
        """The latent (height, width) the model was trained at (None: the UNet's sample size)."""
        return tuple(self.config.latent_size) if self.config.latent_size else None

    fps = config_property("fps", "The frame rate the model was trained at (None: unknown, 8 is used).")
    info = config_property("info", "What the export says of itself: stage, num_frames, keyframe_every, ...")

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def vae_scale_factor(self) -> int:
        return vae_scale_factor(self.vae)

    @property
    def model(self):
        """The denoiser :func:`sample` runs on video latents: the video UNet, or the image UNet frame by frame."""
        return self.unet if isinstance(self.unet, VideoUNet) else FrameByFrame(self.unet)

    def temporal_tokens(self, prompts: list) -> tuple[dict, dict]:
        """The model kwargs of the conditional and the unconditional branch that give the temporal layers their
        own text encoder's tokens (:attr:`temporal_conditioner`); empty without one."""
        if self.temporal_conditioner is None:
            return {}, {}
        with torch.no_grad():
            return ({"temporal_encoder_hidden_states": encode_prompts(self.temporal_conditioner, prompts)},
                    {"temporal_encoder_hidden_states": encode_prompts(self.temporal_conditioner, [None] * len(prompts))})

    def initial_noise(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor | None:
        """The starting noise of a model trained with a mixed noise prior (its export's ``shared_noise``: that
        share of the variance common to all frames, as in training); None (independent frames) otherwise."""
        share = (self.info or {}).get("shared_noise")
        return mixed_noise(shape, generator, share) if share else None

    def tokens(self, prompts: list, uncond: bool = False):
        """The conditioner's tokens for ``prompts`` (``uncond``: the unconditional ones); None without one."""
        with torch.no_grad():
            return encode_prompts(self.conditioner, prompts, [uncond] * len(prompts))

    def enable_vae_slicing(self) -> None:
        """Decode one frame at a time with the image decoder (less memory); a temporal decoder keeps its chunks
        of frames together, which its temporal layers need."""
        self.vae.enable_slicing()

    def disable_vae_slicing(self) -> None:
        self.vae.disable_slicing()

    # ------------------------------------------------------------------------------------------ sampling
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
        ``generator``: a ``torch.Generator`` instead of ``seed``, as diffusers pipelines take it; noise is drawn
        on the generator's device (a seed: the CPU), so a seed gives the same video on every device.
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
        B, device = len(prompts), self._execution_device
        shape = (B, cfg.in_channels, num_frames, h, w)
        cond, uncond = self.tokens(prompts), self.tokens(prompts, uncond=True)
        # an image UNet is frame by frame already; a video model is told alpha = 1 per sample
        video = isinstance(self.unet, VideoUNet)
        kwargs = {"image_only": torch.ones(B, dtype=torch.bool, device=device)} if frame_by_frame and video else {}
        uncond_kwargs = None
        if context is not None:
            kwargs.update(self._context(context, shape, device))
            uncond_kwargs = {"context_mask": torch.zeros(B, num_frames, device=device)}
        if cond is not None:  # the temporal layers' own text encoder, where the export trained one
            temporal, temporal_uncond = self.temporal_tokens(prompts)
            kwargs.update(temporal)
            uncond_kwargs = {**(uncond_kwargs or {}), **temporal_uncond}
        if generator is None:
            generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
        latents = sample(self.model, make_scheduler(sampler, self.scheduler.config), shape,
                         cond=cond, uncond=uncond if cond is not None else None, guidance_scale=guidance_scale,
                         num_inference_steps=num_inference_steps, generator=generator,
                         progress=progress, model_kwargs=kwargs or None, uncond_kwargs=uncond_kwargs, device=device,
                         callback=self._step_callback(callback_on_step_end),
                         latents=self.initial_noise(shape, generator) if video and not frame_by_frame else None)
        if context is not None:
            latents[:, :, :context.shape[2]] = context.to(latents)
        fps = self.fps or 8.0
        if output_type == "latent":
            return VideoOutput(frames=latents, fps=fps)
        if self.decoder is not None:
            frames = decode_latents(self.decoder, latents, image_only=frame_by_frame, progress=progress)
        else:
            frames = decode_latents(self.vae, latents)
        self.maybe_free_model_hooks()
        return VideoOutput(frames=convert_frames(frames, output_type), fps=fps)

    def _step_callback(self, callback_on_step_end):
        """diffusers' ``callback_on_step_end(pipeline, step, timestep, tensors)`` as :func:`sample` calls it."""
        if callback_on_step_end is None:
            return None

        def call(step, timestep, latents):
            returned = callback_on_step_end(self, step, timestep, {"latents": latents}) or {}
            return returned.get("latents")
        return call

    def _context(self, context: torch.Tensor, shape: tuple, device: torch.device) -> dict:
        if getattr(self.unet, "context_encoder", None) is None:
            raise ValueError("context frames need a prediction model (stage: prediction)")
        B, C, T, h, w = shape
        if context.ndim != 5 or context.shape[0] != B or context.shape[1] != C or tuple(context.shape[-2:]) != (h, w):
            raise ValueError(f"context must be latents (B={B}, C={C}, S, {h}, {w}), got {tuple(context.shape)}")
        S = context.shape[2]
        if not 0 < S < T:
            raise ValueError(f"{S} context frames for a clip of {T}: give 1..{T - 1}")
        full = torch.zeros(shape, device=device)
        full[:, :, :S] = context.to(full)
        mask = torch.zeros(B, T, device=device)
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
