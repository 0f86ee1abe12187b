"""All coherence numbers of a batch of `shapes`, `driving` or real-`footage` videos in one dict (what docs and logs
record)."""
from __future__ import annotations

import numpy as np

from .driving_tracking import daytime_of, track_cars
from .motion import motion_numbers
from .quality import psnr, sharpness
from .shapes_tracking import caption_match, shape_colours, track_shapes
from .temporal import flicker, temporal_error
from .trajectory import found_fraction, jerk, second_differences
from .video import as_videos

__all__ = ["coherence_report", "KINDS"]

KINDS = ("shapes", "driving", "footage")  # footage: real video, nothing to track; flicker, warping, sharpness


def _nan_mean(values) -> float:
    v = np.asarray([x for x in values if not np.isnan(x)], np.float64)
    return float(v.mean()) if len(v) else float("nan")


def _as_lists(track: np.ndarray) -> list:
    return [None if np.isnan(p).any() else [round(float(p[0]), 3), round(float(p[1]), 3)] for p in track]


def coherence_report(videos, kind: str, descriptions=None, *, reference=None) -> dict:
    """Tracking, flicker and sharpness numbers of `videos` (any form `as_videos` takes).

    descriptions: per video, its caption or its attributes dict (a single one is used for all).
    Needed for `shapes` (which colours to track); for `driving` it gives day or night (else guessed);
    `footage` (real video) tracks nothing: its tracking keys are NaN, the frame-level ones are computed.
    reference: the videos these reconstruct, if any; adds `psnr` and `temporal_error`.

    Keys: found_fraction (shapes: frames where each shape is found, averaged over shapes and videos;
    driving: frames with at least one car), caption_match (shapes: fraction of videos showing the colour and
    form of every shape named, see `caption_match`), direction_match and jump_fraction (shapes: fraction of
    videos where every named shape moves the way the caption says, where some shape jumps; see `motion`), jerk (pixels / frame^2, pooled over all valid triples),
    flicker, background_flicker (pixels outside every detected object), sharpness, and per_video
    (the same per video, with the tracks as [x, y] or None per frame). Driving adds cars_per_frame and
    count_changes (mean |change| of the number of cars between frames: cars popping in and out).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    x = as_videos(videos)
    n = len(x)
    if descriptions is None or isinstance(descriptions, (str, dict)):
        descriptions = [descriptions] * n
    if len(descriptions) != n:
        raise ValueError(f"{len(descriptions)} descriptions for {n} videos")
    per_video, objects, all_tracks = [], np.zeros(x.shape[:4], bool), []
    for i, (frames, desc) in enumerate(zip(x, descriptions)):
        if kind == "shapes":
            if desc is None:
                raise ValueError("shapes videos need a caption or attributes per video to know the colours")
            tracks, objects[i] = track_shapes(frames, shape_colours(desc))
            row = {"found_fraction": _nan_mean([found_fraction(t) for t in tracks]),
                   "caption_match": float(caption_match(frames, desc)),
                   **motion_numbers(tracks, desc, min(frames.shape[1:3]))}
        elif kind == "footage":
            tracks, row = [], {"found_fraction": float("nan")}
        else:
            tracks, counts, objects[i] = track_cars(frames, daytime_of(desc))
            row = {
                "found_fraction": float((counts > 0).mean()),
                "cars_per_frame": float(counts.mean()),
                "count_changes": float(np.abs(np.diff(counts)).mean()) if len(counts) > 1 else 0.0,
            }
        row["jerk"] = jerk(tracks)
        row["tracks"] = [_as_lists(t) for t in tracks]
        per_video.append(row)
        all_tracks.extend(tracks)
    report = {
        "kind": kind,
        "num_videos": n,
        "found_fraction": _nan_mean([r["found_fraction"] for r in per_video]),
        "jerk": jerk(all_tracks),
        "jerk_samples": int(sum(len(second_differences(t)) for t in all_tracks)),
        "flicker": flicker(x),
        "sharpness": sharpness(x),
    }
    if kind != "footage":  # footage tracks no objects: its background is the whole frame
        report["background_flicker"] = flicker(x, ~objects)
    if kind == "shapes":
        report["caption_match"] = _nan_mean([r["caption_match"] for r in per_video])
        report["direction_match"] = _nan_mean([r["direction_match"] for r in per_video])
        report["jump_fraction"] = _nan_mean([r["jumps"] for r in per_video])
    if kind == "driving":
        report["cars_per_frame"] = _nan_mean([r["cars_per_frame"] for r in per_video])
        report["count_changes"] = _nan_mean([r["count_changes"] for r in per_video])
    if reference is not None:
        report["psnr"] = psnr(x, reference)
        report["temporal_error"] = temporal_error(x, reference)
    report["per_video"] = per_video
    return report
