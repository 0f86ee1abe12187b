"""Long videos by rollout (Video LDM, sections 4-5): each clip continues the last frames of the one before.

A prediction model (``VideoUNet`` with context conditioning, trained with S in {0, 1, 2} given frames)
generates the first clip from nothing (S = 0); every next clip is given the last ``context_frames``
latents of the previous one as its first frames, with guidance on that context. Only the new frames are
kept. Each clip is decoded and appended to the mp4 as soon as it exists, so memory does not grow with
the video's length; its latents are saved to ``state_dir``, so an interrupted render resumes from its last
completed clip with the same result (each clip's noise comes from a generator keyed by (seed, clip)).
With an interpolation model, every clip is interpolated before it is decoded: k times the frame rate.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..data.io import Mp4Writer, replacing
from ..models.temporal_decoder import decode_latents
from .interpolation import interpolate
from .outputs import to_uint8
from .seeding import interpolation_seed
from .stack import chain_clips, clip_prompts


@torch.no_grad()
def rollout(pipeline, prompt, num_clips: int, out: str | Path, *, num_frames: int = 16, context_frames: int = 2,
            guidance_scale: float = 3.0, num_inference_steps: int = 25, sampler: str = "ddim", seed: int = 0,
            state_dir: str | Path | None = None, fps: float | None = None, interpolator=None,
            interpolation_guidance: float = 2.0, interpolation_steps: int | None = None,
            on_clip_end=None, progress: bool = True) -> dict:
    """Renders ``num_clips`` clips of ``num_frames`` frames into the mp4 ``out``; returns what it did.

    ``prompt``: a caption, or an attribute dict for attribute models, or a list of one per clip (prompts that
    change along the video; each clip is interpolated with its own too). The video has
    ``num_frames + (num_clips - 1) * (num_frames - context_frames)`` frames. ``state_dir``: where each
    clip's latents are kept; a later call with the same settings skips the clips found there (their frames
    are decoded again from the saved latents) and goes on. ``interpolator``: an interpolation pipeline;
    each clip's frames are then interpolated (from the previous clip's last frame on) before decoding, and
    the video has ``k`` times the frames and the frame rate (``interpolation_steps``: its sampling steps,
    default ``num_inference_steps``). ``on_clip_end(k, frames_written)``: called once each clip is in the
    file (progress, or memory traces). Returns the file, frames, seconds, fps, and ``clip_starts``: the
    frame where each clip's new frames begin.
    """
    unet = pipeline.unet
    if getattr(unet, "context_encoder", None) is None:
        raise ValueError("rollout needs a prediction model (a video model with context conditioning, "
                         "stage: prediction)")
    if not 0 < context_frames < num_frames:
        raise ValueError(f"context_frames must be in 1..num_frames-1, got {context_frames} for {num_frames} frames")
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if interpolation_steps is not None and interpolation_steps < 1:
        raise ValueError(f"interpolation_steps must be >= 1 (or None: num_inference_steps), got {interpolation_steps}")
    cfg = unet.unet.config
    h, w = pipeline.latent_size or (cfg.sample_size, cfg.sample_size)
    settings = {"prompt": prompt, "num_frames": num_frames, "context_frames": context_frames,
                "guidance_scale": guidance_scale, "steps": num_inference_steps, "sampler": sampler, "seed": seed,
                "latent_size": [h, w], "interpolation": interpolator.info.get("keyframe_every", 4) if interpolator else None,
                "interpolation_guidance": interpolation_guidance if interpolator else None,
                "interpolation_steps": (interpolation_steps or num_inference_steps) if interpolator else None}
    state = _State(state_dir, settings) if state_dir is not None else None
    decoder = pipeline.decoder if pipeline.decoder is not None else pipeline.vae
    fps = (fps or pipeline.fps or 8.0) * (settings["interpolation"] or 1)

    prompts = clip_prompts(prompt, num_clips)
    resumed, clip_starts = 0, []
    clips = chain_clips(pipeline, prompt, num_clips, num_frames=num_frames, context_frames=context_frames,
                        guidance_scale=guidance_scale, num_inference_steps=num_inference_steps, sampler=sampler,
                        seed=seed, load=state.load if state is not None else None)
    with Mp4Writer(out, fps) as writer:
        for k, latents, previous, saved in tqdm(clips, total=num_clips, desc="rollout", disable=not progress):
            if saved is None:
                saved = {"latents": latents}
                if interpolator is not None:
                    saved["dense"] = _densify(interpolator, latents, previous, context_frames, prompts[k],
                                              interpolation_guidance, settings["interpolation_steps"], sampler, seed, k)
                if state is not None:
                    state.save(k, saved)
            else:
                resumed += 1
            # the decoder sees the whole clip (given frames included); only the new frames are written
            if interpolator is None:
                frames, known = decode_latents(decoder, latents)[0], context_frames
            else:
                frames, known = decode_latents(decoder, saved["dense"])[0], 1
            clip_starts.append(writer.frames)
            writer.write(to_uint8(frames if previous is None else frames[known:]))
            if on_clip_end is not None:
                on_clip_end(k, writer.frames)
        written = writer.frames
    return {"path": str(out), "frames": written, "seconds": written / fps, "fps": fps, "clips": num_clips,
            "resumed_clips": resumed, "clip_starts": clip_starts}


def _densify(interpolator, latents, previous, S, prompt, guidance, steps, sampler, seed, k):
    """The clip's frames interpolated, from the previous clip's last frame on (so clips join smoothly)."""
    keys = latents if previous is None else torch.cat([previous[:, :, -1:], latents[:, :, S:]], dim=2)
    return interpolate(interpolator, keys, prompt, guidance_scale=guidance, num_inference_steps=steps,
                       sampler=sampler, seed=interpolation_seed(seed, clip=k))


class _State:
    """One safetensors file of latents per finished clip, and the settings they were made with."""

    def __init__(self, directory, settings: dict):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "rollout.json"
        settings = json.loads(json.dumps(settings))  # as it reads back (tuples become lists)
        if meta.is_file():
            saved = json.loads(meta.read_text())
            if saved != settings:
                changed = sorted(k for k in settings if saved.get(k) != settings[k])
                raise ValueError(f"{self.dir} holds a render made with other settings ({', '.join(changed)}); "
                                 "use another state_dir or the same settings")
        else:
            meta.write_text(json.dumps(settings, indent=2))

    def path(self, k: int) -> Path:
        return self.dir / f"clip-{k:06d}.safetensors"

    def load(self, k: int) -> dict | None:
        return load_file(self.path(k)) if self.path(k).is_file() else None

    def save(self, k: int, tensors: dict) -> None:
        with replacing(self.path(k)) as partial:  # a clip file exists only once it is complete
            save_file({name: t.float().cpu().contiguous() for name, t in tensors.items()}, partial)
