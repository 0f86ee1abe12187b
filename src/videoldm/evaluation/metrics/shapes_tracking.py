"""Finding the coloured shapes of the `shapes` dataset in (generated) frames.

Every pixel is given the nearest colour of the dataset's palette (the seven shape colours and the
two backgrounds) in Lab; a pixel belongs to the wanted shape when that nearest colour is the
shape's and it is within `max_delta_e` of it. Why nearest-palette rather than a plain threshold:
red and orange, or an anti-aliased edge against the background, are told apart by which colour is
closer, and a blurred or slightly shifted model output still lands on the right side. The shape is
the largest 8-connected region of its pixels (stray pixels elsewhere do not move the centroid); it
is found when that region covers at least `min_area * min(H, W)^2` pixels (the smallest shape the
generator draws covers about 0.027 of that, so the default 0.01 asks for over a third of it).
Its form (circle, square, triangle, diamond) is the generator's outline that, placed at the region's
centroid with the region's area, overlaps it best: the shapes are never rotated, so no more is needed.
"""
from __future__ import annotations

import re

import numpy as np
from scipy import ndimage
from skimage.color import deltaE_cie76, rgb2lab

from ...data.synthetic.shapes import BACKGROUNDS, COLORS, SHAPES, shape_mask

__all__ = ["shape_colours", "asked_shapes", "classify", "track_shapes", "shape_of", "caption_match", "PALETTE"]

PALETTE = {**COLORS, **{f"background:{k}": v for k, v in BACKGROUNDS.items()}}
_NAMES = list(PALETTE)
_PALETTE_LAB = rgb2lab(np.array([PALETTE[k] for k in _NAMES], np.float32) / 255.0)
_CAPTION = re.compile(r"\b(" + "|".join(COLORS) + r")\s+(\w+)\s+moving\b")
_EIGHT = np.ones((3, 3), bool)


def shape_colours(description, strict: bool = True) -> list[str]:
    """The colour names of the shapes, from a caption ("a red circle moving left and ...") or the attributes dict."""
    return [colour for colour, _ in asked_shapes(description, strict)]


def asked_shapes(description, strict: bool = True) -> list[tuple[str, str]]:
    """(colour, shape) of every shape a caption ("a red circle moving left and ...") or attributes dict names.

    ``strict``: a description naming no shape is an error; otherwise it gives ``[]`` (e.g. a driving prompt)."""
    if isinstance(description, dict):
        return [(s["color"], s["shape"]) for s in (description["shapes"] if strict else description.get("shapes", []))]
    found = _CAPTION.findall(str(description))
    if not found and strict:
        raise ValueError(f"no '<colour> <shape> moving' phrase with a palette colour in caption {description!r}")
    return found


def classify(frames: np.ndarray, max_delta_e: float) -> np.ndarray:
    """Index into the palette of every pixel of float (T, H, W, 3) frames in [0, 1]; -1 where no palette colour is near."""
    lab = rgb2lab(frames)
    dist = deltaE_cie76(lab[..., None, :], _PALETTE_LAB)
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


def _unit_areas() -> dict[str, float]:
    """Area of each outline at r = 1 (measured on a fine grid, so it matches `shape_mask` exactly)."""
    g = (np.arange(-300, 300) + 0.5) / 100.0
    dy, dx = np.meshgrid(g, g, indexing="ij")
    return {s: float(shape_mask(s, dx, dy, 1.0).sum()) / 100.0 ** 2 for s in SHAPES}


_UNIT_AREAS = _unit_areas()


def shape_of(region: np.ndarray) -> str | None:
    """The form in `SHAPES` of a boolean (H, W) region: the outline, at its centroid and area, with the
    highest intersection over union. None for an empty region."""
    ys, xs = np.nonzero(region)
    if len(ys) == 0:
        return None
    h, w = region.shape
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    dx, dy = gx - (xs.mean() + 0.5), gy - (ys.mean() + 0.5)
    scores = {}
    for name in SHAPES:
        outline = shape_mask(name, dx, dy, np.sqrt(len(ys) / _UNIT_AREAS[name]))
        scores[name] = (outline & region).sum() / (outline | region).sum()
    return max(scores, key=scores.get)


def caption_match(frames: np.ndarray, description, *, max_delta_e: float = 40.0, min_area: float = 0.01) -> bool:
    """Does a video (float (T, H, W, 3) in [0, 1]) show what its caption asks for: for every named shape,
    its colour found in at least half the frames and its form, by majority over those frames, the one named."""
    t, h, w, _ = frames.shape
    label = classify(frames, max_delta_e)
    for colour, shape in asked_shapes(description):
        if colour not in COLORS:
            raise ValueError(f"unknown shape colour {colour!r}; one of {list(COLORS)}")
        k = _NAMES.index(colour)
        regions = [_largest_region(label[f] == k) for f in range(t)]
        forms = [shape_of(r) for r in regions if r.sum() >= min_area * min(h, w) ** 2]
        if len(forms) < t / 2 or max(set(forms), key=forms.count) != shape:
            return False
    return True
