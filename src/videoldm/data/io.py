"""Writing clips and manifests to disk.

The procedural datasets, the tests and the benchmark all write real files through these helpers, so
that every clip we train or measure on goes through the same decoder path as users' own videos.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
from fractions import Fraction
from pathlib import Path
from typing import IO, Iterable, Sequence

import av
import numpy as np

__all__ = ["Mp4Writer", "write_mp4", "encode_mp4", "mp4_bytes", "write_gif", "write_jsonl", "read_jsonl", "fps_fraction", "read_video"]


def fps_fraction(fps: float | Fraction) -> Fraction:
    """A frame rate as the exact fraction containers expect (29.97 -> 30000/1001)."""
    if isinstance(fps, Fraction):
        return fps
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return Fraction(fps).limit_denominator(1001)


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def encode_mp4(
    target: str | Path | IO[bytes],
    frames: np.ndarray,
    fps: float | Fraction,
    *,
    codec: str = "libx264",
    crf: int | None = None,
    pix_fmt: str = "yuv420p",
    timestamps: Sequence[float] | None = None,
    faststart: bool = False,
    gop: int | None = None,
) -> None:
    """Encode uint8 (T, H, W, 3) frames as H.264 in an mp4 container.

    `crf=None` keeps the encoder's default quality (libx264: 23), the setting our round-trip
    acceptance test is stated for. `timestamps` (seconds, increasing) write a variable-frame-rate
    file; `faststart` moves the index to the front (how web videos are stored, and how a truncated
    file can still be opened). `gop` sets the keyframe interval (libx264 default: 250 frames).
    """
    frames = _check_frames(frames)
    t, h, w, _ = frames.shape
    if pix_fmt == "yuv420p" and (h % 2 or w % 2):
        raise ValueError(f"H.264 with yuv420p needs even height and width, got {h}x{w}")
    rate = fps_fraction(fps)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(target, mode="w", format="mp4", options=options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if crf is not None:
            stream.options = {"crf": str(crf)}
        if gop is not None:
            stream.codec_context.gop_size = gop
        if timestamps is not None:
            if len(timestamps) != t or any(b <= a for a, b in zip(timestamps, timestamps[1:])):
                raise ValueError("timestamps must be increasing, one per frame")
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            if timestamps is not None:
                frame.pts = int(round(timestamps[i] * 1000))
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


class Mp4Writer:
    """An H.264 mp4 written frame by frame, for videos too long to hold in memory (rollouts).

    ``with Mp4Writer(path, fps) as w: w.write(frames)`` with uint8 ``(T, H, W, 3)`` pieces of one size;
    the file is complete when the writer closes. Until then it is a fragmented mp4 (a fragment per
    keyframe, every 2 s) flushed packet by packet: a render killed outright (kill -9, a lost machine)
    still plays up to its last fragment, less the encoder's lookahead.
    """

    def __init__(self, path: str | Path, fps: float | Fraction, crf: int | None = 18, codec: str = "libx264"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rate, self.crf, self.codec = fps_fraction(fps), crf, codec
        self.container = av.open(str(self.path), mode="w", format="mp4", options={
            "movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"})
        self.stream = None
        self.frames = 0

    def write(self, frames: np.ndarray) -> None:
        frames = _check_frames(frames)
        h, w = frames.shape[1:3]
        if self.stream is None:
            if h % 2 or w % 2:
                raise ValueError(f"H.264 needs even height and width, got {h}x{w}")
            self.stream = self.container.add_stream(self.codec, rate=self.rate)
            self.stream.width, self.stream.height, self.stream.pix_fmt = w, h, "yuv420p"
            self.stream.gop_size = max(1, round(2 * float(self.rate)))  # a keyframe, and a fragment, every 2 s
            if self.crf is not None:
                self.stream.options = {"crf": str(self.crf)}
        elif (h, w) != (self.stream.height, self.stream.width):
            raise ValueError(f"frames of {h}x{w} in a {self.stream.height}x{self.stream.width} video")
        for arr in frames:
            for packet in self.stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                self.container.mux(packet)
        self.frames += len(frames)

    def close(self) -> None:
        if self.container is None:
            return
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
        self.container = None

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def replacing(path: str | Path):
    """Yields a temporary name beside `path` to write to; on success it replaces `path` in one step, on
    failure (Ctrl-C included) it is removed: `path` is never a half-written file, and a good earlier
    file of that name survives a failed write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")  # same suffix: writers pick formats by it
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_mp4(path: str | Path, frames: np.ndarray, fps: float | Fraction, **kwargs) -> Path:
    """Write frames to `path` (parents created; written whole or not at all); see `encode_mp4` for the options."""
    with replacing(path) as partial:
        encode_mp4(str(partial), frames, fps, **kwargs)
    return Path(path)


def mp4_bytes(frames: np.ndarray, fps: float | Fraction, **kwargs) -> bytes:
    """The encoded mp4 as bytes (for tar shards, without a temporary file)."""
    buf = io.BytesIO()
    encode_mp4(buf, frames, fps, **kwargs)
    return buf.getvalue()


GIF_MAX_FPS = 50  # GIF delays are whole centiseconds, and browsers play a delay under 20 ms as 100 ms


def gif_timing(num_frames: int, fps: float) -> tuple[int, list[int]]:
    """(every n-th frame to keep, each kept frame's delay in ms) so that a GIF plays at ``fps``.

    Faster than 50 fps keeps every n-th frame (n = ceil(fps / 50)); delays are multiples of 10 ms whose
    running sum stays within 5 ms of the true time (8 fps: 120, 130, 120, ... ms, not 120 throughout)."""
    step = max(1, math.ceil(fps / GIF_MAX_FPS - 1e-9))
    frame_ms = 1000 * step / fps
    kept = math.ceil(num_frames / step)
    ends = [round((i + 1) * frame_ms / 10) * 10 for i in range(kept)]
    return step, [end - start for start, end in zip([0, *ends[:-1]], ends)]


def write_gif(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """An animated GIF preview via PIL (fast octree quantisation; imageio's writer is 50-100x slower).
    It plays at ``fps`` (above 50 fps, with every n-th frame: see :func:`gif_timing`)."""
    from PIL import Image

    frames = _check_frames(frames)
    step, delays = gif_timing(len(frames), fps)
    images = [Image.fromarray(f).quantize(method=Image.Quantize.FASTOCTREE) for f in frames[::step]]
    with replacing(path) as partial:
        images[0].save(partial, save_all=True, append_images=images[1:], duration=delays, loop=0)
    return Path(path)


def write_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    with replacing(path) as partial, open(partial, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    return Path(path)


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSON-lines file; a malformed line is an error naming the file and line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not valid JSON ({err.msg})") from None
    return out


def read_video(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    """The frames of a video file as ``(T, H, W, 3)`` uint8: all of them, or the first ``max_frames`` (the rest is
    not decoded)."""
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24", threads=1))  # see decode._to_array
            if len(frames) == max_frames:
                break
    return np.stack(frames)
