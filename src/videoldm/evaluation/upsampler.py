"""A video upsampler against itself frame by frame and against bicubic interpolation, on true high-resolution clips."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data.io import write_gif
from ..inference.outputs import video_grid
from ..inference.upsampling import condition_image, downsample
from .metrics import psnr, temporal_error


@torch.no_grad()
def evaluate_upsampler(upsampler, clips, num_inference_steps: int | None = None, noise_level: int | None = None,
                       seed: int = 0, tile_size: int | None = None, out_dir: str | Path | None = None,
                       fps: float = 8.0, gifs: int = 4) -> dict:
    """``clips``: true high-resolution videos ``(N, 3, T, H, W)`` in [-1, 1]; each is downsampled by the
    upsampler's scale (block averages) and brought back by bicubic interpolation, by the upsampler frame
    by frame (alpha = 1) and by the video upsampler, from the same noise. Reports PSNR and the temporal
    error |Δx̂ - Δx| of each against the truth."""
    low = downsample(clips, upsampler.scale).transpose(1, 2)  # (N, T, 3, h, w)
    results = {"bicubic": torch.stack([condition_image(v, "pixel", upsampler.scale) for v in low])}
    # an image upsampler is its own frame-by-frame row (checking it against bicubic before the video stage)
    modes = (("frame_by_frame", True), ("video", False)) if upsampler.is_video else (("frame_by_frame", False),)
    for name, image_only in modes:
        results[name] = torch.cat([upsampler(v[None], num_inference_steps=num_inference_steps, noise_level=noise_level,
                                             seed=seed + i, tile_size=tile_size, frame_by_frame=image_only,
                                             progress=False).frames for i, v in enumerate(low)])
    truth = clips.transpose(1, 2)
    summary = {name: {"psnr": psnr(x.transpose(1, 2), clips), "temporal_error": temporal_error(x.transpose(1, 2), clips)}
               for name, x in results.items()}
    summary["settings"] = {"clips": int(clips.shape[0]), "frames": int(clips.shape[2]), "size": list(clips.shape[-2:]),
                           "scale": upsampler.scale, "steps": num_inference_steps or upsampler.sampling_steps,
                           "noise_level": upsampler.noise_level if noise_level is None else noise_level, "seed": seed}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "upsampler.json").write_text(json.dumps(summary, indent=2))
        if gifs:  # bicubic | frame by frame | (video) | truth, one clip per row
            rows = [torch.cat([results[name][i] for name in results] + [truth[i]], -1)
                    for i in range(min(gifs, len(truth)))]
            write_gif(out / "upsampler.gif", video_grid(torch.cat(rows, dim=-2)[None]), fps)
    return summary


def format_upsampler_summary(summary: dict) -> str:
    lines = [f"{'':<16}{'PSNR dB':>10}{'temporal error':>16}"]
    for name in ("bicubic", "frame_by_frame", "video"):
        if name not in summary:
            continue
        lines.append(f"{name:<16}{summary[name]['psnr']:>10.2f}{summary[name]['temporal_error']:>16.5f}")
    return "\n".join(lines)
