"""Where a long video is cut into training pieces: one per shot, each inside one split.

Why per shot: a piece that spans a cut would let a clip sampled from it jump from one shot to the next
(the folder dataset only knows the cuts inside a file, and the written pieces are one shot each, so
none are left). Why split by time: held-out footage must be footage the models never saw, and
neighbouring frames are near copies, so a random split of frames or clips would leak; the first
`split_at` of the duration trains, the rest is held out, and a shot that straddles that point is
cut there into one piece on each side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Piece", "plan_pieces", "piece_times"]

_EPS = 1e-3  # of a frame interval: a last target this close to `end` would fall on the next shot's frame


@dataclass(frozen=True)
class Piece:
    """Seconds [start, end) of the source, shot `shot` (0-based, from the detector), in `split`."""

    split: str  # "train" or "heldout"
    shot: int
    start: float
    end: float
    num_frames: int  # frames of the piece at the output rate

    @property
    def duration(self) -> float:
        return self.end - self.start


def piece_times(start: float, end: float, fps: float) -> list[float]:
    """Output frame times of [start, end) at `fps`: start + k / fps, k = 0, 1, ... while before `end`."""
    n = max(0, math.ceil((end - start) * fps - _EPS))
    return [start + k / fps for k in range(n)]


def plan_pieces(duration: float, cuts, fps: float, split_at: float = 0.9, min_frames: int = 1
                ) -> tuple[list[Piece], list[Piece]]:
    """(kept, dropped): the pieces of a video of `duration` seconds with shots starting at `cuts` (seconds).

    Pieces of fewer than `min_frames` output frames (at `fps`) cannot give one training clip and are
    dropped (returned, so the caller can count them). `split_at` in (0, 1]: 1 holds nothing out.
    """
    if not 0 < split_at <= 1:
        raise ValueError(f"split_at must be in (0, 1], got {split_at}")
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    boundary = split_at * duration
    bounds = [0.0, *sorted(t for t in cuts if 0 < t < duration), duration]
    kept: list[Piece] = []
    dropped: list[Piece] = []
    for shot, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        spans = [("train", a, min(b, boundary)), ("heldout", max(a, boundary), b)]
        for split, s, e in spans:
            if e - s <= _EPS / fps:
                continue
            piece = Piece(split, shot, s, e, len(piece_times(s, e, fps)))
            (kept if piece.num_frames >= min_frames else dropped).append(piece)
    return kept, dropped
