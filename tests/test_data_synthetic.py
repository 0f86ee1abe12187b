"""Procedural datasets: determinism, ground truth against the rendered pixels, and the mp4 round trip."""
import re

import numpy as np
import pytest

from data_fixtures import psnr
from videoldm.data import VideoFolderDataset
from videoldm.data.synthetic import CameraGenerator, DrivingGenerator, ShapesGenerator, make_generator, write_dataset
from videoldm.data.synthetic.shapes import COLORS, HELD_OUT


@pytest.mark.parametrize("kind", ["driving", "shapes", "camera"])
def test_deterministic_from_seed(kind):
    a = make_generator(kind, frames=4, size=(32, 64), seed=3).sample(5)
    b = make_generator(kind, frames=4, size=(32, 64), seed=3).sample(5)
    c = make_generator(kind, frames=4, size=(32, 64), seed=4).sample(5)
    assert np.array_equal(a.frames, b.frames) and a.ground_truth == b.ground_truth and a.caption == b.caption
    assert not np.array_equal(a.frames, c.frames)
    assert a.frames.shape == (4, 32, 64, 3) and a.frames.dtype == np.uint8


def test_driving_boxes_contain_the_cars_pixels():
    for daytime in ("day", "night"):
        gen = DrivingGenerator(frames=6, size=(64, 128), fps=8, seed=1, daytime=daytime, crowdedness="high")
        clip = gen.sample(0)
        assert clip.attributes["daytime"] == daytime and clip.attributes["crowdedness"] == "high"
        assert 6 <= clip.attributes["num_cars"] <= 9 and 12 <= clip.attributes["ego_speed"] <= 33
        # The same scene without cars: every pixel that differs is a car pixel and must be in its box.
        empty = gen._background(clip.extras["night"], 0.0, clip.extras["stars"])
        ids = clip.extras["ids"]
        n_boxes = 0
        for f, boxes in enumerate(clip.ground_truth["boxes"]):
            covered = np.zeros(gen.size, bool)
            for b in boxes:
                x0, y0, x1, y1 = b["box"]
                assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 64
                covered[y0:y1, x0:x1] = True
                ys, xs = np.nonzero(ids[f] == b["id"])
                if len(xs):  # visible part of the car lies inside its box
                    assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
                n_boxes += 1
            if f == 0:
                changed = np.abs(clip.frames[0].astype(int) - np.clip(empty, 0, 255).astype(np.uint8)).max(-1) > 0
                assert changed.any() and not (changed & ~covered).any()
        assert n_boxes >= 6
            # Perspective: box height is focal * car height / distance (to the pixel).
        for boxes in clip.ground_truth["boxes"]:
            for b in boxes:
                expected = gen.focal * 1.5 / b["distance"]
                assert abs((b["box"][3] - b["box"][1]) - expected) <= 1.5


def test_driving_markings_stream_at_ego_speed():
    # 12 m of travel (one dash period) brings the road back to the same picture.
    gen = DrivingGenerator(frames=2, size=(64, 128), fps=8, seed=0)
    a = gen._background(False, 0.0, np.zeros((0, 2), int))
    b = gen._background(False, 12.0, np.zeros((0, 2), int))
    c = gen._background(False, 5.0, np.zeros((0, 2), int))
    assert np.abs(a - b).max() < 1e-2 and np.abs(a - c).max() > 50


def test_shapes_centroids_match_pixel_mass_and_captions():
    gen = ShapesGenerator(frames=8, size=(64, 64), seed=0, max_shapes=2)
    checked = 0
    for i in range(10):
        clip = gen.sample(i)
        shapes = clip.attributes["shapes"]
        article = "an" if shapes[0]["color"][0] in "aeiou" else "a"
        assert clip.caption.startswith(f"{article} {shapes[0]['color']} {shapes[0]['shape']} moving "
                                       f"{shapes[0]['direction']}")
        assert " a orange" not in f" {clip.caption}"
        assert clip.caption.endswith(f"on a {clip.attributes['background']} background")
        cent = np.array(clip.ground_truth["centroids"])
        assert cent.shape == (8, len(shapes), 2)
        for f in range(8):
            for k, s in enumerate(shapes):  # two shapes never overlap: every one is whole in every frame
                ys, xs = np.nonzero(np.all(clip.frames[f] == COLORS[s["color"]], -1))
                assert np.hypot(xs.mean() + 0.5 - cent[f, k, 0], ys.mean() + 0.5 - cent[f, k, 1]) < 0.75
                checked += 1
    assert checked > 100


def _caption_motions(caption: str) -> list[list[str]]:
    """Per shape, the directions its caption names in order ("moving left, then right")."""
    way = "(?:left|right|up|down)"
    return [m.split(", then ") for m in re.findall(rf"moving ({way}(?:, then {way})*)", caption)]


