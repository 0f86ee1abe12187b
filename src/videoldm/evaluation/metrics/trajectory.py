"""Centroid trajectories: linking detections over frames, and their smoothness ("jerk").

A trajectory is a float (T, 2) array of (x, y) pixel positions with NaN rows where the object was
not found. Real objects move smoothly, so the second difference of a trajectory is small; a model
that re-draws the object at a new place in every frame gives a large one.
"""
from __future__ import annotations

import numpy as np

__all__ = ["second_differences", "jerk", "found_fraction", "link_detections"]


def second_differences(track: np.ndarray) -> np.ndarray:
    """|c[t+1] - 2 c[t] + c[t-1]| in pixels, for every t whose three frames all have the object."""
    track = np.asarray(track, np.float64)
    if len(track) < 3:
        return np.zeros(0)
    a = track[2:] - 2.0 * track[1:-1] + track[:-2]
    a = a[~np.isnan(a).any(-1)]
    return np.sqrt((a * a).sum(-1))


def jerk(tracks) -> float:
    """Mean second-difference magnitude (pixels / frame^2) over all valid triples of all tracks; NaN if none.

    Named "jerk" after the issue; strictly it is the acceleration. Not normalised by the frame size,
    so compare models at the same resolution. For a constant-velocity track it is 0; for i.i.d.
    Gaussian jitter of standard deviation s per coordinate it is s * sqrt(3 pi) ≈ 3.07 s.
    """
    d = [second_differences(t) for t in tracks]
    d = np.concatenate(d) if d else np.zeros(0)
    return float(d.mean()) if len(d) else float("nan")


def found_fraction(track: np.ndarray) -> float:
    """Fraction of frames where the object was found (its row is not NaN)."""
    track = np.asarray(track, np.float64)
    return float((~np.isnan(track).any(-1)).mean()) if len(track) else float("nan")


def link_detections(detections: list[np.ndarray], max_step: float) -> list[np.ndarray]:
    """Tracks (T, 2) from per-frame detections (each (K_t, 2)) by greedy nearest-neighbour linking.

    Why greedy: a few well separated objects per frame; the closest pair is linked first, and a
    detection farther than `max_step` pixels from every track alive in the previous frame starts a
    new track. A track that misses a frame ends (no gap bridging), so jerk never spans a gap.
    """
    n = len(detections)
    tracks: list[np.ndarray] = []
    alive: list[int] = []  # indices into tracks, present in the previous frame
    for t, det in enumerate(detections):
        det = np.asarray(det, np.float64).reshape(-1, 2)
        taken, linked = set(), []
        if alive and len(det):
            last = np.stack([tracks[k][t - 1] for k in alive])
            dist = np.sqrt(((last[:, None] - det[None]) ** 2).sum(-1))
            for flat in np.argsort(dist, axis=None):
                i, j = np.unravel_index(flat, dist.shape)
                if dist[i, j] > max_step:
                    break
                if alive[i] in linked or j in taken:
                    continue
                tracks[alive[i]][t] = det[j]
                linked.append(alive[i])
                taken.add(j)
        for j in range(len(det)):
            if j not in taken:
                tracks.append(np.full((n, 2), np.nan))
                tracks[-1][t] = det[j]
                linked.append(len(tracks) - 1)
        alive = linked
    return tracks
