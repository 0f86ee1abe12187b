"""VideoFolderDataset: captions/attributes, frame folders, and bad data that never stops an epoch."""
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from data_fixtures import clip_indices, index_frames, make_video, truncate
from videoldm.data import SkippedFileWarning, VideoFolderDataset, collate_clips
from videoldm.data.io import write_gif, write_jsonl

# The index pattern (binary columns) changes half the picture every few frames: to the cut detector
# those are cuts, so the tests of timestamps and bad data here turn detection off (shots=False);
# tests/test_data_footage.py tests the cuts.


def test_clip_shape_range_and_metadata(tmp_path):
    make_video(tmp_path / "a.mp4", n=72, fps=24, h=48, w=96)
    (tmp_path / "a.txt").write_text("a test pattern\n")
    ds = VideoFolderDataset(tmp_path, num_frames=8, fps=8, size=(32, 64), seed=0, shots=False)
    video, meta = ds[0]
    assert video.shape == (3, 8, 32, 64) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1 and video.min() < -0.9 and video.max() > 0.9
    assert meta["caption"] == "a test pattern" and meta["fps"] == 8 and meta["source_fps"] == 24
    assert meta["path"].endswith("a.mp4") and 0 <= meta["start"] <= 3 - 7 / 8
    np.testing.assert_allclose(np.diff(meta["timestamps"]), 1 / 8, atol=1 / 24 + 1e-6)
    # Seeded: the same clip again; another epoch: (almost surely) another start.
    assert ds[0][1]["start"] == meta["start"]
    ds.set_epoch(1)
    assert ds[0][1]["start"] != meta["start"]


@pytest.mark.parametrize("src_fps", [24, 25, 30])
def test_dataset_timestamps_honour_fps(tmp_path, src_fps):
    make_video(tmp_path / "v.mp4", n=90, fps=src_fps)
    ds = VideoFolderDataset(tmp_path, num_frames=16, fps=8, start=0.5)
    video, meta = ds[0]
    expected = [int(np.floor((0.5 + k / 8) * src_fps + 1e-6)) for k in range(16)]
    assert clip_indices(video) == expected == meta["frame_indices"]


def test_sidecar_json_csv_and_jsonl_manifests(tmp_path):
    make_video(tmp_path / "x" / "one.mp4")
    make_video(tmp_path / "x" / "two.mp4")
    (tmp_path / "x" / "one.json").write_text(json.dumps({"caption": "first", "attributes": {"daytime": "night"}, "speed": 3}))
    (tmp_path / "x" / "two.txt").write_text("second")
    ds = VideoFolderDataset(tmp_path, num_frames=4, fps=8, shots=False)
    got = {m["caption"]: m["attributes"] for _, m in (ds[i] for i in range(len(ds)))}
    assert got == {"first": {"daytime": "night", "speed": 3}, "second": {}}

    (tmp_path / "metadata.csv").write_text("file_name,text,daytime,crowdedness\nx/two.mp4,from csv,day,3\n")
    ds = VideoFolderDataset(tmp_path, num_frames=4, fps=8, shots=False)
    assert len(ds) == 1 and ds[0][1]["caption"] == "from csv"
    assert ds[0][1]["attributes"] == {"daytime": "day", "crowdedness": 3}

    man = write_jsonl(tmp_path / "list.jsonl", [{"path": "x/one.mp4", "caption": "j", "ground_truth": [1, 2]}])
    ds = VideoFolderDataset(tmp_path, num_frames=4, fps=8, manifest=man, shots=False)
    assert ds[0][1]["caption"] == "j" and ds.record(0)["extra"]["ground_truth"] == [1, 2]


def test_frame_folders_and_gif(tmp_path):
    frames = index_frames(24)
    d = tmp_path / "clip_frames"
    d.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(d / f"frame{i}.png")  # natural order: frame2 before frame10
    (tmp_path / "clip_frames.json").write_text(json.dumps({"caption": "frames", "fps": 12}))
    write_gif(tmp_path / "anim.gif", frames, fps=12)
    ds = VideoFolderDataset(tmp_path, num_frames=6, fps=4, start="first", crop="center", shots=False)
    by_kind = {m["path"].endswith(".gif"): (v, m) for v, m in (ds[i] for i in range(2))}
    v, m = by_kind[False]
    assert m["caption"] == "frames" and m["source_fps"] == 12
    assert clip_indices(v) == [0, 3, 6, 9, 12, 15]
    v, m = by_kind[True]
    assert m["source_fps"] == pytest.approx(12, rel=0.1)
    assert clip_indices(v) == [0, 3, 6, 9, 12, 15]


