"""Real footage made into a training folder: decoded once, cut per shot, resized, resampled, split in time.

Why once: the loaders decode, seek and resize on every clip; a 720p film read at 64x112 would spend
nearly all of a training step's data time scaling pictures down. Decoding the film once into small
pieces makes every later epoch cheap, and the pieces go through the same decoder path as any user's
videos. Why near-lossless (libx264 crf 10, 4:4:4 chroma by default): the pieces are the training data;
at 64x112 the usual 4:2:0 would halve the colour resolution of what the models learn from.

Layout: `out/train/` and `out/heldout/`, each with one mp4 per shot piece (`pieces.py`) and a
`manifest.jsonl` that `VideoFolderDataset` reads (one caption for every piece, empty by default: a film
has none; `ground_truth` says where each piece came from), and `out/prepare.json` with the settings and counts (for model cards).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import av
import numpy as np

from .decode import DecodeError, _frame_time, _open, _slack, _to_array, _video_stream, frame_rotation, resize_crop_plan
from .io import write_jsonl, write_mp4
from .pieces import Piece, piece_times, plan_pieces
from .probe_cache import probe_with_shots

__all__ = ["SPLITS", "PREPARE_CRF", "prepare_footage", "frames_at"]

SPLITS = ("train", "heldout")
PREPARE_CRF = 10  # near-lossless at these sizes (see tests/test_data_prepare.py for the PSNR it keeps)
REPORT = "prepare.json"


def frames_at(source, times: Sequence[float], size: tuple[int, int] | None, on_frame: Callable | None = None):
    """Yield (k, uint8 (H, W, 3)) for every increasing time in `times`: the frame shown then, resized to
    cover `size` and center-cropped, in one pass over the stream (no seeking, each frame scaled at most once).

    The frame shown at t is the last one whose presentation time is <= t (a target before the first frame
    gets the first frame); targets after the last frame get the last frame. `on_frame()` is called per
    decoded frame (a progress bar). Raises DecodeError when the stream breaks before the last target.
    """
    targets = np.asarray(times, dtype=np.float64)
    n, k = len(targets), 0
    with _open(source) as container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 25.0)
        eps = _slack(stream)
        plan = rotation = None
        prev = prev_arr = None
        try:
            for i, frame in enumerate(container.decode(stream)):
                if on_frame is not None:
                    on_frame()
                if plan is None:
                    rotation = frame_rotation(frame)
                    h, w = (frame.width, frame.height) if rotation in (90, 270) else (frame.height, frame.width)
                    plan = resize_crop_plan(h, w, size)
                t = _frame_time(frame, stream, i, rate)
                while k < n and (t > targets[k] + eps):
                    if prev_arr is None:
                        prev_arr = _to_array(prev if prev is not None else frame, plan, size, rotation)
                    yield k, prev_arr
                    k += 1
                if k == n:
                    return
                prev, prev_arr = frame, None
        except av.error.FFmpegError as err:
            raise DecodeError(f"decoding failed at output frame {k} of {n}: {err}") from None
        if prev is None:
            raise DecodeError("no decodable frames")
        last = _to_array(prev, plan, size, rotation)
        for j in range(k, n):
            yield j, last


def _clear(out: Path, overwrite: bool) -> None:
    """Refuse a folder with anything in it, unless `overwrite`: then remove what an earlier prepare wrote."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out exists and is not a folder: {out}")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"--out {out} is not empty (an earlier or interrupted prepare?); pass --overwrite to "
                             "replace its train/, heldout/ and prepare.json, or choose another folder")
        for split in SPLITS:
            shutil.rmtree(out / split, ignore_errors=True)
        (out / REPORT).unlink(missing_ok=True)


def _names(sources: Sequence[Path]) -> list[str]:
    """A file-name prefix per source: its stem, numbered when two sources share one."""
    stems = [Path(s).stem for s in sources]
    return [f"{stem}-{i}" if stems.count(stem) > 1 else stem for i, stem in enumerate(stems)]


