"""The paper's ablation in miniature: the same prompts and noise through ever more of the Video LDM stack."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.io import write_gif
from ..inference.outputs import video_grid
from ..models.temporal_decoder import decode_latents
from .coherence import SUMMARY_KEYS
from .field.flow import warping_error
from .metrics import coherence_report

ABLATION_ROWS = ("image model, frame by frame", "+ temporal layers", "+ temporal decoder", "+ upsampler")
ABLATION_KEYS = SUMMARY_KEYS + ("cars_per_frame", "count_changes")


@torch.no_grad()
def evaluate_ablation(pipeline, prompts: list, kind: str, upsampler=None, out_dir: str | Path | None = None,
                      num_frames: int = 16, num_inference_steps: int = 25, guidance_scale: float = 3.0,
                      upsampler_steps: int | None = None, seed: int = 0, batch_size: int = 8, fps: float = 8.0,
                      gifs: int = 4, progress: bool = True) -> dict:
    """The paper's ablation in miniature: the same prompts and noise through ever more of the stack.

    Rows (:data:`ABLATION_ROWS`): the image model frame by frame (alpha = 1) with the image decoder; the
    video model with the image decoder; with the temporal decoder (if ``pipeline.decoder``); its frames
    upsampled by the video ``upsampler`` (if given). Each row gets the coherence numbers of
    :func:`coherence_report`. Jerk is in pixels of the model's own frame size in every row (the upsampled
    row's is divided by the scale), so the rows compare.
    """
    latents = {True: [], False: []}
    for start in tqdm(range(0, len(prompts), batch_size), desc="sampling", disable=not progress):
        chunk = prompts[start:start + batch_size]
        for image_only in latents:  # same seed: the same noise for both
            latents[image_only].append(pipeline(chunk, num_frames=num_frames, num_inference_steps=num_inference_steps,
                                                guidance_scale=guidance_scale, seed=seed + start,
                                                frame_by_frame=image_only, progress=False, output_type="latent").frames)
    image_latents, video_latents = torch.cat(latents[True]), torch.cat(latents[False])
    videos = {ABLATION_ROWS[0]: decode_latents(pipeline.vae, image_latents),
              ABLATION_ROWS[1]: decode_latents(pipeline.vae, video_latents)}
    if pipeline.decoder is not None:
        videos[ABLATION_ROWS[2]] = decode_latents(pipeline.decoder, video_latents)
    if upsampler is not None:
        if not upsampler.is_video:
            raise ValueError("the ablation's last row needs a video upsampler (an upsampler-video export)")
        last = videos[list(videos)[-1]]
        videos[ABLATION_ROWS[3]] = torch.cat([
            upsampler(v[None], num_inference_steps=upsampler_steps, seed=seed + i, progress=False).frames
            for i, v in enumerate(tqdm(last, desc="upsampling", disable=not progress))])
    summary = {}
    for row, frames in videos.items():
        report = coherence_report(frames.transpose(1, 2), kind, prompts)
        report["warping_error"] = warping_error(frames.transpose(1, 2))["warping_error"]
        scale = upsampler.scale if row == ABLATION_ROWS[3] else 1
        summary[row] = {k: report[k] / (scale if k == "jerk" else 1) for k in ABLATION_KEYS if k in report}
        summary[row]["size"] = list(frames.shape[-2:])
    summary["settings"] = {"num_prompts": len(prompts), "num_frames": num_frames, "steps": num_inference_steps,
                           "guidance_scale": guidance_scale,
                           "upsampler_steps": (upsampler_steps or upsampler.sampling_steps) if upsampler else None,
                           "seed": seed}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "ablation.json").write_text(json.dumps(summary, indent=2))
        (out / "ablation.md").write_text(format_ablation(summary) + "\n")
        if gifs:  # one GIF per row, the first `gifs` videos side by side
            for i, (row, frames) in enumerate(videos.items()):
                write_gif(out / f"ablation-{i}.gif", video_grid(frames[:gifs]), fps)
    return summary


def format_ablation(summary: dict) -> str:
    """The ablation as a Markdown table (what the README shows)."""
    rows = [r for r in ABLATION_ROWS if r in summary]
    keys = [k for k in ABLATION_KEYS if k in summary[rows[0]] and not all(np.isnan(summary[r][k]) for r in rows)]
    lines = ["| | size | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for row in rows:
        s = summary[row]
        lines.append(f"| {row} | {s['size'][0]}x{s['size'][1]} | " + " | ".join(f"{s[k]:.4f}" for k in keys) + " |")
    return "\n".join(lines)
