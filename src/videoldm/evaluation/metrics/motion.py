"""Prompt obedience of `shapes` videos: does each tracked shape move the way its caption says, and does it jump.

Read from the centroid tracks of `track_shapes` (the tracker calibrated on ground truth). A shape
follows its direction when its net displacement over the frames before its first bounce points
within 45 degrees of the named direction and covers at least `min_travel` of min(H, W). The frames
before the first bounce: the whole clip when the caption names one direction (the generator draws
no bounce then); for "moving left, then right" (k legs, drawn as k equal crossings) the first 1/k.
A jump is a frame-to-frame displacement above 3x the track's median step, but at least `jump_floor`
and at most `jump_cap` of min(H, W). The floor keeps a shape that stands still or moves under a pixel
a frame (steps of 0 or 1 px as it crosses pixel edges) from jumping at every rounding step; the cap
(1.5x the fastest step the generator draws, 1/8 of the frame) makes a video that jumps at every step,
whose median is itself a jump (the image model frame by frame), count too. Ground truth scores 100%
and 0% (docs/metrics.md gives the measurement).
"""
from __future__ import annotations

import re

import numpy as np

from ...data.synthetic.shapes import COLORS, DIRECTIONS

__all__ = ["asked_motions", "direction_followed", "jumps", "motion_numbers"]

_WAY = "(?:" + "|".join(DIRECTIONS) + ")"
# The same shapes as `shapes_tracking.asked_shapes` ("<colour> <shape> moving"), with the directions if named.
_MOTION = re.compile(r"\b(" + "|".join(COLORS) + rf")\s+\w+\s+moving\b(?:\s+({_WAY}(?:,\s*then\s+{_WAY})*))?")


def asked_motions(description) -> list[tuple[str, list[str]]]:
    """(colour, directions in order) of every shape a caption or attributes dict names; [] where none is named.

    "a red circle moving left, then right and a blue square moving up" -> [("red", ["left", "right"]), ("blue", ["up"])]."""
    if isinstance(description, dict):
        return [(s["color"], list(s.get("directions") or [s["direction"]] if s.get("direction") else []))
                for s in description["shapes"]]
    return [(colour, re.split(r",\s*then\s+", ways) if ways else [])
            for colour, ways in _MOTION.findall(str(description))]


def direction_followed(track: np.ndarray, direction: str, size: int, legs: int = 1, min_travel: float = 0.05) -> bool:
    """Does a centroid track (T, 2), NaN where not found, move `direction` over its first leg of `legs`?

    Net displacement between the first and last frames found in the leg: its component along the
    direction must be at least ``min_travel * size`` pixels and larger than the one across it."""
    track = np.asarray(track, np.float64)
    leg = track[: (len(track) - 1) // max(legs, 1) + 1]
    found = leg[~np.isnan(leg).any(-1)]
    if len(found) < 2:
        return False
    dx, dy = found[-1] - found[0]
    ux, uy = DIRECTIONS[direction]
    along, across = dx * ux + dy * uy, abs(dx * uy - dy * ux)
    return bool(along >= min_travel * size and along > across)


def jumps(track: np.ndarray, size: int, factor: float = 3.0, jump_floor: float = 1 / 16, jump_cap: float = 3 / 16) -> int:
    """How many frame-to-frame displacements of a track (T, 2) exceed factor x its median, clipped to
    [jump_floor, jump_cap] x size.

    Only steps between two consecutive frames where the shape is found count (a gap is `found_fraction`'s)."""
    track = np.asarray(track, np.float64)
    steps = np.sqrt((np.diff(track, axis=0) ** 2).sum(-1))
    steps = steps[~np.isnan(steps)]
    if len(steps) == 0:
        return 0
    return int((steps > np.clip(factor * float(np.median(steps)), jump_floor * size, jump_cap * size)).sum())


def motion_numbers(tracks: list[np.ndarray], description, size: int) -> dict:
    """Per video: direction_match (1.0 when every named shape follows its first direction, else 0.0; NaN when
    a shape's direction is not named) and jumps (1.0 when any tracked shape jumps). `tracks` in the order the
    description names the shapes (`track_shapes` of `shape_colours`)."""
    motions = asked_motions(description)
    if len(motions) != len(tracks):
        raise ValueError(f"{len(tracks)} tracks for the {len(motions)} moving shapes of {description!r}")
    if all(ways for _, ways in motions):
        match = float(all(direction_followed(t, ways[0], size, len(ways)) for t, (_, ways) in zip(tracks, motions)))
    else:
        match = float("nan")
    return {"direction_match": match, "jumps": float(any(jumps(t, size) > 0 for t in tracks))}
