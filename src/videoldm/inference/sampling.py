"""Sampling through diffusers schedulers, for image UNets and video UNets alike.

A sampler is always built from the training scheduler's config, so its noise schedule and prediction
type (epsilon or v) are the model's. One loop serves ``(B, C, H, W)`` and ``(B, C, T, H, W)`` latents;
classifier-free guidance runs the conditional and unconditional halves as one doubled batch.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from torch import nn
from tqdm.auto import tqdm

from ..models.frames import frame_timesteps, frame_tokens, per_frame
from ..models.video_unet import VideoUNetOutput

__all__ = ["SCHEDULERS", "FrameByFrame", "Wrapper", "frame_by_frame", "make_scheduler", "mix_shared_noise",
           "mixed_noise", "sample", "watching_steps"]

SCHEDULERS = {
    "ddim": (DDIMScheduler, {}),
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "euler": (EulerDiscreteScheduler, {}),
    "ddpm": (DDPMScheduler, {}),
}


def make_scheduler(name: str, train_scheduler_config: Mapping, clip_sample: bool = False,
                   **overrides) -> SchedulerMixin:
    """The sampler ``name`` (one of :data:`SCHEDULERS`) on the training scheduler's noise schedule.

    ``clip_sample``: clip predicted x0 to [-1, 1] (DDIM, DDPM). Off by default whatever the config says,
    because ``DDPMScheduler`` records ``clip_sample=True`` by default and latents are not bounded; set it
    for pixel-space models. ``overrides``: further scheduler options, e.g. ``timestep_spacing="trailing"``.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"unknown sampler {name!r}; options: {', '.join(SCHEDULERS)}")
    cls, options = SCHEDULERS[name]
    accepted = inspect.signature(cls.__init__).parameters  # DDPM-only keys would otherwise ride along in the config
    config = {k: v for k, v in dict(train_scheduler_config).items() if k in accepted}
    if "clip_sample" in accepted:
        config["clip_sample"] = clip_sample
    return cls.from_config({**config, **options, **overrides})


def mix_shared_noise(noise: torch.Tensor, shared: torch.Tensor, share: float) -> torch.Tensor:
    """PYoCo's mixed noise prior: ``(B, C, T, h, w)`` noise whose variance is ``share`` common to all frames
    (``shared``: ``(B, C, 1, h, w)``) and the rest independent per frame; still unit variance per element."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"shared_noise must lie in [0, 1), got {share}")
    return (1 - share) ** 0.5 * noise + share ** 0.5 * shared


def mixed_noise(shape: tuple[int, ...], generator: torch.Generator, share: float) -> torch.Tensor:
    """Starting noise ``(B, C, T, h, w)`` of a model trained with the mixed noise prior, drawn from ``generator``
    (on its device): the per-frame part first, then the shared one."""
    B, C, T, h, w = shape
    noise = randn_tensor(tuple(shape), generator=generator, device=generator.device, dtype=torch.float32)
    shared = randn_tensor((B, C, 1, h, w), generator=generator, device=generator.device, dtype=torch.float32)
    return mix_shared_noise(noise, shared, share)


_step_watchers: ContextVar[tuple] = ContextVar("step_watchers", default=())


@contextmanager
def watching_steps(watcher):
    """Calls ``watcher(step, steps, latents)`` after every step of every :func:`sample` loop run inside the
    block, in this thread: the loops of a whole job (keyframe clips, interpolation windows, upsampler tiles)
    sit several calls deep, and a progress bar or a cancel button needs each of them without every stage
    passing a callback down. Raising from ``watcher`` stops the sampling at that step."""
    token = _step_watchers.set(_step_watchers.get() + (watcher,))
    try:
        yield
    finally:
        _step_watchers.reset(token)


def _double(value, batch: int):
    """``value`` for the doubled batch of guidance: tensors with a leading ``batch`` dim repeated, dicts recursed."""
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
        return torch.cat([value, value])
    if isinstance(value, Mapping):
        return {k: _double(v, batch) for k, v in value.items()}
    return value


def _pair(uncond_kwargs: Mapping, cond_kwargs: Mapping, batch: int) -> dict:
    """The doubled batch's kwargs when the unconditional half differs: (uncond, cond) along the batch."""
    unknown = set(uncond_kwargs) - set(cond_kwargs)
    if unknown:
        raise ValueError(f"uncond_kwargs {sorted(unknown)} have no conditional counterpart in model_kwargs")
    paired = {}
    for key, value in cond_kwargs.items():
        other = uncond_kwargs.get(key, value)
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
            paired[key] = torch.cat([torch.as_tensor(other, device=value.device).to(value.dtype), value])
        elif isinstance(value, Mapping):
            paired[key] = _pair(other, value, batch)
        else:
            paired[key] = value
    return paired


