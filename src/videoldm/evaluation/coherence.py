"""Temporal coherence of a video model against its own image model run frame by frame (alpha = 1).

Both sample the same prompts from the same noise; the coherence metrics (object tracking, jerk,
flicker, sharpness, optical-flow warping error) are computed on both, so the difference is what the temporal layers add.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data.io import write_gif
from ..inference.outputs import video_grid
from .field.flow import warping_error
from .metrics import coherence_report

SUMMARY_KEYS = ("found_fraction", "caption_match", "direction_match", "jump_fraction", "jerk", "flicker",
                "background_flicker", "sharpness", "warping_error")


def evaluate_coherence(pipeline, prompts: list, kind: str, out_dir: str | Path | None = None, num_frames: int = 16,
                       num_inference_steps: int = 25, guidance_scale: float = 3.0, seed: int = 0,
                       batch_size: int = 8, fps: float = 8.0, gifs: int = 8,
                       latent_size: tuple[int, int] | None = None) -> dict:
    """Returns ``{"video": report, "frame_by_frame": report, "ratios": ...}`` and writes GIFs and JSON.

    ``num_frames`` and ``latent_size`` (default: the trained size) may exceed what the model was trained
    on: the layers are convolutional in space and time, and temporal attention uses relative positions."""
    results = {}
    for mode in ("video", "frame_by_frame"):
        videos = []
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            frames = pipeline(chunk, num_frames=num_frames, num_inference_steps=num_inference_steps,
                              guidance_scale=guidance_scale, seed=seed + start, frame_by_frame=mode != "video",
                              progress=False, latent_size=latent_size).frames
            videos.append(frames)
        videos = torch.cat(videos)  # (N, T, 3, H, W)
        results[mode] = coherence_report(videos.transpose(1, 2), kind, prompts)
        results[mode]["warping_error"] = warping_error(videos.transpose(1, 2))["warping_error"]
        if out_dir is not None and gifs:
            write_gif(Path(out_dir) / f"{mode}.gif", video_grid(videos[:gifs]), fps)
    summary = {mode: {k: results[mode][k] for k in SUMMARY_KEYS if k in results[mode]} for mode in results}
    summary["jerk_ratio"] = summary["video"]["jerk"] / summary["frame_by_frame"]["jerk"]
    summary["settings"] = {"num_prompts": len(prompts), "num_frames": num_frames, "steps": num_inference_steps,
                           "guidance_scale": guidance_scale, "seed": seed,
                           "size": list(videos.shape[-2:])}
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "coherence.json").write_text(json.dumps(summary, indent=2))
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"{'':<16}" + "".join(f"{k:>20}" for k in SUMMARY_KEYS)]
    for mode in ("video", "frame_by_frame"):
        lines.append(f"{mode:<16}" + "".join(f"{summary[mode].get(k, float('nan')):>20.4f}" for k in SUMMARY_KEYS))
    lines.append(f"jerk ratio (video / frame by frame): {summary['jerk_ratio']:.3f}")
    return "\n".join(lines)
