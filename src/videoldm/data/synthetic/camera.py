"""`camera`: smooth pans and zooms over real photographs shipped with scikit-image.

Real image content (faces, fur, text, textures) at known motion, for reconstruction and
temporal-coherence tests of autoencoders and upsamplers. Each frame is a crop window of the photo
resampled to (H, W) with bilinear filtering on an image pyramid (blended between the two nearest
levels), so zooming out does not alias. Ground truth: the per-frame crop window in photo pixels.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .base import Clip, Generator

__all__ = ["CameraGenerator", "HELDOUT_PHOTOS", "PHOTOS", "MOTIONS", "load_photo", "sample_window"]

# skimage.data name -> what the photo shows (for captions)
PHOTOS = {
    "astronaut": "an astronaut",
    "coffee": "a cup of coffee",
    "chelsea": "a cat",
    "rocket": "a rocket on a launch pad",
    "hubble_deep_field": "galaxies in deep space",
    "immunohistochemistry": "stained tissue under a microscope",
}
# a photo no `train` clip shows, for held-out evaluation (e.g. of a temporal decoder)
HELDOUT_PHOTOS = ("chelsea",)
MOTIONS = ("pan_left", "pan_right", "pan_up", "pan_down", "zoom_in", "zoom_out")


@lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """The photo as float32 (H, W, 3); needs scikit-image (`pip install scikit-image`)."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; one of {list(PHOTOS)}")
    try:
        import skimage.data
    except ImportError:
        raise ImportError("the camera dataset uses scikit-image's sample photos: pip install scikit-image") from None
    img = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    return np.ascontiguousarray(img[..., :3])


@lru_cache(maxsize=None)
def _pyramid(name: str) -> tuple[np.ndarray, ...]:
    levels = [load_photo(name)]
    while min(levels[-1].shape[:2]) >= 32:
        a = levels[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        levels.append(a[:h:2, :w:2] * 0.25 + a[1:h:2, :w:2] * 0.25 + a[:h:2, 1:w:2] * 0.25 + a[1:h:2, 1:w:2] * 0.25)
    return tuple(levels)


def _bilinear(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """img sampled at continuous pixel-centre coordinates xs (W,) and ys (H,): separable, vectorised."""
    h, w = img.shape[:2]
    xs = np.clip(xs - 0.5, 0, w - 1)
    ys = np.clip(ys - 0.5, 0, h - 1)
    x0 = np.minimum(xs.astype(int), w - 2)
    y0 = np.minimum(ys.astype(int), h - 2)
    fx = (xs - x0)[None, :, None]
    fy = (ys - y0)[:, None, None]
    rows0, rows1 = img[y0], img[y0 + 1]
    top = rows0[:, x0] * (1 - fx) + rows0[:, x0 + 1] * fx
    bot = rows1[:, x0] * (1 - fx) + rows1[:, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


def sample_window(name: str, box, size: tuple[int, int]) -> np.ndarray:
    """Render the crop window box = (x0, y0, x1, y1) in photo pixels at (H, W), float32."""
    h, w = size
    x0, y0, x1, y1 = box
    levels = _pyramid(name)
    step = max((x1 - x0) / w, (y1 - y0) / h)  # photo pixels per output pixel
    lvl = float(np.clip(np.log2(max(step, 1.0)), 0, len(levels) - 1))
    lo = int(np.floor(lvl))
    hi = min(lo + 1, len(levels) - 1)
    xs = x0 + (np.arange(w) + 0.5) * (x1 - x0) / w
    ys = y0 + (np.arange(h) + 0.5) * (y1 - y0) / h
    out = _bilinear(levels[lo], xs / 2**lo, ys / 2**lo)
    if hi != lo and lvl > lo:
        out = out * (hi - lvl) + _bilinear(levels[hi], xs / 2**hi, ys / 2**hi) * (lvl - lo)
    return out


def _ease(u: np.ndarray) -> np.ndarray:
    return u * u * (3 - 2 * u)  # smoothstep: starts and ends at rest


class CameraGenerator(Generator):
    kind = "camera"

    def __init__(self, frames=16, size=(128, 256), fps=8.0, seed=0, *, photos=None, motions=None, split=None):
        """``split``: ``train`` leaves out :data:`HELDOUT_PHOTOS`, ``heldout`` shows only them, None all photos."""
        super().__init__(frames, size, fps, seed)
        if split not in (None, "train", "heldout"):
            raise ValueError(f"split must be train or heldout, got {split!r}")
        by_split = {None: list(PHOTOS), "train": [p for p in PHOTOS if p not in HELDOUT_PHOTOS],
                    "heldout": list(HELDOUT_PHOTOS)}
        self.photos = list(photos or by_split[split])
        self.motions = list(motions or MOTIONS)
        for m in self.motions:
            if m not in MOTIONS:
                raise ValueError(f"unknown motion {m!r}; one of {MOTIONS}")

    def sample(self, index: int) -> Clip:
        rng = self.rng(index)
        h, w = self.size
        name = self.photos[rng.integers(len(self.photos))]
        motion = self.motions[rng.integers(len(self.motions))]
        ph, pw = load_photo(name).shape[:2]
        aspect = w / h
        full_h = min(ph, pw / aspect)  # the largest window of the output's aspect ratio
        u = _ease(np.linspace(0.0, 1.0, self.frames))
        if motion.startswith("zoom"):
            s0, s1 = float(rng.uniform(0.85, 1.0)), float(rng.uniform(0.4, 0.6))
            if motion == "zoom_out":
                s0, s1 = s1, s0
            heights = full_h * (s0 + (s1 - s0) * u)
            # Zoom toward a fixed point chosen so that every window stays inside the photo.
            fx, fy = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
            cx = fx * pw + (0.5 - fx) * heights * aspect
            cy = fy * ph + (0.5 - fy) * heights
        else:
            scale = float(rng.uniform(0.5, 0.75))
            heights = np.full(self.frames, full_h * scale)
            wh, ww = heights[0], heights[0] * aspect
            travel = float(rng.uniform(0.6, 1.0))
            if motion in ("pan_left", "pan_right"):
                a, b = ww / 2, pw - ww / 2
                cy = np.full(self.frames, rng.uniform(wh / 2, ph - wh / 2))
                x_from, x_to = (a, a + (b - a) * travel) if motion == "pan_right" else (b, b - (b - a) * travel)
                cx = x_from + (x_to - x_from) * u
            else:
                a, b = wh / 2, ph - wh / 2
                cx = np.full(self.frames, rng.uniform(ww / 2, pw - ww / 2))
                y_from, y_to = (a, a + (b - a) * travel) if motion == "pan_down" else (b, b - (b - a) * travel)
                cy = y_from + (y_to - y_from) * u
        widths = heights * aspect
        boxes = np.stack([cx - widths / 2, cy - heights / 2, cx + widths / 2, cy + heights / 2], -1)
        frames = np.stack([sample_window(name, b, self.size) for b in boxes])
        frames = np.clip(np.round(frames), 0, 255).astype(np.uint8)
        verb = {"pan_left": "a slow pan to the left", "pan_right": "a slow pan to the right",
                "pan_up": "a slow tilt upward", "pan_down": "a slow tilt downward",
                "zoom_in": "a slow zoom in", "zoom_out": "a slow zoom out"}[motion]
        caption = f"{verb} over a photo of {PHOTOS[name]}"
        attributes = {"photo": name, "motion": motion}
        gt = {"boxes": np.round(boxes, 3).tolist(), "photo_size": [ph, pw], "box_format": "x0,y0,x1,y1 photo pixels"}
        return Clip(frames, caption, attributes, gt)
