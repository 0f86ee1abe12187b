"""`shapes`: one or two coloured shapes moving in straight lines over a plain background, with captions.

For compositional tests: captions name colour, shape and direction ("a red circle moving left on a
dark background"); a few colour/shape/direction combinations never appear in the `train` split and
only in `heldout`. Ground truth: per-frame centroid (the pixel-mass centre) of every shape.

Captions tell the truth: a shape's start and speed are drawn so that it crosses the frame without
reaching the far edge within the clip, so "moving left" is what every frame shows; two shapes never
overlap (a second one is redrawn until it stays apart), so no caption names a hidden shape. Crossing
without a bounce is possible at a speed of at least `MIN_SPEED` up to ~70 frames at 64x64 (the free
span over the minimum speed); a longer clip makes each shape cross the frame k times edge to edge (the
smallest k that reaches `MIN_SPEED`, k legs of equal length) and the caption names every leg: "moving
left, then right".
"""
from __future__ import annotations

import numpy as np

from .base import Clip, Generator

__all__ = ["ShapesGenerator", "COLORS", "SHAPES", "DIRECTIONS", "HELD_OUT", "STYLES", "MIN_SPEED", "OPPOSITE", "motion_phrase"]

COLORS = {
    "red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 90, 230), "yellow": (235, 210, 40),
    "magenta": (210, 60, 200), "cyan": (40, 200, 210), "orange": (245, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
BACKGROUNDS = {"dark": (24, 24, 34), "light": (222, 222, 212)}
STYLES = ("plain", "checker")  # checker: a new background texture, for personalization (the captions stay the same)
# Combinations kept out of the training split (each colour, shape and direction is still seen in train).
HELD_OUT = frozenset({
    ("red", "circle", "left"), ("green", "square", "up"), ("blue", "triangle", "right"),
    ("yellow", "diamond", "down"), ("magenta", "circle", "down"), ("cyan", "triangle", "left"),
})
MIN_SPEED = 1 / 128  # of min(H, W) per frame (0.5 px at 64x64): the slowest motion a caption calls "moving"
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
_TRIES = 20  # draws of a second shape before a clip settles for one


def _reflect(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Positions bounced between lo and hi (a triangle wave)."""
    span = hi - lo
    q = np.mod(p - lo, 2 * span)
    return lo + span - np.abs(q - span)


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Pixels inside a shape whose area centroid is at the origin (so the centroid is its position)."""
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        s = 0.85 * r
        return (np.abs(dx) <= s) & (np.abs(dy) <= s)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.15 * r
    if shape == "triangle":  # apex up, vertices' mean (= area centroid) at the origin
        a = 1.2 * r
        v = [(0.0, -a), (0.866 * a, 0.5 * a), (-0.866 * a, 0.5 * a)]
        inside = np.ones(np.broadcast(dx, dy).shape, bool)
        for (x0, y0), (x1, y1) in zip(v, v[1:] + v[:1]):
            inside &= (x1 - x0) * (dy - y0) - (y1 - y0) * (dx - x0) >= 0
        return inside
    raise ValueError(f"unknown shape {shape!r}; one of {SHAPES}")


def motion_phrase(directions: list[str]) -> str:
    """'moving left' or, for a shape that bounces, 'moving left, then right' (every leg in order)."""
    return "moving " + ", then ".join(directions)


def _extent(shape: str, r: float) -> float:
    return {"circle": r, "square": 0.85 * r, "diamond": 1.15 * r, "triangle": 1.2 * r}[shape]


class ShapesGenerator(Generator):
    """`split`: "train" (never a HELD_OUT combination) or "heldout" (the first shape is one).
    `style`: "plain" backgrounds, or "checker" (a checkerboard of the background colour, cells of 1/8 of
    the frame): the same captions over a texture the plain data never shows."""

    kind = "shapes"

    def __init__(self, frames=16, size=(64, 64), fps=8.0, seed=0, *, max_shapes: int = 2, split: str = "train",
                 style: str = "plain"):
        super().__init__(frames, size, fps, seed)
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self.style = style
        if max_shapes not in (1, 2):
            raise ValueError("max_shapes must be 1 or 2")
        self.split, self.max_shapes = split, max_shapes

    def _combo(self, rng, held_out: bool, exclude_color=None):
        if held_out:
            combos = sorted(HELD_OUT)
            return combos[rng.integers(len(combos))]
        while True:
            c = (str(rng.choice(list(COLORS))), str(rng.choice(SHAPES)), str(rng.choice(list(DIRECTIONS))))
            if c not in HELD_OUT and c[0] != exclude_color:
                return c

    def _along(self, rng, bounds: tuple[float, float], sign: int, direction: str) -> tuple[np.ndarray, list[str]]:
        """Unbounced positions (T,) along the motion's axis, and the directions of its legs in order.

        One leg: the speed is drawn up to the fastest that crosses the free span [lo, hi] in the clip
        without reaching its end (and at most min(H, W) / max(T, 8) per frame, the old top speed, which
        binds for short clips), down to half of that or `MIN_SPEED`; the start is drawn where the whole
        path fits. Too long a clip for that: k edge-to-edge crossings at the speed that fills the clip."""
        lo, hi = bounds
        t = np.arange(self.frames, dtype=np.float64)
        steps, size = max(self.frames - 1, 1), min(self.size)
        fastest = min((hi - lo) / steps, size / max(self.frames, 8))
        if fastest >= MIN_SPEED * size:
            speed = float(rng.uniform(max(MIN_SPEED * size, 0.5 * fastest), fastest))
            travel = speed * (self.frames - 1)
            start = float(rng.uniform(lo, hi - travel)) if sign > 0 else float(rng.uniform(lo + travel, hi))
            return start + sign * speed * t, [direction]
        legs = int(np.ceil(MIN_SPEED * size * steps / (hi - lo)))
        speed = legs * (hi - lo) / steps
        start = lo if sign > 0 else hi
        return start + sign * speed * t, [direction if k % 2 == 0 else OPPOSITE[direction] for k in range(legs)]

    def sample(self, index: int) -> Clip:
        rng = self.rng(index)
        h, w = self.size
        bg_name = str(rng.choice(list(BACKGROUNDS)))
        bg = np.array(BACKGROUNDS[bg_name], np.float32)
        xx, yy = self.grid()
        # A gentle vertical gradient so the background is not a single flat colour.
        canvas = bg + (yy[..., None] / h - 0.5) * 16.0
        if self.style == "checker":
            cell = max(2, min(h, w) // 8)
            checker = ((xx // cell + yy // cell) % 2)[..., None] * 2.0 - 1.0
            canvas = canvas + checker * (28.0 if bg_name == "dark" else -28.0) * (checker > 0)
        frames = np.broadcast_to(canvas, (self.frames, h, w, 3)).copy()
        n = 1 if self.max_shapes == 1 else int(rng.integers(1, 3))
        described, centroids, masks = [], [], []
        used_color = None
        for k in range(n):
            for _ in range(_TRIES):  # a second shape is redrawn until it never overlaps the first
                color, shape, direction = self._combo(rng, self.split == "heldout" and k == 0, used_color)
                r = float(rng.uniform(0.12, 0.18)) * min(h, w)
                ext = _extent(shape, r)
                lo_x, hi_x, lo_y, hi_y = ext + 1, w - ext - 1, ext + 1, h - ext - 1
                ux, uy = DIRECTIONS[direction]
                along, directions = self._along(rng, (lo_x, hi_x) if ux else (lo_y, hi_y), ux + uy, direction)
                across = np.full(self.frames, rng.uniform(lo_y, hi_y) if ux else rng.uniform(lo_x, hi_x))
                cx = _reflect(along, lo_x, hi_x) if ux else across
                cy = _reflect(along, lo_y, hi_y) if uy else across
                mask = shape_mask(shape, xx[None] - cx[:, None, None], yy[None] - cy[:, None, None], r)
                if not any((mask & m).any() for m in masks):
                    break
            else:
                break  # no room for another shape that stays apart: the clip keeps the ones drawn
            used_color = color
            masks.append(mask)
            described.append({"color": color, "shape": shape, "direction": direction, "directions": directions,
                              "radius": round(r, 3)})
            centroids.append(np.stack([cx, cy], -1))
        ids = np.full((self.frames, h, w), -1, np.int8)
        for k, (mask, d) in enumerate(zip(masks, described)):
            frames[mask] = COLORS[d["color"]]
            ids[mask] = k
        parts = [f"{'an' if d['color'][0] in 'aeiou' else 'a'} {d['color']} {d['shape']} {motion_phrase(d['directions'])}"
                 for d in described]
        caption = " and ".join(parts) + f" on a {bg_name} background"
        gt = {"centroids": np.round(np.stack(centroids, 1), 3).tolist()}  # (T, shapes, 2) as (x, y) pixels
        attributes = {"background": bg_name, "shapes": described, "split": self.split, "num_shapes": len(described),
                      "style": self.style}
        frames = np.clip(frames, 0, 255).astype(np.uint8)
        return Clip(frames, caption, attributes, gt, {"ids": ids})