def prepare_footage(
    sources: Sequence[str | Path],
    out: str | Path,
    size: tuple[int, int],
    fps: float,
    *,
    split_at: float = 0.9,
    min_frames: int = 16,
    crf: int = PREPARE_CRF,
    pix_fmt: str = "yuv444p",
    caption: str = "",
    overwrite: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Write the pieces of every source into `out/train` and `out/heldout` (module docstring); returns the
    report also written to `out/prepare.json`: settings, and per split the pieces, frames and seconds kept,
    and the shot pieces dropped as shorter than `min_frames`.

    Every source is split by its own duration (the first `split_at` of each trains). Raises DecodeError
    (naming the file) for a source that cannot be read, before anything is written for it.
    """
    from tqdm.auto import tqdm

    log = log or (lambda message: None)
    out = Path(out)
    sources = [Path(s) for s in sources]
    for src in sources:
        if not src.is_file():
            raise FileNotFoundError(f"source video not found: {src}")
    _clear(out, overwrite)
    rows = {split: [] for split in SPLITS}
    counts = {split: {"pieces": 0, "frames": 0, "seconds": 0.0, "dropped_pieces": 0, "dropped_seconds": 0.0}
              for split in SPLITS}
    per_source = []
    t0 = time.perf_counter()
    for src, prefix in zip(sources, _names(sources)):
        log(f"{src}: finding shot cuts (one decode at 64 pixels wide)")
        try:
            info = probe_with_shots(src)
        except DecodeError as err:
            raise DecodeError(f"{src}: cannot read: {err}") from None
        kept, dropped = plan_pieces(info.duration, info.cuts, fps, split_at, min_frames)
        log(f"{src}: {info.width}x{info.height} {info.fps:.3g} fps {info.duration:.1f}s, {len(info.cuts) + 1} shots "
            f"-> {len(kept)} pieces ({len(dropped)} shorter than {min_frames} frames dropped)")
        for p in dropped:
            counts[p.split]["dropped_pieces"] += 1
            counts[p.split]["dropped_seconds"] += p.duration
        targets, owners = [], []
        for j, p in enumerate(kept):
            times = piece_times(p.start, p.end, fps)
            targets += times
            owners += [j] * len(times)
        bar = tqdm(total=info.num_frames or None, desc=f"{src.name} -> {size[0]}x{size[1]} {fps:g} fps",
                   unit="frame", disable=not progress)
        buffer: list[np.ndarray] = []
        try:
            for k, arr in frames_at(src, targets, size, on_frame=lambda: bar.update()):
                buffer.append(arr)
                p = kept[owners[k]]
                if len(buffer) == p.num_frames:
                    name = f"{prefix}_shot{p.shot:04d}.mp4"
                    write_mp4(out / p.split / name, np.stack(buffer), fps, crf=crf, pix_fmt=pix_fmt)
                    rows[p.split].append(_row(name, p, src, fps, size, caption))
                    counts[p.split]["pieces"] += 1
                    counts[p.split]["frames"] += p.num_frames
                    counts[p.split]["seconds"] += p.duration
                    buffer = []
        except DecodeError as err:
            raise DecodeError(f"{src}: {err}") from None
        finally:
            bar.close()
        per_source.append({"path": str(src), "duration": info.duration, "fps": info.fps,
                           "size": [info.height, info.width], "shots": len(info.cuts) + 1,
                           "cuts": list(info.cuts)})
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
        write_jsonl(out / split / "manifest.jsonl", rows[split])
        counts[split]["seconds"] = round(counts[split]["seconds"], 3)
        counts[split]["dropped_seconds"] = round(counts[split]["dropped_seconds"], 3)
    report = {"size": list(size), "fps": fps, "caption": caption, "split_at": split_at, "min_frames": min_frames, "crf": crf,
              "pix_fmt": pix_fmt, "sources": per_source, "splits": counts,
              "seconds_taken": round(time.perf_counter() - t0, 1)}
    (out / REPORT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _row(name: str, piece: Piece, src: Path, fps: float, size, caption: str) -> dict:
    """A manifest row: the one caption given for all (a film has none of its own); where the piece came
    from, as its ground truth."""
    return {"path": name, "caption": caption, "fps": fps, "frames": piece.num_frames, "size": list(size),
            "ground_truth": {"source": src.name, "shot": piece.shot, "start": round(piece.start, 4),
                             "end": round(piece.end, 4)}}