def _to_model(value, device: torch.device, dtype: torch.dtype):
    """Model inputs where the model is: tensors to its device, floating ones to its dtype; dicts recursed."""
    if isinstance(value, torch.Tensor):
        return value.to(device, dtype) if value.is_floating_point() else value.to(device)
    if isinstance(value, Mapping):
        return {k: _to_model(v, device, dtype) for k, v in value.items()}
    return value


def _first(output) -> torch.Tensor:
    """The prediction from a diffusers output, a tuple, or a plain tensor."""
    if isinstance(output, torch.Tensor):
        return output
    return output.sample if hasattr(output, "sample") else output[0]


@torch.no_grad()
def sample(
    model: nn.Module,
    scheduler: SchedulerMixin,
    shape: tuple[int, ...],
    cond: torch.Tensor | None = None,
    uncond: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    num_inference_steps: int = 25,
    generator: torch.Generator | int | None = None,
    progress: bool = True,
    model_kwargs: dict | None = None,
    device: torch.device | str | None = None,
    step_kwargs: dict | None = None,
    uncond_kwargs: dict | None = None,
    latents: torch.Tensor | None = None,
    callback=None,
    **call_kwargs,
) -> torch.Tensor:
    """Denoises Gaussian noise of ``shape`` into latents with ``scheduler``.

    Args:
        model: a diffusers ``UNet2DConditionModel`` (``shape`` is ``(B, C, H, W)``), a :class:`VideoUNet`
            or :func:`frame_by_frame` wrapper (``(B, C, T, H, W)``), or any callable with their signature.
        cond / uncond: ``encoder_hidden_states`` of the conditional and unconditional model,
            ``(B, L, D)`` or ``(1, L, D)`` for the whole batch.
        guidance_scale: ``s`` of classifier-free guidance ``uncond + s * (cond - uncond)``; it is applied
            (in one doubled batch) only when ``s != 1`` and ``uncond`` or ``uncond_kwargs`` is given, so
            ``s = 1`` is exactly the conditional prediction.
        generator: an int seed or a ``torch.Generator``; with a seed (or a CPU generator) the noise is drawn
            on the CPU, so a seed gives the same initial noise on any device.
        model_kwargs / call_kwargs: passed to every model call (e.g. ``image_only``, ``class_labels``);
            tensors with a leading ``B`` are doubled with the batch under guidance.
        device: where to run; defaults to the model's device.
        step_kwargs: passed to ``scheduler.step``, e.g. ``eta`` (DDIM) or ``s_churn`` (Euler).
        uncond_kwargs: model kwargs of the unconditional branch where they differ from ``model_kwargs``:
            guidance on context gives the conditional branch ``context_mask`` and the unconditional one a
            zero mask (S = 0). With ``uncond`` too, both text and context are dropped together.
        latents: the initial noise (unit variance, of ``shape``) instead of drawing it from ``generator``
            (tiled sampling gives each tile its part of one noise field this way).
        callback: called after every step as ``callback(step, timestep, latents)`` (progress bars, previews,
            cancelling by raising); a tensor it returns replaces the latents.

    Returns: the final latents, float32, on ``device``.
    """
    if int(num_inference_steps) != num_inference_steps or num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be a whole number >= 1, got {num_inference_steps}")
    if not math.isfinite(guidance_scale):
        raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale}")
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(generator)
    device = torch.device(device or getattr(model, "device", "cpu"))
    dtype = getattr(model, "dtype", torch.float32)
    model_kwargs = _to_model({**(model_kwargs or {}), **call_kwargs}, device, dtype)
    uncond_kwargs = _to_model(uncond_kwargs, device, dtype) if uncond_kwargs is not None else None
    batch = shape[0]
    cond, uncond = (c.expand(batch, *c.shape[1:]) if c is not None and c.shape[0] == 1 else c for c in (cond, uncond))
    guided = (uncond is not None or uncond_kwargs is not None) and guidance_scale != 1.0
    if guided:
        if uncond is not None and cond is None:
            raise ValueError("guidance needs cond as well as uncond")
        if cond is not None:
            context = torch.cat([uncond if uncond is not None else cond, cond]).to(device, dtype)
        else:
            context = None
        model_kwargs = _pair(uncond_kwargs, model_kwargs, batch) if uncond_kwargs else _double(model_kwargs, batch)
    else:
        context = cond.to(device, dtype) if cond is not None else None

    scheduler.set_timesteps(num_inference_steps, device=device)
    if latents is None:
        latents = randn_tensor(tuple(shape), generator=generator, device=device, dtype=torch.float32)
    elif tuple(latents.shape) != tuple(shape):
        raise ValueError(f"initial latents of shape {tuple(latents.shape)} for a sample of shape {tuple(shape)}")
    latents = latents.to(device, torch.float32) * scheduler.init_noise_sigma
    step_kwargs = dict(step_kwargs or {})
    if "generator" in inspect.signature(scheduler.step).parameters:
        step_kwargs["generator"] = generator  # stochastic samplers (DDPM, DDIM eta > 0) draw from the seed too

    for step, t in enumerate(tqdm(scheduler.timesteps, desc="sampling", disable=not progress, leave=False)):
        x = torch.cat([latents, latents]) if guided else latents
        x = scheduler.scale_model_input(x, t).to(dtype)
        out = _first(model(x, t.expand(x.shape[0]), encoder_hidden_states=context, **model_kwargs)).float()
        if guided:
            out_uncond, out_cond = out.chunk(2)
            out = out_uncond + guidance_scale * (out_cond - out_uncond)
        latents = scheduler.step(out, t, latents, return_dict=False, **step_kwargs)[0]
        if callback is not None:
            replaced = callback(step, t, latents)
            latents = replaced if replaced is not None else latents
        for watcher in _step_watchers.get():
            watcher(step, len(scheduler.timesteps), latents)
    return latents


