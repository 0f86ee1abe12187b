"""Real footage as it comes: every container FFmpeg reads, rotation, variable frame rate, odd sizes, and
shot cuts (clips never span one), on generated files and on the fetched clips (scripts/fetch_footage.py)."""
import json
from fractions import Fraction

import av
import numpy as np
import pytest

from data_fixtures import index_frames, read_index
from videoldm.cli import main
from videoldm.data import VideoFolderDataset
from videoldm.data.decode import clip_times, decode_clip, probe
from videoldm.data.probe_cache import ProbeCache
from videoldm.data.shots import detect_cuts
from videoldm.data.video_folder import scan

# Cuts labelled by eye (frame strips around every candidate, docs/real-footage.md): the first frame of each
# new shot. Fades through black: the first frame after the black one.
BIKES_CUTS = [30, 76, 137, 187, 242]
TRAILER_CUTS = [241, 337, 593, 769, 864, 900, 988, 1049, 1252]  # 241, 337, 769: fades; the rest hard cuts


def write_clip(path, fmt, codec, w, h, n=24, fps=24, frames=None, pts=None, rotation=None, pix_fmt="yuv420p"):
    """n frames (a brightness ramp unless given) through PyAV: container `fmt`, encoder `codec`."""
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    frames = frames if frames is not None else [np.full((h, w, 3), 10 * i, np.uint8) for i in range(n)]
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if pts is not None:  # millisecond timestamps, in the stream and in the encoder
            s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
            if pts is not None:
                f.pts, f.time_base = int(round(pts[i] * 1000)), s.time_base
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


CONTAINERS = [  # (file name, container, encoder, width, height)
    ("program.mpg", "mpeg", "mpeg2video", 64, 32),
    ("old.mpeg", "mpeg", "mpeg1video", 64, 32),
    ("broadcast.ts", "mpegts", "mpeg2video", 64, 32),
    ("camcorder.m2ts", "mpegts", "libx264", 64, 32),
    ("flash.flv", "flv", "flv", 64, 32),
    ("windows.wmv", "asf", "wmv2", 64, 32),
    ("theora.ogv", "ogg", "libtheora", 64, 32),
    ("vp8.ogv", "ogg", "libvpx", 64, 32),
    ("phone.3gp", "3gp", "h263", 176, 144),
    ("odd.mkv", "matroska", "ffv1", 65, 33),
    ("odd.mov", "mov", "mpeg4", 66, 34),
    ("noextension", "matroska", "libx264", 64, 32),
]


@pytest.mark.parametrize("name,fmt,codec,w,h", CONTAINERS, ids=[c[0] for c in CONTAINERS])
def test_every_container_ffmpeg_reads_gives_clips(tmp_path, name, fmt, codec, w, h):
    path = write_clip(tmp_path / name, fmt, codec, w, h)
    info = probe(path)
    assert (info.width, info.height) == (w, h) and info.fps == pytest.approx(24, rel=0.02)
    ds = VideoFolderDataset(tmp_path, num_frames=8, fps=12, start="first", crop="center", seed=0)
    assert [e["path"].name for e in ds.items] == [name] and not ds.skipped and not ds.not_read
    video, meta = ds[0]
    assert video.shape == (3, 8, h, w)
    # frame k of the ramp has brightness 10 k: at 12 fps from a 24 fps file, every other one
    means = ((video.mean(dim=(0, 2, 3)) + 1) * 127.5).numpy()
    np.testing.assert_allclose(means, [20 * k for k in range(8)], atol=4)