def test_bad_files_are_skipped_counted_and_reported_once(tmp_path):
    good = [make_video(tmp_path / f"good{i}.mp4", n=48) for i in range(3)]
    short = make_video(tmp_path / "short.mp4", n=8)  # fewer frames than the clip needs
    cut = truncate(make_video(tmp_path / "cut.mp4", n=48), 0.5)  # index at the end: lost
    cut_fs = truncate(make_video(tmp_path / "cut_faststart.mp4", n=72, faststart=True), 0.6)  # opens, then ends
    # (0.6: the probe decodes the first frame, so it must be there; 0.3 leaves none and is caught at once)
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00\x01 not a video at all " * 100)
    with pytest.warns(SkippedFileWarning) as rec:
        ds = VideoFolderDataset(tmp_path, num_frames=12, fps=8, start="first", seed=0, shots=False)
    assert {str(short), str(cut), str(fake)} <= set(ds.skipped)
    assert "too short" in ds.skipped[str(short)]
    assert len(rec) == len(ds.skipped)
    paths = {str(item["path"]) for item in ds.items}
    assert str(cut_fs) in paths  # its header is intact: found bad only when decoding
    seen = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two epochs: the truncated file is warned about once
            for video, metas in DataLoader(ds, batch_size=2, collate_fn=collate_clips):
                assert video.shape == (2, 3, 12, 32, 64) or video.shape[0] == 1
                seen += [m["path"] for m in metas]
    assert str(cut_fs) in ds.skipped and "truncated" in ds.skipped[str(cut_fs)]
    assert len([w for w in caught if issubclass(w.category, SkippedFileWarning)]) == 1
    assert set(seen) <= {str(p) for p in good} and len(seen) == 2 * len(ds)
    assert "file(s) skipped" in ds.skipped.summary()


def test_empty_missing_and_all_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        VideoFolderDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no video files"):
        VideoFolderDataset(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.mkv").write_text("nope")
    make_video(bad / "tiny.mp4", n=3)
    with pytest.warns(SkippedFileWarning), pytest.raises(ValueError, match="no usable video.*2 file"):
        VideoFolderDataset(bad, num_frames=16, fps=8)


def test_an_interrupted_write_keeps_the_earlier_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    import videoldm.data.io as vio

    frames = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    path = vio.write_mp4(tmp_path / "clip.mp4", frames, 8)
    good = path.read_bytes()

    def cut_off(target, *args, **kwargs):
        with open(target, "wb") as f:
            f.write(b"half an mp4")
        raise KeyboardInterrupt

    monkeypatch.setattr(vio, "encode_mp4", cut_off)
    with pytest.raises(KeyboardInterrupt):
        vio.write_mp4(path, frames + 255, 8)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_hidden_files_and_folders_are_not_videos(tmp_path):
    from videoldm.data.video_folder import discover

    make_video(tmp_path / "a.mp4", n=8, fps=8, h=16, w=16)
    (tmp_path / "._a.mp4").write_bytes(b"\0\5\26\7 AppleDouble")  # what a macOS copy leaves
    (tmp_path / ".cache").mkdir()
    make_video(tmp_path / ".cache" / "b.mp4", n=8, fps=8, h=16, w=16)
    assert [e["path"].name for e in discover(tmp_path)] == ["a.mp4"]


def test_a_streamed_mp4_killed_mid_render_still_plays_up_to_its_last_fragment(tmp_path):
    """Mp4Writer (rollouts): kill -9 before close leaves a playable file, not an mp4 without its index."""
    import subprocess
    import sys

    from videoldm.data.io import read_video

    path = tmp_path / "long.mp4"
    script = ("import os, numpy as np\n"
              "from videoldm.data.io import Mp4Writer\n"
              f"w = Mp4Writer({str(path)!r}, 8)\n"
              "rng = np.random.default_rng(0)\n"
              "for _ in range(10):\n"
              "    w.write(rng.integers(0, 255, (10, 32, 64, 3), dtype=np.uint8))\n"
              "os._exit(0)  # no close: as if killed\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    frames = read_video(path)
    assert frames.shape[1:] == (32, 64, 3) and 48 <= len(frames) < 100


@pytest.mark.parametrize("fps", [8, 30, 64, 128])
def test_a_gif_plays_at_its_frame_rate_within_what_gif_can_say(tmp_path, fps):
    """Delays are whole centiseconds and browsers slow anything under 20 ms to 100 ms: a 64 or 128 fps GIF
    played 10x too slow. Now: at most 50 fps (every n-th frame), delays >= 20 ms, total time kept."""
    frames = np.random.default_rng(0).integers(0, 255, (32, 16, 16, 3), dtype=np.uint8)
    gif = Image.open(write_gif(tmp_path / "x.gif", frames, fps))
    delays = []
    for i in range(gif.n_frames):
        gif.seek(i)
        delays.append(gif.info["duration"])
    step = -(-fps // 50)
    assert len(delays) == -(-32 // step) and min(delays) >= 20 and all(d % 10 == 0 for d in delays)
    assert abs(sum(delays) - len(delays) * step * 1000 / fps) <= 5
