"""`videoldm data prepare`: real footage -> one-shot pieces per split, resampled by time, read by the dataset."""
import json

import numpy as np
import pytest

from videoldm.cli import main
from videoldm.data import VideoFolderDataset, probe
from videoldm.data.decode import decode_clip
from videoldm.data.io import read_video, write_mp4
from videoldm.data.pieces import piece_times, plan_pieces
from videoldm.data.shots import detect_cuts

SOURCE_FPS = 24


def gray_level(i: int) -> int:
    """Scene A's frame i is flat gray at this level: a piece's frame says which source frame it shows."""
    return 40 + 3 * i


@pytest.fixture(scope="module")
def two_scenes(tmp_path_factory):
    """4 s at 24 fps, 96x160: 48 flat gray frames (level = frame index), then a cut to 48 red frames with a
    moving bright bar. Cut at 2.0 s."""
    frames = np.zeros((96, 96, 160, 3), np.uint8)
    for i in range(48):
        frames[i] = gray_level(i)
    for i in range(48, 96):
        frames[i] = (200, 40, 30)
        x = 10 + 2 * (i - 48)
        frames[i, 30:60, x:x + 20] = (250, 230, 60)
    path = tmp_path_factory.mktemp("src") / "scenes.mp4"
    write_mp4(path, frames, SOURCE_FPS, crf=0, pix_fmt="yuv444p")
    return path


def test_plan_cuts_shots_at_the_split_point_and_drops_short_ones():
    kept, dropped = plan_pieces(10.0, [2.0, 8.5, 8.75], fps=8, split_at=0.9, min_frames=4)
    assert [(p.split, p.shot, p.start, p.end, p.num_frames) for p in kept] == [
        ("train", 0, 0.0, 2.0, 16), ("train", 1, 2.0, 8.5, 52), ("heldout", 3, 9.0, 10.0, 8)]
    assert [(p.split, p.shot, p.num_frames) for p in dropped] == [("train", 2, 2), ("train", 3, 2)]
    # the last target stays before the cut, even when the span is a whole number of frames
    assert piece_times(2.0, 4.0, 8)[-1] == pytest.approx(3.875) and len(piece_times(2.0, 4.0, 8)) == 16
    with pytest.raises(ValueError, match="split_at"):
        plan_pieces(10.0, [], fps=8, split_at=0)


