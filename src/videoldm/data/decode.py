"""Decoding clips from video files with PyAV: probe, seek, and resample by presentation timestamps.

Why timestamps and not frame indices: real files have frame rates of 24, 25, 29.97 or 30 fps, some
are variable-frame-rate, and a model trained at 8 fps must see 8 fps motion from all of them. The
frame shown at time t is the last frame whose presentation time is <= t; we pick that frame for each
target time start + k / fps. Why seeking: decoding from the start of a long file to reach a clip in
the middle costs the whole prefix; we seek to the keyframe before the clip and decode from there.
Why rotation: phones store portrait video as landscape frames plus a display matrix; players turn
the picture, so we do too (sizes in `VideoInfo` are the displayed ones).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, asdict
from pathlib import Path
from typing import Sequence

import av
import numpy as np

__all__ = ["VideoInfo", "DecodeError", "probe", "clip_times", "decode_clip", "frame_rotation", "resize_crop_plan"]

_EPS = 1e-4  # seconds of slack when comparing timestamps (float rounding of pts * time_base)


def _slack(stream) -> float:
    """Slack for comparing a frame's time with a target: half a tick of the stream's time base (the most
    a rounded timestamp is off) at least. Why: FLV, ASF (.wmv) and Matroska store milliseconds, so frame 4
    of a 24 fps file says 0.167 s, not 0.16667 s, and would lose its place to frame 3."""
    tick = float(stream.time_base) if stream.time_base else 0.0
    return _EPS + min(tick, 0.002) / 2

Source = "str | Path | bytes | IO[bytes]"


class DecodeError(RuntimeError):
    """A file that cannot give the requested clip (unreadable, truncated, too short, no video)."""


@dataclass
class VideoInfo:
    """What a header (or, failing that, a full decode) tells about a file."""

    fps: float  # average frame rate
    duration: float  # seconds, the last frame's display interval included
    num_frames: int
    width: int
    height: int
    codec: str
    rotation: int = 0  # degrees counter-clockwise the stored frames are turned for display (0, 90, 180, 270)
    cuts: tuple = ()  # presentation times (s) of the first frame of every shot after the first; see shots.py
    cut_frames: tuple = ()  # the same cuts as decoded-frame indices
    shots_detected: bool = False  # whether `cuts` was measured (False: unknown, treated as one shot)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VideoInfo":
        d = dict(d)
        d["cuts"], d["cut_frames"] = tuple(d.get("cuts", ())), tuple(d.get("cut_frames", ()))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @property
    def shots(self) -> list[tuple[float, float]]:
        """(start, end) seconds of each shot: cut to cut, the whole file when no cuts are known."""
        bounds = [0.0, *self.cuts, self.duration]
        return list(zip(bounds[:-1], bounds[1:]))


def _open(source):
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, Path):
        source = str(source)
    try:
        return av.open(source, mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise DecodeError(f"cannot open: {err}") from None


def _video_stream(container):
    if not container.streams.video:
        raise DecodeError("no video stream")
    return container.streams.video[0]


def probe(source) -> VideoInfo:
    """Frame rate, duration, frame count and size, from the header when it has them.

    Falls back to decoding the whole stream (cheap for the GIFs and small files that lack them). Raises
    DecodeError for anything that is not a decodable video.
    """
    with _open(source) as container:
        stream = _video_stream(container)
        tb = stream.time_base
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        duration = float(stream.duration * tb) if stream.duration and tb else 0.0
        if not duration and container.duration:
            duration = container.duration / 1e6
        n = int(stream.frames or 0)
        width, height = stream.codec_context.width, stream.codec_context.height
        codec = stream.codec_context.name
        rotation = 0
        if n and duration and fps and width:
            # The display matrix comes with the frames (side data): decode the first one (also proves
            # the stream decodes at all).
            try:
                first = next(container.decode(stream), None)
            except av.error.FFmpegError as err:
                raise DecodeError(f"cannot decode: {err}") from None
            if first is None:
                raise DecodeError("no decodable frames")
            width, height, rotation = first.width, first.height, frame_rotation(first)
        else:
            # Header incomplete: count by decoding (also proves the stream decodes at all).
            times = []
            try:
                for frame in container.decode(stream):
                    width, height = frame.width, frame.height
                    if not times:
                        rotation = frame_rotation(frame)
                    times.append(_frame_time(frame, stream, len(times), fps))
            except av.error.FFmpegError as err:
                if not times:
                    raise DecodeError(f"cannot decode: {err}") from None
            if not times:
                raise DecodeError("no decodable frames")
            n = len(times)
            if not fps:
                fps = (n - 1) / (times[-1] - times[0]) if n > 1 and times[-1] > times[0] else 25.0
            duration = max(duration, times[-1] - times[0] + 1.0 / fps)
    if not width or not height:
        raise DecodeError("video stream without a frame size")
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(fps=fps, duration=duration, num_frames=n, width=width, height=height, codec=codec,
                     rotation=rotation)


def frame_rotation(frame) -> int:
    """Counter-clockwise display rotation of a decoded frame, snapped to 0/90/180/270 (others are rare
    and not worth resampling for)."""
    try:
        degrees = frame.rotation or 0
    except (AttributeError, ValueError):  # older PyAV, or a malformed matrix
        return 0
    return int(round(degrees / 90.0)) % 4 * 90


def _frame_time(frame, stream, index: int, fps: float) -> float:
    """Presentation time in seconds relative to the stream start."""
    pts = frame.pts if frame.pts is not None else frame.dts
    if pts is None or stream.time_base is None:
        return index / (fps or 25.0)
    start = stream.start_time or 0
    return float((pts - start) * stream.time_base)


def clip_times(start: float, num_frames: int, fps: float) -> np.ndarray:
    """Target presentation times of a clip: start + k / fps."""
    return start + np.arange(num_frames, dtype=np.float64) / fps


def resize_crop_plan(h: int, w: int, size: tuple[int, int] | None, crop_pos: tuple[float, float] = (0.5, 0.5)):
    """Resize so (H, W) is covered (keeping the aspect ratio), then crop; crop_pos in [0, 1]^2 picks where.

    Returns (resized_h, resized_w, top, left). With size None, the frame is kept as is.
    """
    if size is None:
        return h, w, 0, 0
    th, tw = size
    scale = max(th / h, tw / w)
    rh, rw = max(th, int(round(h * scale))), max(tw, int(round(w * scale)))
    top = int(round((rh - th) * crop_pos[0]))
    left = int(round((rw - tw) * crop_pos[1]))
    return rh, rw, top, left


def _to_array(frame, plan, size, rotation: int = 0) -> np.ndarray:
    """The frame as displayed (turned by `rotation`), resized to the plan's size and cropped.

    Scaled on this thread (``threads=1``), not in swscale's slice threads (PyAV's default): once, in the test
    suite, a forked DataLoader worker waited in them forever (gdb: its main thread in
    avpriv_slicethread_execute, no slice thread alive). It costs nothing measurable at these sizes."""
    rh, rw, top, left = plan
    sh, sw = (rw, rh) if rotation in (90, 270) else (rh, rw)  # the size to scale the stored frame to
    if (sh, sw) == (frame.height, frame.width):
        arr = frame.to_ndarray(format="rgb24", threads=1)
    else:
        interp = "AREA" if sh < frame.height else "BICUBIC"
        arr = frame.reformat(width=sw, height=sh, format="rgb24", interpolation=interp, threads=1).to_ndarray()
    if rotation:
        arr = np.rot90(arr, k=rotation // 90)
    if size is not None:
        arr = arr[top : top + size[0], left : left + size[1]]
    return np.ascontiguousarray(arr)


def decode_clip(
    source,
    times: Sequence[float] | None = None,
    *,
    num_frames: int | None = None,
    start: float = 0.0,
    size: tuple[int, int] | None = None,
    crop_pos: tuple[float, float] = (0.5, 0.5),
    duration: float | None = None,
    seek: bool = True,
    stats: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode the frames shown at `times` (seconds from the stream start), resized and cropped to `size`.

    With `times` None, returns `num_frames` consecutive decoded frames from the first frame at or
    after `start` (the file's own frame rate, variable or not). Returns (uint8 (T, H, W, 3), the
    presentation times of the frames used). Raises DecodeError when the file cannot give the clip:
    a target time past the end of the stream, or a decoding error (truncated data).
    """
    if times is None and not num_frames:
        raise ValueError("give target times or num_frames")
    targets = None if times is None else np.asarray(times, dtype=np.float64)
    first = float(targets[0]) if targets is not None else float(start)
    with _open(source) as container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 25.0)
        end = duration
        if end is None and stream.duration and stream.time_base:
            end = float(stream.duration * stream.time_base)
        seeked = False
        if seek and first > 0.5 and stream.time_base:
            seeked = True
            # Keyframe at or before the clip start (backward seek); a little margin for rounding.
            offset = int((first - 0.05) / stream.time_base) + (stream.start_time or 0)
            try:
                container.seek(max(offset, 0), stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError:
                container.seek(0)
                seeked = False
        counter = [0]
        try:
            out, used = _collect(container, stream, targets, num_frames, first, fps, end, size, crop_pos, counter)
        except _Overshoot:
            # The seek landed after the clip start (imprecise index): decode from the beginning.
            container.seek(0, stream=stream, backward=True, any_frame=False)
            seeked = False
            out, used = _collect(container, stream, targets, num_frames, first, fps, end, size, crop_pos, counter)
    if stats is not None:
        stats.update(decoded_frames=counter[0], seeked=seeked)
    return np.stack(out), np.asarray(used)


class _Overshoot(Exception):
    pass


def _collect(container, stream, targets, num_frames, first, fps, end, size, crop_pos, counter):
    out: list[np.ndarray] = []
    used: list[float] = []
    plan = None
    rotation = 0
    prev = prev_t = None
    prev_arr = None  # the previous frame converted once, reused when it covers several targets
    want = len(targets) if targets is not None else num_frames
    eps = _slack(stream)
    k = 0
    try:
        for i, frame in enumerate(container.decode(stream)):
            counter[0] += 1
            t = _frame_time(frame, stream, i, fps)
            if plan is None:
                rotation = frame_rotation(frame)
                h, w = (frame.width, frame.height) if rotation in (90, 270) else (frame.height, frame.width)
                plan = resize_crop_plan(h, w, size, crop_pos)
                if t > first + eps and first > 0:
                    raise _Overshoot
            if targets is None:
                if t + eps >= first:
                    out.append(_to_array(frame, plan, size, rotation))
                    used.append(t)
                    if len(out) == want:
                        break
                continue
            while k < want and t > targets[k] + eps:
                if prev is None:
                    raise DecodeError(f"clip starts at {targets[k]:.3f}s, before the first frame ({t:.3f}s)")
                if prev_arr is None:
                    prev_arr = _to_array(prev, plan, size, rotation)
                out.append(prev_arr)
                used.append(prev_t)
                k += 1
            if k == want:
                break
            prev, prev_t, prev_arr = frame, t, None
    except av.error.FFmpegError as err:
        raise DecodeError(f"decoding failed after {len(out)} of {want} frames: {err}") from None
    if targets is not None and k < want and prev is not None:
        # End of stream: the last frame stays on screen until the stream's end (its duration).
        last_ok = prev_t + 1.0 / fps
        if end:
            if prev_t + max(2.0 / fps, 0.1) < end:
                raise DecodeError(f"stream ends at {prev_t:.3f}s but the header says {end:.3f}s (truncated file)")
            last_ok = end
        while k < want and targets[k] < last_ok - _EPS:
            if prev_arr is None:
                prev_arr = _to_array(prev, plan, size, rotation)
            out.append(prev_arr)
            used.append(prev_t)
            k += 1
    if len(out) < want:
        raise DecodeError(f"stream ended after {len(out)} of {want} frames (clip too long or file truncated)")
    return out, used