def test_a_folder_of_everything_names_every_file_it_does_not_read(tmp_path, capsys):
    readable = []
    for name, fmt, codec, w, h in CONTAINERS:
        try:
            av.codec.Codec(codec, "w")
        except Exception:
            continue  # (the per-container test says which encoder is missing)
        readable.append(write_clip(tmp_path / name, fmt, codec, w, h).name)
    (tmp_path / "corrupt.mpg").write_bytes(b"\x00\x00\x01\xba" + bytes(range(256)) * 20)  # a pack header, then junk
    (tmp_path / "random.dat").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "notes.md").write_text("shot list\n")
    (tmp_path / "orphan.txt").write_text("a caption with no video\n")
    (tmp_path / "program.txt").write_text("a caption of program.mpg\n")  # a sidecar: read, not listed
    (tmp_path / "still.png").write_bytes(b"\x89PNG")

    entries, not_read = scan(tmp_path)
    assert {p.name: r for p, r in not_read} == {
        "notes.md": "not a video (.md)", "orphan.txt": "not a video (.txt)",
        "still.png": "an image outside a frame folder (a frame folder needs 2+ images)"}
    assert main(["data", "inspect", str(tmp_path), "--json", "--no-shots"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert sorted(f["path"].rsplit("/", 1)[1] for f in rep["files"]) == sorted(readable)
    assert {f["path"].rsplit("/", 1)[1] for f in rep["unreadable_files"]} == {"corrupt.mpg", "random.dat"}
    assert all(f["reason"] for f in rep["unreadable_files"])
    assert rep["not_read"] == 3 and rep["clips"] == len(readable) + 2
    # every file in the folder is accounted for: read, unreadable with a reason, not read with a reason, or
    # the sidecar of a video
    listed = {f["path"] for f in rep["files"] + rep["unreadable_files"] + rep["not_read_files"]}
    assert {str(p) for p in tmp_path.iterdir()} - listed == {str(tmp_path / "program.txt")}

    assert main(["data", "inspect", str(tmp_path), "--no-shots"]) == 0
    text = capsys.readouterr().out
    assert f"{len(readable) + 2} clips, {len(readable)} readable, 2 unreadable" in text and "3 other files not read" in text
    assert "notes.md: not a video (.md)" in text and "program.mpg: 64x32 24 fps" in text


@pytest.mark.parametrize("rotation,corner", [(90, "bottom-left"), (-90, "top-right"), (180, "bottom-right")])
def test_rotation_metadata_gives_frames_as_players_show_them(tmp_path, rotation, corner):
    """Stored 64x32 with a white block top-left, plus a display matrix: out comes the turned picture."""
    a = np.zeros((32, 64, 3), np.uint8)
    a[:8, :16] = 255
    path = write_clip(tmp_path / "phone.mp4", "mp4", "libx264", 64, 32, frames=[a] * 12, rotation=rotation, fps=12)
    info = probe(path)
    assert info.rotation == rotation % 360
    assert (info.height, info.width) == ((64, 32) if rotation % 180 else (32, 64))
    frames, _ = decode_clip(path, clip_times(0, 2, 12))
    assert frames.shape[1:3] == (info.height, info.width)
    f = frames[0].mean(axis=2)
    H, W = f.shape
    quads = {"top-left": f[: H // 4, : W // 4], "top-right": f[: H // 4, -W // 4:],
             "bottom-left": f[-H // 4:, : W // 4], "bottom-right": f[-H // 4:, -W // 4:]}
    assert max(quads, key=lambda q: quads[q].mean()) == corner
    # resized and cropped to a size in display orientation
    ds = VideoFolderDataset(tmp_path, num_frames=2, fps=12, size=(16, 16), start="first", shots=False)
    assert ds[0][0].shape == (3, 2, 16, 16)


def test_variable_frame_rate_mkv_is_sampled_by_timestamps(tmp_path):
    rng = np.random.default_rng(1)
    ts = np.round(np.cumsum(np.r_[0, rng.choice([1 / 60, 1 / 30, 0.1], size=59)]), 3)
    write_clip(tmp_path / "vfr.mkv", "matroska", "libx264", 64, 32, frames=list(index_frames(60)), pts=ts, fps=30)
    ds = VideoFolderDataset(tmp_path, num_frames=10, fps=8, start=0.25, shots=False)
    video, meta = ds[0]
    targets = clip_times(0.25, 10, 8.0)
    expected = [int(np.searchsorted(ts, t + 1e-6, side="right") - 1) for t in targets]
    assert [read_index(f) for f in video.permute(1, 2, 3, 0).numpy()] == expected
    assert len(set(np.diff(ts[expected]).round(3))) > 1  # really irregular


def two_scenes(n_a=30, n_b=40, h=32, w=64):
    """A reddish gradient drifting right, then a greenish one drifting down: one cut, at frame n_a."""
    y, x = np.mgrid[0:h, 0:w]
    a = [np.stack([150 + 60 * np.sin((x + 2 * i) / 9), 40 + 0 * x, 40 + 20 * np.cos(y / 5)], -1) for i in range(n_a)]
    b = [np.stack([30 + 0 * x, 140 + 60 * np.sin((y + i) / 6), 60 + 30 * np.cos(x / 11)], -1) for i in range(n_b)]
    return [f.astype(np.uint8) for f in a + b]


@pytest.mark.parametrize("fps", [8, None])
def test_no_sampled_clip_spans_a_cut(tmp_path, fps):
    write_clip(tmp_path / "two.mp4", "mp4", "libx264", 64, 32, frames=two_scenes(), fps=24)
    assert detect_cuts(tmp_path / "two.mp4").frames == [30]
    ds = VideoFolderDataset(tmp_path, num_frames=8, fps=fps, seed=0)
    info = ds.items[0]["info"]
    assert info.cut_frames == (30,) and info.cuts == pytest.approx((30 / 24,))
    shots_seen = set()
    for epoch in range(60):
        ds.set_epoch(epoch)
        video, meta = ds[0]
        red, green = video[0].mean(dim=(1, 2)), video[1].mean(dim=(1, 2))
        scene = (green > red).tolist()
        assert len(set(scene)) == 1, f"clip at {meta['timestamps']} shows both scenes"
        assert all((t < info.cuts[0]) == (meta["shot"] == 0) for t in meta["timestamps"])
        assert meta["shot"] == int(scene[0])
        shots_seen.add(meta["shot"])
    assert shots_seen == {0, 1}
    # measured once: a second dataset reads the cuts from the folder's cache
    again = VideoFolderDataset(tmp_path, num_frames=8, fps=fps, seed=0)
    assert (again.probes.hits, again.probes.misses) == (1, 0) and again.items[0]["info"].cuts == info.cuts
    # a clip longer than either shot (but not than the file): the file is skipped, and says why
    with pytest.warns(UserWarning, match="no shot long enough"), pytest.raises(ValueError, match="no usable video"):
        VideoFolderDataset(tmp_path, num_frames=48, fps=24)


def test_a_changed_file_is_measured_again(tmp_path):
    path = write_clip(tmp_path / "v.mp4", "mp4", "libx264", 64, 32, frames=two_scenes(), fps=24)
    assert ProbeCache(tmp_path).probe(path).cut_frames == (30,)
    write_clip(path, "mp4", "libx264", 64, 32, frames=two_scenes(50, 20), fps=24)
    cache = ProbeCache(tmp_path)
    assert cache.probe(path).cut_frames == (50,) and cache.misses == 1


def _match(detected, labelled, tol=1):
    """(labelled cuts with a detection within tol frames, detections matching no label)."""
    hits = [c for c in labelled if any(abs(c - d) <= tol for d in detected)]
    extra = [d for d in detected if not any(abs(c - d) <= tol for c in labelled)]
    return hits, extra


@pytest.mark.parametrize("name,labelled", [("bikes.mp4", BIKES_CUTS), ("trailer_bbb.mp4", TRAILER_CUTS),
                                           ("bigbuckbunny.mp4", []), ("vtest.avi", []),
                                           ("carphone_pristine.mp4", [])])
def test_detected_cuts_of_real_footage_match_the_labelled_ones(footage, name, labelled):
    detected = detect_cuts(footage[name]).frames
    hits, extra = _match(detected, labelled)
    assert hits == labelled and not extra, f"{name}: detected {detected}, labelled {labelled}"
    assert len(detected) == len(labelled)


def test_clips_of_bikes_stay_inside_its_shots(footage, tmp_path):
    (tmp_path / "bikes.mp4").symlink_to(footage["bikes.mp4"])
    ds = VideoFolderDataset(tmp_path, num_frames=8, fps=8, size=(32, 64), seed=0)
    info = ds.items[0]["info"]
    assert info.cut_frames == tuple(BIKES_CUTS)
    bounds = [0.0, *info.cuts, info.duration]
    for epoch in range(40):
        ds.set_epoch(epoch)
        meta = ds.load(0)[1]
        a, b = bounds[meta["shot"]], bounds[meta["shot"] + 1]
        assert all(a - 1e-6 <= t < b for t in meta["timestamps"]), (meta["timestamps"], a, b)
