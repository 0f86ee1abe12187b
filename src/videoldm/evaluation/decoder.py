"""A temporal decoder against the image decoder it was made from: flicker, warping error, and the seams of chunked
decoding."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..data.io import write_gif
from ..inference.outputs import video_grid
from ..models.frames import window_starts
from .field.flow import warping_error
from .metrics import flicker, psnr, temporal_error
from .metrics.video import as_videos


def seam_pairs(num_frames: int, chunk_size: int, overlap: int) -> list[int]:
    """Frame pairs ``(t, t+1)``, by ``t``, that a chunk boundary touches: entering, inside and leaving
    each cross-fade (with no overlap: the pair across the cut)."""
    if chunk_size >= num_frames:
        return []
    starts = window_starts(num_frames, chunk_size, overlap)
    pairs = set()
    for previous, start in zip(starts, starts[1:]):
        fade = min(previous + chunk_size, num_frames) - start  # frames decoded by both chunks
        pairs.update(range(start - 1, min(start + fade, num_frames - 1)))
    return sorted(pairs)


@torch.no_grad()
def evaluate_decoder(decoder, clips, chunk_size: int = 16, overlaps=(4, 0), out_dir: str | Path | None = None,
                     fps: float = 8.0, gifs: int = 4, original=None, names: list[str] | None = None) -> dict:
    """Reconstructions of ``clips`` (``(N, 3, T, H, W)`` in [-1, 1]) by the image decoder (frame by frame)
    and the temporal decoder, both from the same encoder latents.

    Reports PSNR and the temporal error (|Δx̂ - Δx|) of each, and for the temporal decoder decoded in
    chunks, the temporal error at the pairs a chunk boundary touches against all other pairs, per overlap
    (``seam_ratio``), and against the same pairs decoded as one clip (``seam_vs_whole``: the seam's own
    cost, free of how hard the content at those frames is).

    ``original``: the autoencoder the decoder was fine-tuned from, when its own decoder weights were trained
    too (``train_decoder``): then ``image_decoder`` (alpha = 1) is the fine-tuned decoder, and the untouched
    image decoder, the fair frame-by-frame baseline, gets its own row ``original_decoder``.

    Per clip (``names``: a label each, e.g. file and start): PSNR, temporal error and the optical-flow warping
    error (`field.flow.warping_error`: needs no reference, so the clips' own is given too) of the baseline and
    the temporal decoder, the mean frame change of the clip and of both reconstructions, and ``clips_better``:
    how many clips have both errors at least 10% lower at a PSNR no worse than 0.1 dB below the baseline's.
    """
    bad = [o for o in overlaps if not 0 <= o < chunk_size]
    if chunk_size < 1 or bad:  # before the decoding, not after the image decoder's half of it
        raise ValueError(f"overlaps must be in 0..chunk_size-1 with chunk_size >= 1; got chunk {chunk_size}, "
                         f"overlaps {list(overlaps)}")
    weight = next(decoder.parameters())  # the decoder runs where it is; the metrics on the CPU in float32
    z = torch.cat([decoder.encode(c[None].to(weight.device, weight.dtype)) for c in clips])
    T = clips.shape[2]
    image = torch.cat([decoder(zi[None], image_only=True).sample.float().cpu() for zi in z]).clamp(-1, 1)
    whole = torch.cat([decoder(zi[None]).sample.float().cpu() for zi in z]).clamp(-1, 1)
    summary = {"image_decoder": {"psnr": psnr(image, clips), "temporal_error": temporal_error(image, clips)},
               "temporal_decoder": {"psnr": psnr(whole, clips), "temporal_error": temporal_error(whole, clips)},
               "chunked": {}}
    if original is not None:
        # the same (frozen, shared) encoder's latents, unscaled, through the untouched decoder
        first = torch.cat([original.decode(zi.transpose(0, 1).to(original.dtype)).sample.float().cpu()
                           .transpose(0, 1)[None] for zi in z]).clamp(-1, 1)
        summary["original_decoder"] = {"psnr": psnr(first, clips), "temporal_error": temporal_error(first, clips)}
    # per clip: whether the gain is on most clips or a few; the baseline is the untouched image decoder, clamped
    # like every decoded clip here, so the per-clip figures average to the summary's rows
    baseline = first if original is not None else image
    per_clip = {"baseline_temporal_error": [temporal_error(b[None], c[None]) for b, c in zip(baseline, clips)],
                "temporal_temporal_error": [temporal_error(w[None], c[None]) for w, c in zip(whole, clips)],
                "baseline_psnr": [psnr(b[None], c[None]) for b, c in zip(baseline, clips)],
                "temporal_psnr": [psnr(w[None], c[None]) for w, c in zip(whole, clips)],
                "baseline_warping_error": warping_error(baseline)["per_video"],
                "temporal_warping_error": warping_error(whole)["per_video"],
                "truth_warping_error": warping_error(clips)["per_video"],
                # mean |x[t+1] - x[t]| of the truth and of each reconstruction: where the baseline's frames change
                # less than the real ones, its temporal error is motion it did not reproduce, not flicker, and
                # smoothing over time cannot lower it (docs/real-footage.md)
                "truth_frame_change": [flicker(c[None]) for c in clips],
                "baseline_frame_change": [flicker(b[None]) for b in baseline],
                "temporal_frame_change": [flicker(w[None]) for w in whole]}
    if names is not None:
        per_clip["names"] = list(names)
    summary["per_clip"] = per_clip
    baseline_row = "original_decoder" if original is not None else "image_decoder"
    summary[baseline_row]["warping_error"] = float(np.nanmean(per_clip["baseline_warping_error"]))
    summary["temporal_decoder"]["warping_error"] = float(np.nanmean(per_clip["temporal_warping_error"]))
    summary["truth_warping_error"] = float(np.nanmean(per_clip["truth_warping_error"]))
    summary["clips_with_less_flicker"] = sum(
        t < b for t, b in zip(per_clip["temporal_temporal_error"], per_clip["baseline_temporal_error"]))
    summary["clips_better"] = sum(
        te <= 0.9 * be and tw <= 0.9 * bw and tp >= bp - 0.1
        for te, be, tw, bw, tp, bp in zip(per_clip["temporal_temporal_error"], per_clip["baseline_temporal_error"],
                                          per_clip["temporal_warping_error"], per_clip["baseline_warping_error"],
                                          per_clip["temporal_psnr"], per_clip["baseline_psnr"]))
    truth = as_videos(clips)

    def pair_errors(frames):  # |Δx̂ - Δx| per frame pair t -> t+1, averaged over clips and pixels
        x = as_videos(frames)
        return np.abs((x[:, 1:] - x[:, :-1]) - (truth[:, 1:] - truth[:, :-1])).mean(axis=(0, 2, 3, 4))

    whole_pairs = pair_errors(whole)
    for overlap in overlaps:
        chunked = torch.cat([decoder.decode(zi[None], chunk_size, overlap).float().cpu() for zi in z]).clamp(-1, 1)
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
             f"{'vs whole clip':>15}{'warping error':>15}"]
    for name in ("original_decoder", "image_decoder", "temporal_decoder"):
        if name not in summary:
            continue
        s = summary[name]
        warping = f"{s['warping_error']:>15.5f}" if "warping_error" in s else ""
        lines.append(f"{name:<22}{s['psnr']:>10.2f}{s['temporal_error']:>16.5f}{'':>45}{warping}")
    for name, s in summary["chunked"].items():
        lines.append(f"{'chunked ' + name:<22}{s['psnr']:>10.2f}{s['temporal_error']:>16.5f}{s['seam_error']:>12.5f}"
                     f"{s['other_error']:>11.5f}{s['seam_ratio']:>7.2f}{s['seam_vs_whole']:>15.2f}")
    if "truth_warping_error" in summary:
        lines.append(f"warping error of the clips themselves: {summary['truth_warping_error']:.5f}")
    if "clips_with_less_flicker" in summary:
        lines.append("temporal decoder flickers less than the untouched image decoder on "
                     f"{summary['clips_with_less_flicker']} of {summary['settings']['clips']} clips")
    if "clips_better" in summary:
        lines.append(f"temporal and warping error both >= 10% lower at PSNR within 0.1 dB or better: "
                     f"{summary['clips_better']} of {summary['settings']['clips']} clips")
    return "\n".join(lines)
