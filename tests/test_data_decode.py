"""PyAV decoding: timestamps honour the target fps, seeking skips the prefix, VFR files, resize/crop."""
import numpy as np
import pytest

from data_fixtures import index_frames, make_video, read_index
from videoldm.data.decode import DecodeError, clip_times, decode_clip, probe, resize_crop_plan
from videoldm.data.io import write_mp4


@pytest.mark.parametrize("src_fps", [24, 25, 30])
@pytest.mark.parametrize("start", [0.0, 0.7, 1.3])
def test_resample_to_8fps_by_timestamps(tmp_path, src_fps, start):
    path = make_video(tmp_path / f"v{src_fps}.mp4", n=100, fps=src_fps)
    info = probe(path)
    assert info.fps == pytest.approx(src_fps) and info.num_frames == 100
    assert info.duration == pytest.approx(100 / src_fps, abs=1e-3)
    times = clip_times(start, 16, 8.0)
    frames, used = decode_clip(path, times)
    expected = [int(np.floor(t * src_fps + 1e-6)) for t in times]
    assert [read_index(f) for f in frames] == expected
    np.testing.assert_allclose(used, np.array(expected) / src_fps, atol=1e-6)


def test_seek_decodes_only_from_the_keyframe_before_the_clip(tmp_path):
    path = make_video(tmp_path / "long.mp4", n=240, fps=24, gop=12)
    stats = {}
    frames, _ = decode_clip(path, clip_times(8.0, 8, 8.0), stats=stats)
    assert [read_index(f) for f in frames] == [192 + 3 * k for k in range(8)]
    assert stats["seeked"] and stats["decoded_frames"] < 40  # not the 192-frame prefix


def test_variable_frame_rate_file(tmp_path):
    # Irregular presentation times (a phone-style VFR clip): bursts of 1/60 s, gaps of 1/10 s.
    rng = np.random.default_rng(0)
    ts = np.cumsum(rng.choice([1 / 60, 1 / 30, 0.1], size=60))
    ts = np.round(ts - ts[0], 3)
    path = write_mp4(tmp_path / "vfr.mp4", index_frames(60), fps=30, timestamps=list(ts))
    targets = clip_times(0.2, 12, 8.0)
    frames, used = decode_clip(path, targets)
    # The frame shown at t is the last one presented at or before t.
    expected = [int(np.searchsorted(ts, t + 1e-6, side="right") - 1) for t in targets]
    assert [read_index(f) for f in frames] == expected
    np.testing.assert_allclose(used, ts[expected], atol=2e-3)
    # Native mode: consecutive decoded frames, whatever their spacing.
    frames, used = decode_clip(path, None, num_frames=5, start=0.5)
    first = int(np.searchsorted(ts, 0.5 - 1e-6))
    assert [read_index(f) for f in frames] == list(range(first, first + 5))


def test_clip_past_the_end_is_an_error(tmp_path):
    path = make_video(tmp_path / "short.mp4", n=10, fps=24)
    with pytest.raises(DecodeError, match="stream ended"):
        decode_clip(path, clip_times(0.0, 16, 8.0))


def test_non_video_is_a_decode_error(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 50)
    with pytest.raises(DecodeError):
        probe(bad)


def test_resize_cover_and_crop(tmp_path):
    assert resize_crop_plan(360, 640, (128, 256)) == (144, 256, 8, 0)
    assert resize_crop_plan(360, 640, (128, 256), (0.0, 0.0))[2:] == (0, 0)
    path = write_mp4(tmp_path / "wide.mp4", np.full((8, 90, 160, 3), 200, np.uint8), 24)
    frames, _ = decode_clip(path, None, num_frames=4, size=(64, 64))
    assert frames.shape == (4, 64, 64, 3)
    assert abs(frames.astype(int).mean() - 200) < 3
