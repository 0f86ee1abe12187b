"""VBench's temporal flickering: how little consecutive frames differ, as a score in [0, 1].

Per video, the mean absolute difference of consecutive frames on the 0-255 scale (over pixels,
channels and frame pairs), mapped to ``(255 - mad) / 255``: 1 for a frozen video. VBench applies it to
videos of static scenes, where any change is flicker; on moving scenes it also counts the motion, so
compare like with like (same content, same frame rate).
"""
from __future__ import annotations

import numpy as np

from .frames import video_list

__all__ = ["temporal_flickering"]


def temporal_flickering(videos) -> dict:
    """``{"flicker": mean score, "per_video": [scores]}`` (VBench's temporal_flickering, higher is steadier)."""
    scores = []
    for v in video_list(videos):
        x = v.astype(np.float32)
        mad = float(np.abs(x[1:] - x[:-1]).mean())
        scores.append((255.0 - mad) / 255.0)
    return {"flicker": float(np.mean(scores)), "per_video": scores}
