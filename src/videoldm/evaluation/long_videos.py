"""Measurements of the long-video models (Video LDM, sections 4-5) on held-out real clips.

- :func:`evaluate_prediction`: does the context condition? The first generated frame given S frames of
  a real clip against the context's last frame, next to the consecutive-frame change of real video, and
  the same with S = 0 (same noise), which should give an unrelated frame.
- :func:`evaluate_interpolation`: frames generated between keyframes taken from real clips against the
  true in-between frames (PSNR), next to linear blending of the keyframes.
- :func:`rollout_joins`: a rollout's frame change and object trajectories (cars, or the shapes a caption
  names) at clip boundaries against inside clips.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..data.io import write_gif
from ..inference.interpolation import interpolate
from ..inference.outputs import video_grid
from .metrics import psnr
from .metrics.driving_tracking import daytime_of, track_cars
from .metrics.shapes_tracking import shape_colours, track_shapes
from .metrics.trajectory import second_differences
from .metrics.video import as_videos


def _frame_change(videos: np.ndarray) -> np.ndarray:
    """Mean |x[t+1] - x[t]| per frame pair, averaged over videos: ``(T - 1,)``, on the [0, 1] scale."""
    return np.abs(videos[:, 1:] - videos[:, :-1]).mean(axis=(0, 2, 3, 4))


def _write(out_dir, name: str, summary: dict, gif_rows: list | None = None, fps: float = 8.0) -> None:
    if out_dir is None:
        return
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2))
    if gif_rows:
        write_gif(out / f"{name}.gif", video_grid(torch.cat(gif_rows, dim=-2)[None]), fps)


@torch.no_grad()
def evaluate_prediction(pipeline, clips: torch.Tensor, prompts: list, context_frames: int = 2,
                        num_inference_steps: int = 25, guidance_scale: float = 2.0, seed: int = 0,
                        out_dir: str | Path | None = None, gifs: int = 4) -> dict:
    """``clips``: real videos ``(N, 3, T, H, W)`` in [-1, 1] (as datasets give them); ``prompts``: their
    captions or attributes.

    Each clip's first ``context_frames`` latents are given; the model samples the rest. The reported
    ``continuation_error`` is mean |x̂[S] - x[S-1]| between the first generated frame and the context's
    last frame (both decoded from latents, so the autoencoder's error is in neither); ``real_change`` is
    the mean |x[t+1] - x[t]| of the real clips (decoded likewise); ``ratio`` = continuation / real change.
    The same noise without context (S = 0) gives the baseline of an unrelated frame.
    """
    S, (N, _, T) = context_frames, clips.shape[:3]
    if not 0 < S < T:  # a negative S would slice all but the last frames as "given"
        raise ValueError(f"context_frames must be in 1..{T - 1} for clips of {T} frames, got {S}")
    z = pipeline.encode(clips.transpose(1, 2))
    real = as_videos(pipeline.decode(z).transpose(1, 2))
    runs = {}
    for name, context in (("given", z[:, :, :S]), ("none", None)):
        latents = torch.cat([pipeline(prompts[i:i + 1], num_frames=T, latent_size=tuple(z.shape[-2:]),
                                      num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                      seed=seed + i, progress=False, output_type="latent",
                                      context=None if context is None else context[i:i + 1]).frames
                             for i in range(N)])
        runs[name] = pipeline.decode(latents)  # (N, T, 3, H, W)
    real_change = float(_frame_change(real).mean())
    summary = {"real_change": real_change, "context_frames": S}
    for name, frames in runs.items():
        x = as_videos(frames.transpose(1, 2))
        error = float(np.abs(x[:, S] - real[:, S - 1]).mean())
        summary[f"context_{name}"] = {"continuation_error": error, "ratio": error / real_change,
                                      "change_inside": float(_frame_change(x[:, S:]).mean())}
    summary["settings"] = {"clips": N, "frames": T, "steps": num_inference_steps, "guidance_scale": guidance_scale,
                           "seed": seed}
    # truth | given S frames | no context, one clip per row
    rows = [torch.cat([c, g, n], dim=-1) for c, g, n in
            zip(clips.transpose(1, 2)[:gifs], runs["given"][:gifs], runs["none"][:gifs])]
    _write(out_dir, "prediction", summary, rows, pipeline.fps or 8.0)
    return summary


def linear_blend(keyframes: torch.Tensor, k: int) -> torch.Tensor:
    """``(N, M, ...)`` keyframes -> ``(N, (M - 1) * k + 1, ...)``: each in-between frame the linear mix
    of the two keyframes around it (the baseline an interpolation model has to beat)."""
    a, b = keyframes[:, :-1], keyframes[:, 1:]
    w = torch.arange(k, dtype=keyframes.dtype).div(k).view(1, 1, k, *[1] * (keyframes.ndim - 2))
    mixed = (1 - w) * a.unsqueeze(2) + w * b.unsqueeze(2)  # (N, M-1, k, ...)
    return torch.cat([mixed.flatten(1, 2), keyframes[:, -1:]], dim=1)


@torch.no_grad()
def evaluate_interpolation(pipeline, clips: torch.Tensor, prompts: list, factor: int | None = None,
                           num_inference_steps: int = 25, guidance_scale: float = 2.0, seed: int = 0,
                           out_dir: str | Path | None = None, gifs: int = 4) -> dict:
    """``clips``: real videos ``(N, 3, T, H, W)`` in [-1, 1] at the interpolation model's frame rate, ``T = m * k + 1``.

    Frames 0, k, 2k, ... are the keyframes (encoded); the model generates the rest. PSNR over the
    in-between frames only, for: the model; linear blending of the true keyframes; linear blending of the
    decoded keyframes; and the autoencoder's own reconstruction of the true in-between frames (the
    ceiling any latent model has).
    """
    k = factor or pipeline.info.get("keyframe_every", 4)
    clips = clips.transpose(1, 2)  # (N, T, 3, H, W), as the pipeline's frames
    N, T = clips.shape[:2]
    if (T - 1) % k:
        raise ValueError(f"clips of {T} frames do not end on a keyframe every {k}: use m * {k} + 1 frames")
    z = pipeline.encode(clips)
    dense = torch.cat([interpolate(pipeline, z[i:i + 1, :, ::k], prompts[i], factor=k, guidance_scale=guidance_scale,
                                   num_inference_steps=num_inference_steps, seed=seed + i) for i in range(N)])
    model = pipeline.decode(dense)
    recon = pipeline.decode(z)
    between = [t for t in range(T) if t % k]
    results = {"model": model, "blend_true_keyframes": linear_blend(clips[:, ::k], k),
               "blend_decoded_keyframes": linear_blend(recon[:, ::k], k), "autoencoder": recon}
    summary = {name: {"psnr": psnr(x[:, between].transpose(1, 2), clips[:, between].transpose(1, 2))}
               for name, x in results.items()}
    summary["settings"] = {"clips": N, "frames": T, "keyframe_every": k, "steps": num_inference_steps,
                           "guidance_scale": guidance_scale, "seed": seed}
    rows = [torch.cat([c, m, b], dim=-1) for c, m, b in
            zip(clips[:gifs], model[:gifs], results["blend_true_keyframes"][:gifs])]
    _write(out_dir, "interpolation", summary, rows, pipeline.fps or 32.0)
    return summary


def rollout_joins(frames, clip_starts: list[int], description=None, track: str = "auto") -> dict:
    """Frame change and object-track acceleration at a rollout's clip boundaries against inside its clips.

    ``frames``: one video (anything ``as_videos`` takes for a single video, e.g. ``(T, H, W, 3)`` uint8);
    ``clip_starts``: the frame index where each clip's frames begin (``rollout(...)["clip_starts"]``).
    ``description``: the rollout's prompt (caption or attributes; of a schedule, its first). The objects tracked are the shapes it
    names (``shapes``), or else cars, lit for the daytime it names (driving); ``track="none"`` follows nothing
    (real footage: the track keys are then NaN). A boundary pair is
    (start - 1, start); a boundary triple for the track acceleration is any of the three frames around it
    that contains the boundary pair.
    """
    if isinstance(description, list):  # a prompt schedule: the first prompt names the objects followed
        description = description[0]
    x = as_videos(np.asarray(frames)[None])
    change = _frame_change(x)
    joins = [s - 1 for s in clip_starts if 0 < s < x.shape[1]]
    inside = np.setdiff1d(np.arange(len(change)), joins)
    if track not in ("auto", "none"):
        raise ValueError(f"track must be 'auto' or 'none', got {track!r}")
    colours = shape_colours(description, strict=False) if description is not None and track == "auto" else []
    if track == "none":
        tracks, counts = [], np.zeros(0)
    elif colours:
        tracks, _ = track_shapes(x[0], colours)
        counts = sum((~np.isnan(track).any(-1)).astype(int) for track in tracks)  # shapes found per frame
    else:
        tracks, counts, _ = track_cars(x[0], daytime_of(description))
    at_join, elsewhere = [], []
    for path in tracks:  # second differences at t use frames t-1, t, t+1
        t = np.arange(1, len(path) - 1)
        valid = ~np.isnan(path[2:] - 2 * path[1:-1] + path[:-2]).any(-1)
        acc = second_differences(path)
        touches = np.isin(t[valid], joins) | np.isin(t[valid] - 1, joins)
        at_join.extend(acc[touches])
        elsewhere.extend(acc[~touches])
    mean = lambda v: float(np.mean(v)) if len(v) else float("nan")  # noqa: E731
    ratio = lambda a, b: a / b if b else (float("nan") if not a else float("inf"))  # noqa: E731
    summary = {"frames": int(x.shape[1]), "clips": len(clip_starts),
               "change_at_joins": mean(change[joins]), "change_inside": mean(change[inside]),
               "change_ratio": ratio(mean(change[joins]), mean(change[inside])),
               "tracked": "nothing" if track == "none" else "shapes" if colours else "cars",
               "track_acceleration_at_joins": mean(at_join), "track_acceleration_inside": mean(elsewhere),
               "track_samples_at_joins": len(at_join), "track_samples_inside": len(elsewhere),
               "objects_per_frame": float(counts.mean()) if len(counts) else 0.0}
    summary["track_acceleration_ratio"] = ratio(summary["track_acceleration_at_joins"], summary["track_acceleration_inside"])
    return summary


__all__ = ["evaluate_prediction", "evaluate_interpolation", "linear_blend", "rollout_joins"]