def test_prepare_writes_one_shot_pieces_per_split_resampled_by_time(two_scenes, tmp_path, capsys):
    out = tmp_path / "prepared"
    assert main(["data", "prepare", str(two_scenes), "--size", "32x48", "--fps", "8", "--split-at", "0.75",
                 "--min-frames", "4", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "train: 2 pieces, 24 frames" in printed and "heldout: 1 pieces, 8 frames" in printed
    train = [json.loads(line) for line in (out / "train" / "manifest.jsonl").read_text().splitlines()]
    heldout = [json.loads(line) for line in (out / "heldout" / "manifest.jsonl").read_text().splitlines()]
    # shot 0 = [0, 2) s; shot 1 straddles the split at 3 s: [2, 3) trains, [3, 4) is held out
    assert [(r["path"], r["frames"], r["ground_truth"]["start"], r["ground_truth"]["end"]) for r in train] == [
        ("scenes_shot0000.mp4", 16, 0.0, 2.0), ("scenes_shot0001.mp4", 8, 2.0, 3.0)]
    assert [(r["path"], r["frames"], r["ground_truth"]["start"]) for r in heldout] == [("scenes_shot0001.mp4", 8, 3.0)]
    assert all(r["caption"] == "" for r in train + heldout)

    gray = read_video(out / "train" / "scenes_shot0000.mp4")
    assert gray.shape == (16, 32, 48, 3)
    # frame k at 8 fps is source frame 3k (by time): its gray level, within compression and scaling error
    levels = gray.reshape(16, -1).mean(1)
    assert np.abs(levels - [gray_level(3 * k) for k in range(16)]).max() < 2.0
    red = read_video(out / "train" / "scenes_shot0001.mp4")
    assert (red[..., 0].mean((1, 2)) > 150).all() and (red[..., 2].mean((1, 2)) < 90).all()  # no gray frame leaked in
    for piece in [out / "train" / "scenes_shot0000.mp4", out / "train" / "scenes_shot0001.mp4",
                  out / "heldout" / "scenes_shot0001.mp4"]:
        info = probe(piece)
        assert (info.height, info.width, round(info.fps)) == (32, 48, 8)
        assert detect_cuts(piece).frames == []  # no piece spans a cut

    # 4:4:4 at crf 10: the source, resized the same way, comes back within a few levels
    want, _ = decode_clip(two_scenes, [2.0 + k / 8 for k in range(8)], size=(32, 48))
    assert np.abs(red.astype(int) - want.astype(int)).mean() < 2.0

    ds = VideoFolderDataset(out / "train", num_frames=8, fps=8, seed=0)
    assert len(ds) == 2 and not ds.skipped and ds[0][0].shape == (3, 8, 32, 48)
    report = json.loads((out / "prepare.json").read_text())
    assert report["sources"][0]["shots"] == 2 and report["splits"]["heldout"]["pieces"] == 1


def test_prepare_refuses_a_full_folder_and_counts_dropped_shots(two_scenes, tmp_path, capsys):
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "keep.txt").write_text("something")
    assert main(["data", "prepare", str(two_scenes), "--size", "32x48", "--fps", "8", "--out", str(out),
                 "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err and not (out / "train").exists()
    # 16-frame clips: the 8-frame pieces of shot 1 on either side of the split (at 3 s) are too short
    assert main(["data", "prepare", str(two_scenes), "--size", "32x48", "--fps", "8", "--split-at", "0.75",
                 "--caption", "big buck bunny", "--out", str(out), "--overwrite", "--quiet"]) == 0
    assert VideoFolderDataset(out / "train", num_frames=16, fps=8)[0][1]["caption"] == "big buck bunny"
    report = json.loads((out / "prepare.json").read_text())
    assert report["splits"]["train"]["pieces"] == 1 and report["splits"]["train"]["dropped_pieces"] == 1
    assert report["splits"]["heldout"] == {"pieces": 0, "frames": 0, "seconds": 0.0, "dropped_pieces": 1,
                                           "dropped_seconds": 1.0}


def test_unreadable_source_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    assert main(["data", "prepare", str(bad), "--size", "32x48", "--fps", "8", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "broken.mp4" in err and "cannot" in err
    assert main(["data", "prepare", str(tmp_path / "missing.mp4"), "--size", "32x48", "--fps", "8",
                 "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err


def test_help_says_how_frames_are_cropped(capsys):
    with pytest.raises(SystemExit):
        main(["data", "prepare", "--help"])
    text = capsys.readouterr().out
    assert "center-cropped" in text and "64x114" in text and "--split-at" in text


def test_prepare_a_cut_of_the_bunny_trailer(footage, tmp_path):
    """Real footage: 3 s of the trailer around its hard cut at frame 593 (24.7 s), at 64x112 and 8 fps."""
    times = [23.0 + k / 24 for k in range(72)]
    frames, _ = decode_clip(footage["trailer_bbb.mp4"], times, size=(180, 320))
    src = tmp_path / "trailer_cut.mp4"
    write_mp4(src, frames, 24, crf=12)
    out = tmp_path / "bunny"
    assert main(["data", "prepare", str(src), "--size", "64x112", "--fps", "8", "--split-at", "1",
                 "--min-frames", "4", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "prepare.json").read_text())
    cut = report["sources"][0]["cuts"]
    assert len(cut) == 1 and abs(cut[0] - (593 / 24 - 23.0)) <= 1.5 / 24
    assert report["splits"]["train"]["pieces"] == 2 and report["splits"]["heldout"]["pieces"] == 0
    for row in (out / "train" / "manifest.jsonl").read_text().splitlines():
        piece = out / "train" / json.loads(row)["path"]
        assert probe(piece).height == 64 and detect_cuts(piece).frames == []
