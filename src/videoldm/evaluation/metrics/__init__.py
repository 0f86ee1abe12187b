"""Temporal-coherence metrics for generated videos of the procedural `shapes` and `driving` data.

Objects are tracked by colour against the known scene (palette, empty road); their centroid tracks
give the found fraction, the jerk and (shapes) whether they move as the caption says; per-pixel statistics give flicker and temporal error; the
Laplacian gives sharpness. See docs/metrics.md for what each number means.
"""
from .coherence_report import coherence_report
from .driving_tracking import car_mask, daytime_of, track_cars
from .motion import asked_motions, direction_followed, jumps
from .quality import psnr, sharpness
from .shapes_tracking import shape_colours, track_shapes
from .temporal import flicker, temporal_error
from .trajectory import found_fraction, jerk, link_detections, second_differences
from .video import as_videos

__all__ = [
    "as_videos", "coherence_report", "psnr", "sharpness", "flicker", "temporal_error",
    "track_shapes", "shape_colours", "track_cars", "car_mask", "daytime_of",
    "jerk", "found_fraction", "second_differences", "link_detections", "asked_motions", "direction_followed", "jumps",
]