class Wrapper(nn.Module):
    """A model around another (held as ``wrapped``): its device and dtype, which :func:`sample` reads, are
    the wrapped model's."""

    wrapped = "model"

    @property
    def device(self) -> torch.device:
        return getattr(self, self.wrapped).device

    @property
    def dtype(self) -> torch.dtype:
        return getattr(self, self.wrapped).dtype


class FrameByFrame(Wrapper):
    """An image UNet run on ``(B, C, T, H, W)`` video latents frame by frame: the alpha = 1 baseline.

    Same call signature and output as :class:`VideoUNet`, with the same folding of timesteps, tokens and
    per-video kwargs into frames; ``image_only`` is accepted and ignored (every frame is an image here).
    A ``VideoUNet`` called with ``image_only=torch.ones(B, dtype=torch.bool)`` computes the same thing.
    """

    wrapped = "unet"

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor | None = None,
                image_only: torch.Tensor | None = None, return_dict: bool = True, **unet_kwargs):
        del image_only
        if sample.ndim != 5:
            raise ValueError(f"sample must be a video latent of shape (B, C, T, H, W), got {tuple(sample.shape)}")
        B, C, T, H, W = sample.shape
        frames = sample.transpose(1, 2).reshape(B * T, C, H, W)
        timestep = frame_timesteps(timestep, B, T, sample.device)
        tokens = frame_tokens(encoder_hidden_states, B, T, "encoder_hidden_states")
        unet_kwargs = {k: per_frame(v, B, T) for k, v in unet_kwargs.items()}
        out = self.unet(frames, timestep, tokens, return_dict=False, **unet_kwargs)[0]
        out = out.view(B, T, -1, H, W).transpose(1, 2)
        return VideoUNetOutput(sample=out) if return_dict else (out,)


def frame_by_frame(image_unet: nn.Module) -> FrameByFrame:
    """Wraps an image UNet so :func:`sample` can run it on video latents (no temporal layers at all)."""
    return FrameByFrame(image_unet)
