"""The field's video metrics on any set of videos: FVD, FID, CLIP similarity and VBench-style scores.

Networks with published weights (I3D for FVD, Inception for FID, CLIP) are defined here and load the
user's weight files (never downloaded: :mod:`.weights`); the weight-free metrics (flicker, warping
error, dynamic degree, PSNR/SSIM/VMAF) run anywhere. See docs/metrics.md.
"""
from .clip_score import ClipScorer
from .features import I3DFeatures, InceptionFeatures
from .fidelity import psnr, reconstruction_scores, ssim, vmaf
from .flicker import temporal_flickering
from .flow import dynamic_degree, optical_flow, warping_error
from .frechet import FeatureStats, frechet_distance
from .i3d import InceptionI3d, export_torchscript, load_i3d
from .inception import FIDInceptionV3, load_inception
from .report import METRICS, evaluate_videos, format_markdown
from .sources import VideoSource, read_prompts
from .weights import WEIGHTS, MissingWeightsError, locate_weights

__all__ = [
    "ClipScorer", "I3DFeatures", "InceptionFeatures", "psnr", "ssim", "vmaf", "reconstruction_scores",
    "temporal_flickering", "dynamic_degree", "optical_flow", "warping_error", "FeatureStats", "frechet_distance",
    "InceptionI3d", "export_torchscript", "load_i3d", "FIDInceptionV3", "load_inception", "METRICS",
    "evaluate_videos", "format_markdown", "VideoSource", "read_prompts", "WEIGHTS", "MissingWeightsError",
    "locate_weights",
]
