"""Shot-cut detection: where one shot ends and the next begins, so training clips never span a cut.

Why: a clip that jumps from one shot to another teaches the temporal layers that objects teleport.
Real footage (films, trailers, edited street scenes) cuts every few seconds; the folder dataset
samples each clip inside one shot (`VideoInfo.cuts`, stored with the probe by `probe_cache.py`).

The detector, measured in docs/real-footage.md (every labelled hard cut of bikes.mp4 and the Big
Buck Bunny trailer found within +-1 frame, no false cut), works on frames scaled to 64 pixels wide:

* a hard cut at frame k when the mean absolute RGB difference to frame k-1 is at least
  `min_score` (0-255 scale) and `ratio` times the median of its neighbours' differences (adaptive:
  fast motion raises every difference around it, a cut raises one);
* a fade through black: after a run of black frames (99th-percentile luma below `black_level`),
  the first non-black frame starts a new shot, when there was picture before the run.

Not detected: slow dissolves (one shot blended into the next over many frames); such a clip shows a
blend, not a jump.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import av
import numpy as np

from .decode import DecodeError, _frame_time, _open, _video_stream

__all__ = ["DETECTOR_VERSION", "ShotCuts", "CutScores", "find_cuts", "detect_cuts", "measure_scores"]

DETECTOR_VERSION = 1  # stored with each probe: cached cuts of an older detector are measured again
WIDTH = 64  # frames are compared at this width; cuts are global events, small frames suffice


@dataclass
class CutScores:
    """Per decoded frame: difference to the previous frame (0 for the first), 99th-percentile luma, time."""

    difference: list = field(default_factory=list)
    brightness: list = field(default_factory=list)
    times: list = field(default_factory=list)


@dataclass
class ShotCuts:
    """Cuts of one file: the first frame of every shot after the first, as indices and as seconds."""

    frames: list
    times: list
    num_frames: int


def measure_scores(source, width: int = WIDTH) -> CutScores:
    """Decode every frame once at `width` pixels wide and score it against the previous one.

    A decoding error after some frames (a truncated file) ends the measurement; the loader reports
    such files when a clip needs the missing part.
    """
    scores = CutScores()
    with _open(source) as container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        w, h = stream.codec_context.width, stream.codec_context.height
        small_h = max(2, int(round(width * h / w))) if w and h else width
        fps = float(stream.average_rate or stream.guessed_rate or 25.0)
        prev = None
        try:
            for i, frame in enumerate(container.decode(stream)):
                small = frame.reformat(width=width, height=small_h, format="rgb24", threads=1)  # see decode._to_array
                rgb = small.to_ndarray().astype(np.int16)
                luma = (rgb.astype(np.int32) @ np.array([77, 150, 29], dtype=np.int32)) >> 8  # BT.601, integer
                scores.brightness.append(float(np.percentile(luma, 99)))
                scores.difference.append(0.0 if prev is None else float(np.abs(rgb - prev).mean()))
                scores.times.append(_frame_time(frame, stream, i, fps))
                prev = rgb
        except av.error.FFmpegError:
            if not scores.times:
                raise DecodeError("cannot decode any frame for cut detection") from None
    return scores


def find_cuts(difference, brightness, *, min_score: float = 20.0, ratio: float = 3.0, window: int = 3,
              black_level: float = 10.0) -> list[int]:
    """Indices of the first frame of each new shot, from per-frame scores (see the module docstring)."""
    d = np.asarray(difference, dtype=np.float64)
    n = len(d)
    cuts = set()
    for k in range(1, n):
        if d[k] < min_score:
            continue
        around = np.r_[d[max(1, k - window):k], d[k + 1:k + 1 + window]]
        if not len(around) or d[k] >= ratio * (np.median(around) + 1.0):
            cuts.add(k)
    black = np.asarray(brightness, dtype=np.float64) < black_level
    seen_picture = False
    for k in range(n):
        if not black[k]:
            if k > 0 and black[k - 1] and seen_picture:
                # a fade in after black: drop any hard cut inside the dark run, the shot starts here
                j = k - 1
                while j >= 0 and black[j]:
                    cuts.discard(j)
                    j -= 1
                cuts.discard(k + 1)
                cuts.add(k)
            seen_picture = True
    return sorted(cuts)


def detect_cuts(source, **thresholds) -> ShotCuts:
    """The cuts of a video file (one full decode at 64 pixels wide)."""
    scores = measure_scores(source)
    frames = find_cuts(scores.difference, scores.brightness, **thresholds)
    return ShotCuts(frames=frames, times=[scores.times[k] for k in frames], num_frames=len(scores.times))
