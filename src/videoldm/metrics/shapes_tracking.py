"""Finding the coloured shapes of the `shapes` dataset in (generated) frames.

Every pixel is given the nearest colour of the dataset's palette (the seven shape colours and the
two backgrounds) in Lab; a pixel belongs to the wanted shape when that nearest colour is the
shape's and it is within `max_delta_e` of it. Why nearest-palette rather than a plain threshold:
red and orange, or an anti-aliased edge against the background, are told apart by which colour is
closer, and a blurred or slightly shifted model output still lands on the right side. The shape is
the largest 8-connected region of its pixels (stray pixels elsewhere do not move the centroid); it
is found when that region covers at least `min_area * min(H, W)^2` pixels (the smallest shape the
generator draws covers about 0.027 of that, so the default 0.01 asks for over a third of it).
"""
from __future__ import annotations

import re

import numpy as np
from scipy import ndimage

from ..data.synthetic.shapes import BACKGROUNDS, COLORS
from .colour import delta_e, rgb_to_lab

__all__ = ["shape_colours", "classify", "track_shapes", "PALETTE"]

PALETTE = {**COLORS, **{f"background:{k}": v for k, v in BACKGROUNDS.items()}}
_NAMES = list(PALETTE)
_PALETTE_LAB = rgb_to_lab(np.array([PALETTE[k] for k in _NAMES], np.float32) / 255.0)
_CAPTION = re.compile(r"\b(" + "|".join(COLORS) + r")\s+\w+\s+moving\b")
_EIGHT = np.ones((3, 3), bool)


def shape_colours(description) -> list[str]:
    """The colour names of the shapes, from a caption ("a red circle moving left and ...") or the attributes dict."""
    if isinstance(description, dict):
        return [s["color"] for s in description["shapes"]]
    colours = _CAPTION.findall(str(description))
    if not colours:
        raise ValueError(f"no '<colour> <shape> moving' phrase with a palette colour in caption {description!r}")
    return colours


def classify(frames: np.ndarray, max_delta_e: float) -> np.ndarray:
    """Index into the palette of every pixel of float (T, H, W, 3) frames in [0, 1]; -1 where no palette colour is near."""
    lab = rgb_to_lab(frames)
    dist = delta_e(lab[..., None, :], _PALETTE_LAB)
    label = dist.argmin(-1)
    return np.where(np.take_along_axis(dist, label[..., None], -1)[..., 0] <= max_delta_e, label, -1)


def _largest_region(mask: np.ndarray) -> np.ndarray:
    regions, n = ndimage.label(mask, structure=_EIGHT)
    if n <= 1:
        return mask
    sizes = np.bincount(regions.ravel())[1:]
    return regions == 1 + int(sizes.argmax())


def track_shapes(frames: np.ndarray, colours: list[str], *, max_delta_e: float = 40.0, min_area: float = 0.01):
    """Per shape colour, its centroid track (T, 2) of (x, y) pixel-centre coordinates (NaN where not found).

    Also returns the per-pixel object mask (T, H, W) bool: pixels of any palette shape colour, which
    the report uses to leave moving objects out of the background flicker.
    """
    t, h, w, _ = frames.shape
    label = classify(frames, max_delta_e)
    min_pixels = min_area * min(h, w) ** 2
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5  # the generator's pixel-centre convention
    tracks = []
    for colour in colours:
        if colour not in COLORS:
            raise ValueError(f"unknown shape colour {colour!r}; one of {list(COLORS)}")
        k = _NAMES.index(colour)
        track = np.full((t, 2), np.nan)
        for f in range(t):
            region = _largest_region(label[f] == k)
            if region.sum() >= min_pixels:
                track[f] = xs[region].mean(), ys[region].mean()
        tracks.append(track)
    objects = (label >= 0) & (label < len(COLORS))
    return tracks, objects
