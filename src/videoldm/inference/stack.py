"""The full Video LDM stack in one call: keyframes -> interpolation -> decoder (Video LDM, Fig. 2 / section 5).

Each stage after the keyframes is optional. Keyframes come from a video model (one clip) or a prediction
model (clips that continue each other); an interpolation model raises the frame rate k times per pass
(``interpolations=2``: k^2); the temporal decoder (or the image decoder) turns latents into frames. The
frame rate is carried through: the result's ``fps`` is the keyframe rate times k per pass. The video
is built in memory; for renders longer than memory allows, ``videoldm.inference.rollout`` streams to a file.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from tqdm.auto import tqdm

from .interpolation import interpolate
from .outputs import VideoOutput, check_output_type, convert_frames
from .pipeline import VideoLDMPipeline
from .seeding import interpolation_seed, sample_generator


class VideoLDMStack(DiffusionPipeline):
    """Two pipelines as one diffusers pipeline: ``keyframes`` (a video or prediction model, with the decoder)
    and optionally ``interpolator``; ``save_pretrained`` writes each in its own folder."""

    _optional_components = ["interpolator"]

    def __init__(self, keyframes: VideoLDMPipeline, interpolator: VideoLDMPipeline | None = None):
        super().__init__()
        self.register_modules(keyframes=keyframes, interpolator=interpolator)

    @classmethod
    def from_pretrained(cls, keyframes: str | Path, interpolator: str | Path | None = None,
                        temporal_decoder: str | Path | None = None, **kwargs) -> "VideoLDMStack":
        """A folder written by :meth:`save_pretrained`, or exported folders: a temporal or prediction model,
        an interpolation model, a decoder."""
        index = Path(keyframes) / "model_index.json"
        if index.is_file() and json.loads(index.read_text()).get("_class_name") == cls.__name__:
            if interpolator is not None or temporal_decoder is not None:
                raise ValueError(f"{keyframes} is a saved stack: it brings its own interpolator and decoder")
            return super().from_pretrained(keyframes, **kwargs)
        return cls(VideoLDMPipeline.from_pretrained(keyframes, temporal_decoder=temporal_decoder, **kwargs),
                   VideoLDMPipeline.from_pretrained(interpolator, **kwargs) if interpolator else None)

    def to(self, *args, **kwargs) -> "VideoLDMStack":
        """Moves and casts both pipelines, as ``VideoLDMPipeline.to`` takes it."""
        for pipeline in (self.keyframes, self.interpolator):
            if pipeline is not None:
                pipeline.to(*args, **kwargs)
        return self

    @property
    def device(self) -> torch.device:
        return self.keyframes.device

    @property
    def dtype(self) -> torch.dtype:
        return self.keyframes.dtype

    @torch.no_grad()
    def __call__(self, prompt=None, *, num_frames: int = 16, num_clips: int = 1, context_frames: int = 2,
                 interpolations: int = 1, num_inference_steps: int = 25, interpolation_steps: int | None = None,
                 guidance_scale: float = 3.0, interpolation_guidance: float = 2.0, sampler: str = "ddim",
                 seed: int = 0, output_type: str = "pt", progress: bool = True,
                 start: torch.Tensor | None = None) -> VideoOutput:
        """One video for ``prompt`` (a caption, or an attribute dict for attribute models).

        ``num_clips > 1`` needs a prediction model: each clip continues the last ``context_frames`` of the
        one before, giving ``num_frames + (num_clips - 1) * (num_frames - context_frames)`` keyframes.
        ``interpolations``: passes of the interpolation model (0 without one).
        ``start``: scaled latents ``(1, C, S, h, w)`` of frames the video begins with (see
        ``VideoLDMPipeline.encode``): a still (S = 1, image-to-video) or the last frames of a clip to continue
        (S = 2, as the paper continues). They are the first clip's context; the video starts with them.
        """
        check_output_type(output_type)
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        if isinstance(prompt, list) and interpolations:
            raise ValueError("a prompt schedule with interpolation: use videoldm.inference.rollout.rollout, which "
                             "interpolates each clip with its own prompt")
        if interpolations < 0 or (interpolations and self.interpolator is None):
            raise ValueError(f"interpolations={interpolations}: give 0, or more with an interpolation model "
                             "(interpolator=...)")
        base = self.keyframes
        latents = self._keyframes(prompt, num_frames, num_clips, context_frames, num_inference_steps,
                                  guidance_scale, sampler, seed, progress, start)
        fps = base.fps or 8.0
        for n in range(interpolations):
            k = self.interpolator.info.get("keyframe_every", 4)
            latents = interpolate(self.interpolator, latents, prompt, guidance_scale=interpolation_guidance,
                                  num_inference_steps=interpolation_steps or num_inference_steps, sampler=sampler,
                                  seed=interpolation_seed(seed, n + 1))
            fps *= k
        if output_type == "latent":
            return VideoOutput(frames=latents, fps=fps)
        return VideoOutput(frames=convert_frames(base.decode(latents, progress=progress), output_type), fps=fps)

    def _keyframes(self, prompt, num_frames, num_clips, S, steps, guidance, sampler, seed, progress, start=None):
        base = self.keyframes
        if num_clips == 1 and start is None:
            return base([prompt], num_frames=num_frames, num_inference_steps=steps, guidance_scale=guidance,
                        sampler=sampler, seed=seed, progress=progress, output_type="latent").frames
        if getattr(base.unet, "context_encoder", None) is None:
            raise ValueError("more than one clip, or a start to continue, needs a prediction model (stage: prediction)")
        if start is not None and not 0 < start.shape[2] < num_frames:
            raise ValueError(f"{start.shape[2]} given frames for clips of {num_frames}: give 1..{num_frames - 1}")
        if not 0 < S < num_frames:
            raise ValueError(f"context_frames must be in 1..{num_frames - 1}, got {S}")
        clips = chain_clips(base, prompt, num_clips, num_frames=num_frames, context_frames=S, guidance_scale=guidance,
                            num_inference_steps=steps, sampler=sampler, seed=seed, start=start)
        pieces = [clip if k == 0 else clip[:, :, S:]  # the first clip whole: it starts with the given frames
                  for k, clip, _, _ in tqdm(clips, total=num_clips, desc="keyframes", disable=not progress)]
        return torch.cat(pieces, dim=2)


def clip_prompts(prompt, num_clips: int) -> list:
    """The prompt of each clip: ``prompt`` for all of them, or, given a list (a schedule, one per clip: prompts
    that change along the video), that list."""
    if not isinstance(prompt, list):
        return [prompt] * num_clips
    if len(prompt) != num_clips:
        raise ValueError(f"a prompt schedule needs one prompt per clip: {len(prompt)} prompts for {num_clips} clips")
    return prompt


def scheduled_prompts(schedule: list[tuple[float, object]], num_clips: int, num_frames: int, context_frames: int,
                      fps: float) -> list:
    """One prompt per clip from ``schedule``: ``(start second, prompt)`` pairs, the first at 0, in time order.
    A clip takes the prompt in effect at its first new frame (clip 0: frame 0; clip k: frame
    ``num_frames + (k - 1) * (num_frames - context_frames)``)."""
    if not schedule:
        raise ValueError("an empty prompt schedule: give at least one prompt")
    starts = [float(t) for t, _ in schedule]
    if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])):
        raise ValueError(f"a prompt schedule starts at 0 s and its times increase; got {starts}")
    prompts = []
    for k in range(num_clips):
        second = (0 if k == 0 else num_frames + (k - 1) * (num_frames - context_frames)) / fps
        prompts.append([p for t, p in zip(starts, (p for _, p in schedule)) if t <= second + 1e-9][-1])
    return prompts


def chain_clips(pipeline, prompt, num_clips: int, *, context_frames: int, load=None, start=None, **sampling):
    """Yields ``(k, latents, previous, saved)`` for each clip of a long video: the first from nothing, every
    later one continuing the last ``context_frames`` latents of ``previous`` (see :func:`next_clip`).
    ``prompt``: one prompt, or a list of one per clip (:func:`clip_prompts`): each clip is conditioned on its
    own, and its context frames carry the scene across a change.
    ``start``: latents the first clip continues (all of its frames as context), instead of starting from nothing.
    ``load(k)``: a finished clip's saved tensors (``{"latents": ...}``) or None; a loaded clip is not
    sampled again (``saved`` is what it returned, None for a new clip)."""
    previous = start
    prompts = clip_prompts(prompt, num_clips)
    for k in range(num_clips):
        saved = load(k) if load is not None else None
        given = start.shape[2] if k == 0 and start is not None else context_frames
        latents = saved["latents"].to(pipeline.device) if saved is not None else next_clip(  # a saved clip is on the CPU
            pipeline, prompts[k], previous, context_frames=given, index=k, **sampling)
        yield k, latents, previous, saved
        previous = latents


def next_clip(pipeline, prompt, previous: torch.Tensor | None, *, num_frames: int, context_frames: int,
              guidance_scale: float, num_inference_steps: int, sampler: str, seed: int, index: int) -> torch.Tensor:
    """Latents of clip ``index`` of a rollout: the first clip from nothing, every later one starting with the
    last ``context_frames`` latents of ``previous`` exactly. Its noise depends on (seed, index) only, so a
    resumed render draws the same clips."""
    context = previous[:, :, -context_frames:] if previous is not None else None
    return pipeline([prompt], num_frames=num_frames, num_inference_steps=num_inference_steps,
                    guidance_scale=guidance_scale, sampler=sampler, seed=sample_generator(seed, index),
                    progress=False, output_type="latent", context=context).frames