@pytest.mark.parametrize("frames,size", [(16, (64, 64)), (48, (64, 64)), (5, (16, 16)), (80, (16, 16))])
def test_shapes_move_as_their_captions_say(frames, size):
    # Every frame-to-frame step of every ground-truth centroid goes the way the caption says, read from the
    # caption alone: 16 frames (the recipes'), 48 (long clips) and tiny ones cross without bouncing; 80 frames
    # at 16x16 are too long to cross at MIN_SPEED, so the shape bounces and the caption names each leg.
    from videoldm.data.synthetic.shapes import DIRECTIONS, MIN_SPEED, OPPOSITE

    gen = ShapesGenerator(frames=frames, size=size, seed=2)
    legs_seen = set()
    for i in range(60 if frames <= 16 else 20):
        clip = gen.sample(i)
        motions = _caption_motions(clip.caption)
        cent = np.array(clip.ground_truth["centroids"])
        assert len(motions) == cent.shape[1] == clip.attributes["num_shapes"]
        for k, named in enumerate(motions):
            u = np.array(DIRECTIONS[named[0]], float)
            step = np.diff(cent[:, k], axis=0)
            assert np.all(step @ u[::-1] == 0)  # nothing across the named axis
            along = np.sign(np.round(step @ u, 6))
            legs = [named[0]]  # runs of steps the same way, as directions (a bounce step may be 0)
            for a, b in zip(along, along[1:]):
                if a != b and b != 0:
                    legs.append(named[0] if b > 0 else OPPOSITE[named[0]])
            assert legs == named and along[0] > 0, (clip.caption, along)
            assert np.abs(step @ u).min() >= MIN_SPEED * min(size) * (1 - 1e-6) or len(named) > 1
            legs_seen.add(len(named))
    assert (max(legs_seen) > 1) == (frames == 80)


def test_shapes_heldout_split():
    train = [ShapesGenerator(frames=2, seed=0).sample(i).attributes["shapes"] for i in range(60)]
    combos = {(s["color"], s["shape"], s["direction"]) for ss in train for s in ss}
    assert not combos & HELD_OUT and len(combos) > 30
    held = [ShapesGenerator(frames=2, seed=0, split="heldout").sample(i).attributes["shapes"][0] for i in range(10)]
    assert all((s["color"], s["shape"], s["direction"]) in HELD_OUT for s in held)


def test_camera_heldout_split_shows_photos_train_never_shows():
    from videoldm.data.synthetic.camera import HELDOUT_PHOTOS

    train = {CameraGenerator(frames=2, size=(16, 32), seed=0, split="train").sample(i).attributes["photo"]
             for i in range(30)}
    held = {CameraGenerator(frames=2, size=(16, 32), seed=0, split="heldout").sample(i).attributes["photo"]
            for i in range(5)}
    assert len(train) > 2 and not train & set(HELDOUT_PHOTOS) and held == set(HELDOUT_PHOTOS)
    with pytest.raises(ValueError, match="split"):
        CameraGenerator(split="test")


def test_camera_frames_are_the_crop_windows():
    gen = CameraGenerator(frames=6, size=(48, 96), seed=2)
    for i in range(4):
        clip = gen.sample(i)
        boxes = np.array(clip.ground_truth["boxes"])
        ph, pw = clip.ground_truth["photo_size"]
        assert (boxes[:, 0] >= -1e-3).all() and (boxes[:, 2] <= pw + 1e-3).all()
        assert (boxes[:, 1] >= -1e-3).all() and (boxes[:, 3] <= ph + 1e-3).all()
        np.testing.assert_allclose((boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1]), 2.0, rtol=1e-3)
        assert np.abs(np.diff(boxes, axis=0)).max() > 1  # the camera moves
        # Independent check: PIL's resampling of the same window gives the same picture.
        from PIL import Image
        from videoldm.data.synthetic.camera import load_photo
        photo = Image.fromarray(load_photo(clip.attributes["photo"]).astype(np.uint8))
        ref = np.asarray(photo.resize((96, 48), Image.Resampling.BILINEAR, box=tuple(boxes[-1]), reducing_gap=None))
        assert psnr(clip.frames[-1], ref) > 24


