"""``evaluate_videos``: the field's metrics on a set of generated videos, against a reference set.

One pass over the generated videos feeds every metric; a second pass over the reference videos (or
their cached statistics) gives FVD's and FID's other Gaussian. The networks are located (and a missing one
reported, one message per metric) before any video is read.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .clip_score import ClipScorer
from .features import I3DFeatures, InceptionFeatures
from .fidelity import psnr, ssim, vmaf
from .flicker import temporal_flickering
from .flow import dynamic_degree, warping_error
from .frechet import FeatureStats, frechet_distance
from .i3d import I3D_FRAMES, I3D_SIZE, load_i3d
from .inception import INCEPTION_SIZE, load_inception
from .sources import VideoSource, read_prompts
from .weights import MissingWeightsError, locate_weights

__all__ = ["METRICS", "evaluate_videos", "format_markdown"]

# name -> (what it needs, one line of what it is); the keys it reports are in docs/metrics.md
METRICS = {
    "fvd": ("reference set, i3d", "Fréchet distance of I3D features of 16-frame clips (lower is closer)"),
    "fid": ("reference set, inception", "Fréchet distance of Inception features of frames (lower is closer)"),
    "clipsim": ("prompts, clip", "CLIP cosine of frames and prompt (higher follows the prompt better)"),
    "clip_consistency": ("clip", "CLIP cosine of consecutive frames (higher is steadier)"),
    "flicker": ("", "VBench temporal flickering, (255 - mean |x[t+1] - x[t]|) / 255 (higher is steadier)"),
    "warping": ("", "flow-warping error, occlusion-masked MSE of frame t+1 warped onto t (lower is steadier)"),
    "dynamic_degree": ("", "VBench dynamic degree: fraction of videos with large motion"),
    "psnr": ("paired reference", "PSNR (dB) against the same-named reference video"),
    "ssim": ("paired reference", "SSIM against the same-named reference video"),
    "vmaf": ("paired reference", "VMAF (0-100) against the same-named reference video"),
}
DISTRIBUTION = ("fvd", "fid")
PAIRED = ("psnr", "ssim", "vmaf")
CLIP = ("clipsim", "clip_consistency")


def _parse_metrics(metrics) -> list[str]:
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {unknown or names}: choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def _network(key, given, weights_dir):
    """A loaded network passed in as is; a path or nothing located (raises MissingWeightsError)."""
    if given is not None and not isinstance(given, (str, Path)):
        return given, None
    return None, locate_weights(key, given, weights_dir)


def evaluate_videos(generated, reference=None, *, prompts=None, metrics=("flicker", "warping"), weights_dir=None,
                    i3d=None, inception=None, clip=None, reference_stats=None, save_stats=None, device="cpu",
                    batch_size: int = 8, fvd_frames: int = I3D_FRAMES, fvd_clips: str = "first",
                    fid_frames: int | None = None, flow: str = "dis", seed: int = 0, progress: bool = True,
                    max_videos: int | None = None,
                    i3d_size: int = I3D_SIZE, inception_size: int = INCEPTION_SIZE) -> dict:
    """Measure ``generated`` (a folder, or a tensor/array/list of videos) with ``metrics``.

    reference: a folder or videos; FVD/FID compare the two sets, PSNR/SSIM/VMAF pair videos by name (in
    memory: by position). reference_stats: a folder with ``fvd.npz``/``fid.npz`` saved by ``save_stats``
    (a folder) instead of reference videos. prompts: a list (one per video), a file (see ``read_prompts``),
    or None for the folder's own captions. i3d/inception/clip: a loaded network or a path; when None they
    are looked up under ``weights_dir`` or $VIDEOLDM_WEIGHTS. ``i3d_size``/``inception_size`` change the
    networks' input size for fast tests only: numbers at other sizes than 224/299 are not FVD/FID.
    max_videos: a seeded random subset of each set (FVD-2048: 2048).

    Returns ``{"metrics": {key: value}, "counts": {...}, "settings": {...}, "per_video": [{name, ...}]}``.
    """
    names = _parse_metrics(metrics)
    # 1. Check inputs and locate every network before reading a video: all missing weights in one error
    missing, nets = [], {}
    for metric, key, given in (("fvd", "i3d", i3d), ("fid", "inception", inception), ("clip", "clip", clip)):
        if (metric == "clip" and any(m in names for m in CLIP)) or metric in names:
            try:
                nets[key] = _network(key, given, weights_dir)
            except MissingWeightsError as err:
                missing.append(str(err))
    if missing:
        raise MissingWeightsError("\n".join(missing))
    if "vmaf" in names and importlib.util.find_spec("vmaf_torch") is None:
        raise ValueError("vmaf needs the vmaf-torch package (its model ships with it): pip install 'videoldm[vmaf]'")
    source = VideoSource(generated, "generated")
    wants_reference = [m for m in names if m in PAIRED or (m in DISTRIBUTION and reference_stats is None)]
    if wants_reference and reference is None:
        verb = "needs" if len(wants_reference) == 1 else "need"
        raise ValueError(f"{', '.join(wants_reference)} {verb} a reference set (--reference"
                         f"{'' if set(wants_reference) <= set(PAIRED) else ' or --reference-stats'})")
    ref = VideoSource(reference, "reference") if reference is not None else None
    if save_stats and ref is None:
        raise ValueError("--save-stats saves the reference set's statistics: give --reference videos")
    texts = source.captions
    if prompts is not None:
        texts = read_prompts(prompts, source.names) if isinstance(prompts, (str, Path)) else list(prompts)
        if len(texts) != len(source):
            raise ValueError(f"{len(texts)} prompts for {len(source)} videos")
    texts = [texts[i] for i in source.subset(max_videos, seed)]
    if ref is not None and not any(m in PAIRED for m in names):  # paired metrics follow the generated names
        ref.subset(max_videos, seed + 1)
    if "clipsim" in names and not all(texts):
        raise ValueError("clipsim needs a prompt for every video: --prompts FILE, or captions in the folder's "
                         "manifest or sidecar .txt files")
    paired = None
    if any(m in PAIRED for m in names):
        index = {n: i for i, n in enumerate(ref.names)}
        lost = [n for n in source.names if n not in index]
        if lost:
            raise ValueError(f"{', '.join(m for m in names if m in PAIRED)} pair videos by name; no reference for "
                             f"{len(lost)} of them, e.g. {lost[:3]}")
        paired = [index[n] for n in source.names]

    # 2. Load the networks
    extractors = {}
    if "fvd" in names:
        detector = nets["i3d"][0] or load_i3d(nets["i3d"][1], device)
        extractors["fvd"] = lambda: I3DFeatures(detector, batch_size, device, fvd_frames, i3d_size, fvd_clips, seed)
    if "fid" in names:
        model = nets["inception"][0] or load_inception(nets["inception"][1], device, inception_size)
        extractors["fid"] = lambda: InceptionFeatures(model, batch_size, device, fid_frames)
    scorer = None
    if "clip" in nets:
        scorer = nets["clip"][0] or ClipScorer(nets["clip"][1], device, batch_size)

    # 3. One pass over the generated videos
    features = {m: make() for m, make in extractors.items()}
    rows, per_metric = [], {m: [] for m in names}
    for i, (name, video) in enumerate(tqdm(source, total=len(source), desc="generated", disable=not progress)):
        row = {"name": name}
        for extractor in features.values():
            extractor.add(video)
        if "flicker" in names:
            row["flicker"] = temporal_flickering(video)["flicker"]
        if "warping" in names:
            row["warping_error"] = warping_error(video, flow)["warping_error"]
        if "dynamic_degree" in names:
            motion = dynamic_degree(video, flow)["per_video"][0]
            row["dynamic"], row["motion"] = motion["dynamic"], motion["motion"]
        if scorer is not None:
            scorer.add(video, texts[i] if "clipsim" in names else None)
            row.update(scorer.per_video[-1])
        if paired is not None:
            target = ref.read(paired[i])
            for metric, function in (("psnr", psnr), ("ssim", ssim), ("vmaf", vmaf)):
                if metric in names:
                    row[metric] = function(video, target)[0]
        rows.append(row)

    # 4. The reference set's statistics: cached, or one pass over its videos
    out, counts = {}, {"generated": len(source)}
    if features:
        reference_features = {}
        if reference_stats is not None:
            for metric in features:
                reference_features[metric] = FeatureStats.load(Path(reference_stats) / f"{metric}.npz")
        else:
            ref_extractors = {m: make() for m, make in extractors.items()}
            for _, video in tqdm(ref, total=len(ref), desc="reference", disable=not progress):
                for extractor in ref_extractors.values():
                    extractor.add(video)
            reference_features = {m: e.stats() for m, e in ref_extractors.items()}
            if save_stats:
                for metric, stats in reference_features.items():
                    stats.save(Path(save_stats) / f"{metric}.npz")
        for metric, extractor in features.items():
            mine = extractor.stats()
            out[metric] = frechet_distance(mine, reference_features[metric])
            counts[f"{metric}_samples"] = [mine.count, reference_features[metric].count]
    if ref is not None:
        counts["reference"] = len(ref)

    # 5. Means over videos
    for key in ("flicker", "warping_error", "motion", "clipsim", "clip_score", "clip_consistency", *PAIRED):
        values = [r[key] for r in rows if key in r]
        if values:
            out[key] = float(np.nanmean(values))
    if "dynamic_degree" in names:
        out["dynamic_degree"] = float(np.mean([r["dynamic"] for r in rows]))
    settings = {"metrics": names, "flow": flow, "fvd_frames": fvd_frames, "fvd_clips": fvd_clips,
                "i3d_size": i3d_size, "inception_size": inception_size, "fid_frames": fid_frames, "seed": seed,
                "max_videos": max_videos}
    return {"metrics": out, "counts": counts, "settings": settings, "per_video": rows}


UNITS = {"fvd": "lower is closer", "fid": "lower is closer", "flicker": "VBench, 1 = frozen",
         "warping_error": "MSE on [0, 1], lower is steadier", "motion": "px at a 256 short side",
         "dynamic_degree": "fraction of videos", "clipsim": "cosine (papers' CLIPSIM)",
         "clip_score": "100 max(cos, 0)", "clip_consistency": "cosine of consecutive frames",
         "psnr": "dB", "ssim": "", "vmaf": "0-100"}


def format_markdown(report: dict, title: str = "") -> str:
    """The report as a Markdown table of the means (per-video numbers are in the JSON)."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| metric | value | |", "|---|---|---|"]
    for key, value in report["metrics"].items():
        lines.append(f"| {key} | {value:.4g} | {UNITS.get(key, '')} |")
    counts = report["counts"]
    note = f"{counts['generated']} generated videos"
    if "reference" in counts:
        note += f", {counts['reference']} reference"
    for metric in DISTRIBUTION:
        if f"{metric}_samples" in counts:
            a, b = counts[f"{metric}_samples"]
            note += f"; {metric.upper()} on {a} vs {b} samples"
            if metric == "fvd" and min(a, b) < 2048:
                note += " (the FVD-2048 protocol takes 2048 clips a side: fewer give higher, noisier numbers)"
    return "\n".join(lines + ["", note, ""])
