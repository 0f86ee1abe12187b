"""`driving`: a highway seen from the ego car, like the paper's driving data (1:2 aspect, e.g. 128x256).

A pinhole camera 1.4 m above a flat three-lane road: each pixel row below the horizon is a distance
z = f * h / (y - horizon), so lane markings dashed every 12 m stream toward the camera at the ego
speed, and cars (boxes in world space with their own speeds) shrink with distance. Day or night
(sky, road lighting, head-light falloff, tail lights), crowdedness = number of cars. Ground truth:
per-frame pixel box of every visible car. Everything is vectorised over the frame; cars are drawn
far to near as rectangles, so a car's pixels always lie inside its box.
"""
from __future__ import annotations

import numpy as np

from .base import Clip, Generator

__all__ = ["DrivingGenerator", "CROWDEDNESS", "DAYTIMES", "DRIVING_ATTRIBUTES"]

LANE_WIDTH = 3.6
CAM_HEIGHT = 1.4
CAR_WIDTH, CAR_HEIGHT = 1.8, 1.5
DAYTIMES = ("day", "night")
CROWDEDNESS = {"low": (1, 2), "medium": (3, 5), "high": (6, 9)}  # cars per scene
# the attributes every clip's manifest row holds, as an AttributeConditioner takes them (a category's index
# is its embedding row: the order is fixed)
DRIVING_ATTRIBUTES = {"daytime": {"categories": list(DAYTIMES)}, "crowdedness": {"categories": list(CROWDEDNESS)}}
CAR_COLORS = np.array([
    (200, 30, 30), (30, 60, 170), (220, 220, 225), (30, 30, 35), (150, 150, 160), (30, 120, 60),
    (230, 180, 40), (120, 70, 40),
], np.float32)


def _coverage(dist: np.ndarray, half_width: float, pixel: np.ndarray) -> np.ndarray:
    """Fraction of a pixel (of size `pixel` world units) covered by a stripe |d| < half_width: cheap anti-aliasing."""
    return np.clip((half_width - np.abs(dist)) / pixel + 0.5, 0.0, 1.0)


