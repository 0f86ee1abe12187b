"""Finding the cars of the `driving` dataset in (generated) frames.

The empty scene is known: the camera is fixed to the road, so apart from the dashed lane lines
(which stream toward the camera at the ego speed) every frame of a clip has the same background,
which the generator itself renders for day or night. From renders with the dashes at every phase
of their 12 m period we take, per pixel, the range (min to max, per Lab channel) of the background
colours within one pixel: an envelope that holds a dash wherever it is, and the blur and slight
misalignment of thin lines that video compression or a generative model causes. A pixel is a car
pixel when its colour lies farther than `min_delta_e` outside that envelope. Only rows from just above the horizon
down are searched (cars poke a little above it; the stars above do not count). Each 8-connected
region of car pixels of at least `min_area * H * W` pixels is one detection (two overlapping cars
are one), at its pixel centroid; detections are linked into tracks frame to frame.

What this cannot see: a dark car at night on the dark road differs from it only by its window,
bumper and tail lights, so it may be found as smaller pieces or not at all; that is what the
frames show, not a tracker artefact.
"""
from __future__ import annotations

import functools
import re

import numpy as np
from scipy import ndimage
from skimage.color import rgb2lab

from ...data.synthetic.driving import DrivingGenerator
from .trajectory import link_detections

__all__ = ["daytime_of", "empty_road", "car_mask", "track_cars"]

_EIGHT = np.ones((3, 3), bool)
_DASH_PERIOD = 12.0


def daytime_of(description) -> str | None:
    """"day" or "night" from the attributes dict or the caption ("driving on a highway at night, ..."); None if not said."""
    if isinstance(description, dict):
        return description.get("daytime")
    m = re.search(r"\bat (day|night)\b", str(description or ""))
    return m.group(1) if m else None


@functools.lru_cache(maxsize=8)
def empty_road(size: tuple[int, int], night: bool, phases: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Lab envelope (low, high), each (H, W, 3), of the car-free scene: dash phases and a 3x3 neighbourhood.

    Rendered by the generator's own background code (a private method: the scene model lives there,
    and a copy here would drift from it). No stars: they are above the searched rows.
    """
    gen = DrivingGenerator(frames=1, size=size)
    no_stars = np.zeros((0, 2), np.int64)
    imgs = [gen._background(night, _DASH_PERIOD * k / phases, no_stars) for k in range(phases)]
    lab = rgb2lab(np.clip(np.stack(imgs), 0, 255).round() / 255.0)
    low = ndimage.minimum_filter(lab.min(0), size=(3, 3, 1), mode="nearest")
    high = ndimage.maximum_filter(lab.max(0), size=(3, 3, 1), mode="nearest")
    return low.astype(np.float32), high.astype(np.float32)


def _outside(lab: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Lab distance from each pixel to the background envelope (0 inside it)."""
    gap = np.maximum(low - lab, 0.0) + np.maximum(lab - high, 0.0)
    return np.sqrt((gap * gap).sum(-1))


def _first_row(h: int, w: int) -> int:
    """The top row a car can reach: a car 4 m away pokes 0.1 m above the camera height, i.e. above the horizon."""
    horizon, focal = 0.42 * h, 0.75 * w
    return max(0, int(horizon - focal * 0.1 / 4.0) - 1)


def car_mask(frames: np.ndarray, daytime: str | None = None, *, min_delta_e: float = 15.0) -> np.ndarray:
    """bool (T, H, W): pixels unlike the empty road. daytime None: the background (day or night) closer to the frames."""
    t, h, w, _ = frames.shape
    lab = rgb2lab(frames)
    if daytime is None:
        day, night = (_outside(lab, *empty_road((h, w), n)).mean() for n in (False, True))
        daytime = "night" if night < day else "day"
    if daytime not in ("day", "night"):
        raise ValueError(f"daytime must be 'day' or 'night', got {daytime!r}")
    low, high = empty_road((h, w), daytime == "night")
    top = _first_row(h, w)
    mask = np.zeros((t, h, w), bool)
    mask[:, top:] = _outside(lab[:, top:], low[top:], high[top:]) > min_delta_e
    return mask


def track_cars(frames: np.ndarray, daytime: str | None = None, *, min_delta_e: float = 15.0,
               min_area: float = 4e-4, max_step: float = 0.08):
    """Car tracks (each (T, 2) of (x, y), NaN outside its life), per-frame detection counts, and the car mask.

    `max_step` is the largest frame-to-frame move, as a fraction of the frame width, that still
    links two detections into one track.
    """
    t, h, w, _ = frames.shape
    mask = car_mask(frames, daytime, min_delta_e=min_delta_e)
    min_pixels = min_area * h * w
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    detections = []
    for f in range(t):
        regions, n = ndimage.label(mask[f], structure=_EIGHT)
        sizes = np.bincount(regions.ravel(), minlength=n + 1)
        sx = np.bincount(regions.ravel(), xs.ravel(), minlength=n + 1)
        sy = np.bincount(regions.ravel(), ys.ravel(), minlength=n + 1)
        keep = np.flatnonzero(sizes[1:] >= min_pixels) + 1
        detections.append(np.stack([sx[keep] / sizes[keep], sy[keep] / sizes[keep]], -1))
    tracks = link_detections(detections, max_step * w)
    return tracks, np.array([len(d) for d in detections]), mask
