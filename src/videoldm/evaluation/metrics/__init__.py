"""Temporal-coherence metrics for generated videos of the procedural `shapes` and `driving` data.

Objects are tracked by colour against the known scene (palette, empty road); their centroid tracks
give the found fraction and the jerk; per-pixel statistics give flicker and temporal error; the
Laplacian gives sharpness. See docs/metrics.md for what each number means.
"""
from .coherence_report import coherence_report
from .driving_tracking import car_mask, daytime_of, track_cars
from .quality import psnr, sharpness
from .shapes_tracking import shape_colours, track_shapes
from .temporal import flicker, temporal_error
from .trajectory import found_fraction, jerk, link_detections, second_differences
from .video import as_videos

__all__ = [
    "as_videos", "coherence_report", "psnr", "sharpness", "flicker", "temporal_error",
    "track_shapes", "shape_colours", "track_cars", "car_mask", "daytime_of",
    "jerk", "found_fraction", "second_differences", "link_detections",
]