@pytest.mark.parametrize("kind,src_fps,crf,min_db", [
    ("driving", 24, "dataset default", 35), ("shapes", 25, "dataset default", 35),
    ("camera", 30, "dataset default", 35), ("driving", 24, None, 35), ("shapes", 30, None, 35),
])
def test_round_trip_mp4_psnr_and_fps(tmp_path, kind, src_fps, crf, min_db):
    # At the procedural datasets' default size (128x256). The dataset writer's default (crf 18) gives
    # >= 35 dB for every kind; libx264's own default (crf=None: 23) with 4:2:0 chroma gives 35.5-39 dB
    # for driving/shapes (only 33-34 dB at 64x128) but 34.5-36.8 dB on camera's real photographs.
    gen = make_generator(kind, frames=44, size=(128, 256), fps=src_fps, seed=0)
    write_dataset(gen, tmp_path, num=2, **({} if crf == "dataset default" else {"crf": crf}))
    clips = [gen.sample(i) for i in range(2)]
    # Native rate, no resize: every frame back at >= 35 dB, with its caption, attributes and truth.
    ds = VideoFolderDataset(tmp_path, num_frames=44, fps=None, start="first")
    assert len(ds) == 2 and not ds.skipped
    for j in range(2):
        video, meta = ds[j]
        got = ((video.permute(1, 2, 3, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        assert psnr(got, clips[j].frames) >= min_db, (kind, psnr(got, clips[j].frames))
        assert meta["caption"] == clips[j].caption and meta["attributes"] == clips[j].attributes
        assert ds.record(j)["extra"]["ground_truth"] == clips[j].ground_truth
    # Resampled to 8 fps: frame k is the generator's frame floor((start + k/8) * fps).
    ds = VideoFolderDataset(tmp_path, num_frames=10, fps=8, start=0.25)
    video, meta = ds[0]
    idx = [int(np.floor((0.25 + k / 8) * src_fps + 1e-6)) for k in range(10)]
    assert meta["frame_indices"] == idx
    np.testing.assert_allclose(meta["timestamps"], np.array(idx) / src_fps, atol=1e-6)
    got = ((video.permute(1, 2, 3, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    assert psnr(got, clips[0].frames[idx]) >= min_db


def test_checker_style_changes_only_the_background():
    plain = ShapesGenerator(frames=3, size=(32, 32), seed=4).sample(0)
    checker = ShapesGenerator(frames=3, size=(32, 32), seed=4, style="checker").sample(0)
    assert plain.caption == checker.caption and plain.ground_truth == checker.ground_truth
    on_shape = checker.extras["ids"] >= 0
    assert (plain.frames[on_shape] == checker.frames[on_shape]).all()
    assert (plain.frames[~on_shape] != checker.frames[~on_shape]).any()
    with pytest.raises(ValueError, match="style"):
        ShapesGenerator(style="stripes")


def test_an_interrupted_dataset_resumes_with_the_clips_already_written(tmp_path):
    """The rows of finished clips go to a journal: the same call again keeps those clips (not re-encoded)
    and its manifest equals an uninterrupted run's; other settings start over."""
    from videoldm.data.io import read_jsonl
    from videoldm.data.synthetic.base import JOURNAL

    gen = make_generator("shapes", frames=3, size=(16, 16), fps=8, seed=0)

    def stop_after(k):
        def progress(n, total, elapsed):
            if n == k:
                raise KeyboardInterrupt
        return progress

    with pytest.raises(KeyboardInterrupt):
        write_dataset(gen, tmp_path / "cut", num=5, gif_previews=1, progress=stop_after(3))
    assert not (tmp_path / "cut" / "manifest.jsonl").exists()
    assert [r["index"] for r in read_jsonl(tmp_path / "cut" / JOURNAL)[1:]] == [0, 1, 2]
    first = (tmp_path / "cut" / "shapes_00000.mp4").stat().st_mtime_ns
    journal = (tmp_path / "cut" / JOURNAL).read_text()
    (tmp_path / "cut" / JOURNAL).write_text(journal[:-20])  # killed mid-row: the rows before it still count
    (tmp_path / "cut" / "previews" / "shapes_00000.gif").unlink()  # a missing preview is made again
    said = []
    write_dataset(gen, tmp_path / "cut", num=5, gif_previews=1, log=said.append)
    assert said == ["resuming: 2 of 5 clips were written by an interrupted run with these settings"]
    assert (tmp_path / "cut" / "shapes_00000.mp4").stat().st_mtime_ns == first
    assert (tmp_path / "cut" / "previews" / "shapes_00000.gif").is_file()
    assert not (tmp_path / "cut" / JOURNAL).exists()
    write_dataset(gen, tmp_path / "whole", num=5, gif_previews=1)
    whole = (tmp_path / "whole" / "manifest.jsonl").read_bytes()
    assert (tmp_path / "cut" / "manifest.jsonl").read_bytes() == whole
    for i in range(5):
        name = f"shapes_{i:05d}.mp4"
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()

    other = make_generator("shapes", frames=3, size=(16, 16), fps=8, seed=0, style="checker")
    with pytest.raises(KeyboardInterrupt):
        write_dataset(gen, tmp_path / "changed", num=4, progress=stop_after(2))
    said.clear()
    write_dataset(other, tmp_path / "changed", num=4, log=said.append)  # another style: every clip anew
    assert said == []
    assert [r["caption"] for r in read_jsonl(tmp_path / "changed" / "manifest.jsonl")] == \
        [other.sample(i).caption for i in range(4)]
    assert (tmp_path / "changed" / "shapes_00000.mp4").read_bytes() != (tmp_path / "whole" / "shapes_00000.mp4").read_bytes()
