"""Temporal coherence of a video model against its own image model run frame by frame (alpha = 1).

Both sample the same prompts from the same noise; the coherence metrics (object tracking, jerk,
flicker, sharpness) are computed on both, so the difference is what the temporal layers add.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .data.io import write_gif
from .metrics import coherence_report
from .training.sampling_io import video_grid

SUMMARY_KEYS = ("found_fraction", "caption_match", "jerk", "flicker", "background_flicker", "sharpness")


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


# ------------------------------------------------------------------------------------------ decoder
def seam_pairs(num_frames: int, chunk_size: int, overlap: int) -> list[int]:
    """Frame pairs ``(t, t+1)``, by ``t``, that a chunk boundary touches: entering, inside and leaving
    each cross-fade (with no overlap: the pair across the cut)."""
    from .models.temporal_decoder import chunk_starts

    if chunk_size >= num_frames:
        return []
    starts = chunk_starts(num_frames, chunk_size, overlap)
    pairs = set()
    for previous, start in zip(starts, starts[1:]):
        fade = min(previous + chunk_size, num_frames) - start  # frames decoded by both chunks
        pairs.update(range(start - 1, min(start + fade, num_frames - 1)))
    return sorted(pairs)


@torch.no_grad()
def evaluate_decoder(decoder, clips, chunk_size: int = 16, overlaps=(4, 0), out_dir: str | Path | None = None,
                     fps: float = 8.0, gifs: int = 4, original=None) -> dict:
    """Reconstructions of ``clips`` (``(N, 3, T, H, W)`` in [-1, 1]) by the image decoder (frame by frame)
    and the temporal decoder, both from the same encoder latents.

    Reports PSNR and the temporal error (|Δx̂ - Δx|) of each, and for the temporal decoder decoded in
    chunks, the temporal error at the pairs a chunk boundary touches against all other pairs, per overlap
    (``seam_ratio``), and against the same pairs decoded as one clip (``seam_vs_whole``: the seam's own
    cost, free of how hard the content at those frames is).

    ``original``: the autoencoder the decoder was fine-tuned from, when its own decoder weights were trained
    too (``train_decoder``): then ``image_decoder`` (alpha = 1) is the fine-tuned decoder, and the untouched
    image decoder, the fair frame-by-frame baseline, gets its own row ``original_decoder``.
    """
    import numpy as np

    from .metrics import psnr, temporal_error
    from .metrics.video import as_videos

    bad = [o for o in overlaps if not 0 <= o < chunk_size]
    if chunk_size < 1 or bad:  # before the decoding, not after the image decoder's half of it
        raise ValueError(f"overlaps must be in 0..chunk_size-1 with chunk_size >= 1; got chunk {chunk_size}, "
                         f"overlaps {list(overlaps)}")
    z = torch.cat([decoder.encode(c[None]) for c in clips])
    T = clips.shape[2]
    image = torch.cat([decoder(zi[None], image_only=True) for zi in z]).clamp(-1, 1)
    whole = torch.cat([decoder(zi[None]) for zi in z]).clamp(-1, 1)
    summary = {"image_decoder": {"psnr": psnr(image, clips), "temporal_error": temporal_error(image, clips)},
               "temporal_decoder": {"psnr": psnr(whole, clips), "temporal_error": temporal_error(whole, clips)},
               "chunked": {}}
    if original is not None:
        # the same (frozen, shared) encoder's latents, unscaled, through the untouched decoder
        first = torch.cat([original.decode(zi.transpose(0, 1)).sample.transpose(0, 1)[None] for zi in z])
        summary["original_decoder"] = {"psnr": psnr(first.clamp(-1, 1), clips),
                                       "temporal_error": temporal_error(first.clamp(-1, 1), clips)}
    # per clip: whether the gain is on most clips or a few; the baseline is the untouched image decoder
    baseline = first if original is not None else image
    per_clip = {"baseline_temporal_error": [temporal_error(b[None], c[None]) for b, c in zip(baseline, clips)],
                "temporal_temporal_error": [temporal_error(w[None], c[None]) for w, c in zip(whole, clips)],
                "baseline_psnr": [psnr(b[None], c[None]) for b, c in zip(baseline, clips)],
                "temporal_psnr": [psnr(w[None], c[None]) for w, c in zip(whole, clips)]}
    summary["per_clip"] = per_clip
    summary["clips_with_less_flicker"] = sum(
        t < b for t, b in zip(per_clip["temporal_temporal_error"], per_clip["baseline_temporal_error"]))
    truth = as_videos(clips)

    def pair_errors(frames):  # |Δx̂ - Δx| per frame pair t -> t+1, averaged over clips and pixels
        x = as_videos(frames)
        return np.abs((x[:, 1:] - x[:, :-1]) - (truth[:, 1:] - truth[:, :-1])).mean(axis=(0, 2, 3, 4))

    whole_pairs = pair_errors(whole)
    for overlap in overlaps:
        chunked = torch.cat([decoder.decode(zi[None], chunk_size, overlap) for zi in z]).clamp(-1, 1)
        per_pair = pair_errors(chunked)
        seams = seam_pairs(T, chunk_size, overlap)
        rest = [t for t in range(T - 1) if t not in seams]
        summary["chunked"][f"overlap_{overlap}"] = {
            "psnr": psnr(chunked, clips), "temporal_error": float(per_pair.mean()),
            "seam_error": float(per_pair[seams].mean()) if seams else float("nan"),
            "other_error": float(per_pair[rest].mean()) if rest else float("nan"),
            "seam_ratio": float(per_pair[seams].mean() / per_pair[rest].mean()) if seams and rest else float("nan"),
            # the same frame pairs decoded as one clip: what the content there costs without any seam
            "seam_vs_whole": float(per_pair[seams].mean() / whole_pairs[seams].mean()) if seams else float("nan")}
    summary["settings"] = {"clips": int(clips.shape[0]), "frames": T, "size": list(clips.shape[-2:]),
                           "chunk_size": chunk_size, "alphas": decoder.alphas()}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "decoder.json").write_text(json.dumps(summary, indent=2))
        if gifs:  # truth | image decoder | temporal decoder, one clip per row
            rows = [torch.cat([c, i, w], dim=-1) for c, i, w in zip(clips[:gifs], image[:gifs], whole[:gifs])]
            write_gif(out / "decoder.gif", video_grid(torch.cat(rows, dim=-2)[None].transpose(1, 2)), fps)
    return summary


def format_decoder_summary(summary: dict) -> str:
    lines = [f"{'':<22}{'PSNR dB':>10}{'temporal error':>16}{'seam error':>12}{'elsewhere':>11}{'ratio':>7}"
             f"{'vs whole clip':>15}"]
    for name in ("original_decoder", "image_decoder", "temporal_decoder"):
        if name not in summary:
            continue
        s = summary[name]
        lines.append(f"{name:<22}{s['psnr']:>10.2f}{s['temporal_error']:>16.5f}")
    for name, s in summary["chunked"].items():
        lines.append(f"{'chunked ' + name:<22}{s['psnr']:>10.2f}{s['temporal_error']:>16.5f}{s['seam_error']:>12.5f}"
                     f"{s['other_error']:>11.5f}{s['seam_ratio']:>7.2f}{s['seam_vs_whole']:>15.2f}")
    if "clips_with_less_flicker" in summary:
        lines.append("temporal decoder flickers less than the untouched image decoder on "
                     f"{summary['clips_with_less_flicker']} of {summary['settings']['clips']} clips")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- upsampler
@torch.no_grad()
def evaluate_upsampler(upsampler, clips, num_inference_steps: int | None = None, noise_level: int | None = None,
                       seed: int = 0, tile_size: int | None = None, out_dir: str | Path | None = None,
                       fps: float = 8.0, gifs: int = 4) -> dict:
    """``clips``: true high-resolution videos ``(N, 3, T, H, W)`` in [-1, 1]; each is downsampled by the
    upsampler's scale (block averages) and brought back by bicubic interpolation, by the upsampler frame
    by frame (alpha = 1) and by the video upsampler, from the same noise. Reports PSNR and the temporal
    error |Δx̂ - Δx| of each against the truth."""
    from .metrics import psnr, temporal_error
    from .training.upsampler_stage import downsample
    from .upsampling import condition_image

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


# ----------------------------------------------------------------------------------------- ablation
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
    from tqdm.auto import tqdm

    from .training.sampling_io import decode_latents

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
    keys = [k for k in ABLATION_KEYS if k in summary[rows[0]]]
    lines = ["| | size | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for row in rows:
        s = summary[row]
        lines.append(f"| {row} | {s['size'][0]}x{s['size'][1]} | " + " | ".join(f"{s[k]:.4f}" for k in keys) + " |")
    return "\n".join(lines)