class DrivingGenerator(Generator):
    kind = "driving"

    def __init__(self, frames=16, size=(128, 256), fps=8.0, seed=0, *, daytime: str | None = None, crowdedness: str | None = None):
        super().__init__(frames, size, fps, seed)
        if daytime not in (None, *DAYTIMES):
            raise ValueError(f"daytime must be one of {list(DAYTIMES)}, got {daytime!r}")
        if crowdedness not in (None, *CROWDEDNESS):
            raise ValueError(f"crowdedness must be one of {list(CROWDEDNESS)}, got {crowdedness!r}")
        self.daytime, self.crowdedness = daytime, crowdedness
        h, w = self.size
        self.horizon = 0.42 * h
        self.focal = 0.75 * w

    def _scene(self, rng):
        night = (self.daytime or ("night" if rng.uniform() < 0.4 else "day")) == "night"
        crowd = self.crowdedness or str(rng.choice(list(CROWDEDNESS)))
        n = int(rng.integers(CROWDEDNESS[crowd][0], CROWDEDNESS[crowd][1] + 1))
        ego = float(rng.uniform(12.0, 33.0))  # m/s
        cars = []
        for _ in range(n):
            lane = int(rng.integers(-1, 2))
            z0 = float(rng.uniform(7.0, 70.0)) if lane else float(rng.uniform(12.0, 70.0))
            cars.append({
                "lane": lane, "z0": z0, "x": lane * LANE_WIDTH + float(rng.uniform(-0.3, 0.3)),
                "speed": ego * float(rng.uniform(0.75, 1.2)), "color": CAR_COLORS[rng.integers(len(CAR_COLORS))],
            })
        return night, crowd, ego, cars

    def _background(self, night: bool, travelled: float, stars: np.ndarray) -> np.ndarray:
        h, w = self.size
        xx, yy = self.grid()
        img = np.empty((h, w, 3), np.float32)
        sky_t = np.clip(yy / self.horizon, 0, 1)[..., None]
        if night:
            img[:] = (8, 10, 28) + sky_t * np.array([14, 14, 20], np.float32)
            img[stars[:, 0], stars[:, 1]] = (190, 190, 170)
        else:
            img[:] = np.array([70, 130, 210], np.float32) * (1 - sky_t) + np.array([190, 210, 230], np.float32) * sky_t
        below = yy > self.horizon + 0.5
        z = np.where(below, self.focal * CAM_HEIGHT / np.maximum(yy - self.horizon, 1e-3), 1e6)
        X = (xx - w / 2) * z / self.focal
        px = z / self.focal  # metres per pixel across, at that row
        pz = z * z / (self.focal * CAM_HEIGHT)  # metres per pixel along the road
        fog = np.exp(-z / 160.0)[..., None]
        horizon_col = img[int(self.horizon)].mean(0) if not night else np.array([20, 22, 40], np.float32)
        grass = np.array([40, 70, 35] if night else [70, 125, 55], np.float32)
        road = np.array([34, 34, 38] if night else [95, 95, 100], np.float32)
        paint = np.array([150, 150, 140] if night else [235, 235, 225], np.float32)
        half = 1.5 * LANE_WIDTH
        on_road = _coverage(X, half + 0.3, px)[..., None]
        ground = grass * (1 - on_road) + road * on_road
        # Solid edge lines and dashed lane lines (3 m dash every 12 m, moving with the ego car).
        lines = np.maximum(_coverage(np.abs(X) - half, 0.12, px), 0.0)
        dash = _coverage(np.mod(z + travelled, 12.0) - 1.5, 1.5, pz)
        for xl in (-LANE_WIDTH / 2, LANE_WIDTH / 2):
            lines = np.maximum(lines, _coverage(X - xl, 0.08, px) * dash)
        ground = ground * (1 - lines[..., None]) + paint * lines[..., None]
        if night:  # the ego car's head lights: bright near, fading with distance and off the road axis
            light = 0.35 + 1.6 * np.exp(-z / 22.0) * np.exp(-(X / 6.0) ** 2)
            ground = ground * light[..., None]
        ground = ground * fog + horizon_col * (1 - fog)
        img = np.where(below[..., None], ground, img)
        return img

    def sample(self, index: int) -> Clip:
        rng = self.rng(index)
        h, w = self.size
        night, crowd, ego, cars = self._scene(rng)
        stars = np.stack([rng.integers(0, int(self.horizon), 40), rng.integers(0, w, 40)], 1)
        frames = np.empty((self.frames, h, w, 3), np.uint8)
        ids = np.full((self.frames, h, w), -1, np.int16)
        boxes = []
        for f in range(self.frames):
            t = f / self.fps
            img = self._background(night, ego * t, stars)
            visible = []
            for k, car in enumerate(cars):
                z = car["z0"] + (car["speed"] - ego) * t
                if z > 4.0:
                    visible.append((z, k, car))
            frame_boxes = []
            for z, k, car in sorted(visible, key=lambda v: -v[0]):  # far to near: near cars occlude
                box = self._car_box(car["x"], z)
                if box is None:
                    continue
                self._draw_car(img, box, car["color"], z, night)
                x0, y0, x1, y1 = box
                ids[f, y0:y1, x0:x1] = k
                frame_boxes.append({"id": k, "box": [x0, y0, x1, y1], "lane": car["lane"], "distance": round(z, 2)})
            frames[f] = np.clip(img, 0, 255).astype(np.uint8)
            boxes.append(sorted(frame_boxes, key=lambda b: b["id"]))
        daytime = "night" if night else "day"
        traffic = {"low": "light", "medium": "moderate", "high": "heavy"}[crowd]
        caption = f"driving on a highway at {'night' if night else 'day'}, {traffic} traffic, {ego:.0f} m/s"
        attributes = {"daytime": daytime, "crowdedness": crowd, "num_cars": len(cars), "ego_speed": round(ego, 2)}
        gt = {"boxes": boxes, "box_format": "x0,y0,x1,y1 pixels, x1/y1 exclusive"}
        return Clip(frames, caption, attributes, gt, {"ids": ids, "stars": stars, "night": night, "ego_speed": ego})

    def _car_box(self, x: float, z: float):
        """Integer pixel box [x0, y0, x1, y1) of the pixels whose centres fall on the car's rear face."""
        h, w = self.size
        f, hz = self.focal, self.horizon
        left, right = w / 2 + f * (x - CAR_WIDTH / 2) / z, w / 2 + f * (x + CAR_WIDTH / 2) / z
        bottom, top = hz + f * CAM_HEIGHT / z, hz + f * (CAM_HEIGHT - CAR_HEIGHT) / z
        x0, x1 = int(np.ceil(left - 0.5)), int(np.floor(right - 0.5)) + 1
        y0, y1 = int(np.ceil(top - 0.5)), int(np.floor(bottom - 0.5)) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 < 1 or y1 - y0 < 1:
            return None
        return x0, y0, x1, y1

    @staticmethod
    def _draw_car(img, box, color, z, night):
        x0, y0, x1, y1 = box
        bw, bh = x1 - x0, y1 - y0
        shade = (0.25 + 1.2 * np.exp(-z / 25.0)) if night else 1.0
        img[y0:y1, x0:x1] = color * min(shade, 1.2)
        # Rear window (upper third, dark glass), bumper (bottom rows), tail lights (two red blocks).
        img[y0 : y0 + max(1, bh // 3), x0 + bw // 8 : x1 - bw // 8] = np.array([40, 50, 60], np.float32) * min(shade, 1.0)
        if bh >= 4:
            img[y1 - max(1, bh // 6) : y1, x0:x1] = np.array([20, 20, 22], np.float32)
        if bw >= 5 and bh >= 5:
            ly0, ly1 = y0 + bh // 2, y0 + bh // 2 + max(1, bh // 6)
            lw = max(1, bw // 5)
            tail = np.array([255, 40, 30] if night else [190, 30, 25], np.float32)
            img[ly0:ly1, x0 : x0 + lw] = tail
            img[ly0:ly1, x1 - lw : x1] = tail
