"""videoldm.evaluation.metrics: the trackers find the generators' objects where the ground truth says, and every
number moves the right way (jitter, shuffled frames, noise, blur)."""
import io
import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from videoldm.data.decode import decode_clip
from videoldm.data.io import mp4_bytes
from videoldm.data.synthetic import DrivingGenerator, ShapesGenerator
from videoldm.evaluation.metrics import as_videos, coherence_report, daytime_of, flicker, jerk, link_detections, psnr, shape_colours, sharpness, temporal_error, track_cars, track_shapes

T = 16


@pytest.fixture(scope="module")
def one_shape():
    gen = ShapesGenerator(frames=T, size=(64, 64), seed=3, max_shapes=1)
    return [gen.sample(i) for i in range(12)]


@pytest.fixture(scope="module")
def roads():
    gen = DrivingGenerator(frames=T, size=(64, 128), seed=1)
    return [gen.sample(i) for i in range(8)]


def _f(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) / 255.0


def _centroid_errors(clips, frames_of):
    found, errors = [], []
    for clip in clips:
        (track,), _ = track_shapes(_f(frames_of(clip)), shape_colours(clip.caption))
        gt = np.array(clip.ground_truth["centroids"])[:, 0]
        ok = ~np.isnan(track[:, 0])
        found.append(ok.mean())
        errors.extend(np.abs(track[ok] - gt[ok]).max(-1))
    return np.mean(found), np.array(errors)


def test_shapes_tracker_matches_ground_truth(one_shape):
    found, err = _centroid_errors(one_shape, lambda c: c.frames)
    assert found >= 0.99
    assert err.max() < 1.0 and err.mean() < 0.3, (err.max(), err.mean())


def test_shapes_tracker_survives_mp4_and_model_like_damage(one_shape):
    found, err = _centroid_errors(one_shape[:6], lambda c: decode_clip(io.BytesIO(mp4_bytes(c.frames, 8, crf=18)), num_frames=T)[0])
    assert found >= 0.99 and err.max() < 1.5 and err.mean() < 0.5, (found, err.max(), err.mean())
    rng = np.random.default_rng(0)

    def damaged(clip):  # blur, a colour cast and noise, as a small generative model might give
        x = ndimage.gaussian_filter(clip.frames.astype(np.float32), (0, 1.0, 1.0, 0))
        x = x + np.array([12.0, -8.0, 6.0]) + rng.normal(0, 6.0, x.shape)
        return np.clip(x, 0, 255).round().astype(np.uint8)

    found, err = _centroid_errors(one_shape[:6], damaged)
    assert found >= 0.99 and err.max() < 1.5, (found, err.max())


def test_shapes_two_shapes_and_descriptions():
    gen = ShapesGenerator(frames=T, size=(64, 64), seed=5, max_shapes=2)
    clips = [gen.sample(i) for i in range(8)]
    assert any(len(shape_colours(c.caption)) == 2 for c in clips)
    for c in clips:
        assert shape_colours(c.caption) == shape_colours(c.attributes)
    report = coherence_report([c.frames for c in clips], "shapes", [c.caption for c in clips])
    assert report["found_fraction"] >= 0.97  # occlusion by the other shape can hide one now and then
    assert report["background_flicker"] == 0.0 and report["flicker"] > 0.0  # the background never changes
    with pytest.raises(ValueError, match="colour"):
        shape_colours("a video of nothing")
    with pytest.raises(ValueError, match="caption or attributes"):
        coherence_report(clips[0].frames, "shapes")


def test_shape_of_tells_the_four_forms_apart_at_the_sizes_drawn():
    from videoldm.data.synthetic.shapes import SHAPES, shape_mask
    from videoldm.evaluation.metrics.shapes_tracking import shape_of

    gy, gx = np.mgrid[0:64, 0:64] + 0.5
    for r in (4.0, 6.5, 10.0):
        for name in SHAPES:
            assert shape_of(shape_mask(name, gx - 30.3, gy - 27.8, r)) == name, (name, r)
    assert shape_of(np.zeros((8, 8), bool)) is None


def test_caption_match_on_real_clips_and_wrong_captions():
    from videoldm.evaluation.metrics.shapes_tracking import asked_shapes, caption_match

    gen = ShapesGenerator(frames=T, size=(64, 64), seed=7, max_shapes=2)
    clips = [gen.sample(i) for i in range(10)]
    assert all(asked_shapes(c.caption) == asked_shapes(c.attributes) for c in clips)
    assert np.mean([caption_match(_f(c.frames), c.caption) for c in clips]) >= 0.9
    swap = {"circle": "square", "square": "circle", "triangle": "diamond", "diamond": "triangle"}
    for c in clips:
        (colour, shape), *rest = asked_shapes(c.caption)
        wrong_form = c.caption.replace(f"{colour} {shape} moving", f"{colour} {swap[shape]} moving", 1)
        assert not caption_match(_f(c.frames), wrong_form)
    report = coherence_report([c.frames for c in clips], "shapes", [c.caption for c in clips])
    assert report["caption_match"] >= 0.9


def test_asked_motions_from_captions_and_attributes():
    from videoldm.evaluation.metrics import asked_motions

    assert asked_motions("a red circle moving left, then right and an orange square moving up on a dark background") == [
        ("red", ["left", "right"]), ("orange", ["up"])]
    assert asked_motions("a red circle moving fast") == [("red", [])]  # named, no direction: direction_match NaN
    report = coherence_report(np.zeros((4, 16, 16, 3), np.uint8), "shapes", "a red circle moving fast")
    assert np.isnan(report["direction_match"]) and report["jump_fraction"] == 0.0
    clip = ShapesGenerator(frames=4, size=(32, 32), seed=0).sample(1)
    assert asked_motions(clip.caption) == asked_motions(clip.attributes) == [
        (s["color"], [s["direction"]]) for s in clip.attributes["shapes"]]


@pytest.mark.parametrize("frames", [T, 48])
def test_motion_metric_on_ground_truth_and_manipulated_clips(frames):
    # Calibration: ground truth (one and two shapes, train and held-out combinations) moves as captioned and
    # never jumps; played backwards it moves against its caption (still no jump); with its halves swapped
    # the join is a jump.
    clips = [ShapesGenerator(frames=frames, size=(64, 64), seed=11, split=split).sample(i)
             for split in ("train", "heldout") for i in range(10 if frames == T else 3)]
    videos, captions = np.stack([c.frames for c in clips]), [c.caption for c in clips]
    truth = coherence_report(videos, "shapes", captions)
    assert truth["direction_match"] == 1.0 and truth["jump_fraction"] == 0.0
    backwards = coherence_report(videos[:, ::-1], "shapes", captions)
    assert backwards["direction_match"] == 0.0 and backwards["jump_fraction"] == 0.0
    half = frames // 2
    swapped = coherence_report(np.concatenate([videos[:, half:], videos[:, :half]], 1), "shapes", captions)
    assert swapped["jump_fraction"] == 1.0


def test_direction_and_jumps_of_made_up_tracks():
    from videoldm.evaluation.metrics import direction_followed, jumps

    t = np.arange(16, dtype=np.float64)[:, None]
    left = np.concatenate([40 - 1.5 * t, 30 + 0 * t], 1)
    assert direction_followed(left, "left", 64) and not direction_followed(left, "right", 64)
    assert not direction_followed(left, "up", 64) and jumps(left, 64) == 0
    assert not direction_followed(left[:, ::-1], "left", 64)  # moving up (x stays 30)
    assert not direction_followed(left[[0, -1, 0]], "left", 64)  # back where it started: no net motion
    there_and_back = np.concatenate([left[:8], left[8:0:-1]])  # "moving left, then right": the first half
    assert direction_followed(there_and_back, "left", 64, legs=2) and not direction_followed(there_and_back, "left", 64)
    gappy = left.copy()
    gappy[3:13] = np.nan
    assert direction_followed(gappy, "left", 64) and not direction_followed(np.full((16, 2), np.nan), "left", 64)
    jumpy = left.copy()
    jumpy[9:] -= 12.0  # one step of 13.5 px among steps of 1.5
    assert jumps(jumpy, 64) == 1
    still = np.full((16, 2), 30.0) + np.random.default_rng(0).uniform(-0.5, 0.5, (16, 2))
    assert jumps(still, 64) == 0  # sub-pixel jitter of a shape that stands still is under the 4 px floor
    redrawn = np.random.default_rng(1).uniform(10, 54, (16, 2))  # a new place every frame (frame by frame)
    assert jumps(redrawn, 64) >= 8  # the median step is itself a jump: the 12 px cap counts them


def test_jerk_of_straight_and_jittered_tracks():
    t = np.arange(2000, dtype=np.float64)[:, None]
    line = np.concatenate([3.0 + 0.7 * t, 10.0 - 0.2 * t], 1)
    assert jerk([line]) < 1e-9
    for s in (0.5, 2.0):
        noisy = line + np.random.default_rng(1).normal(0, s, line.shape)
        # i.i.d. jitter s per coordinate: the second difference has sd sqrt(6) s, mean norm s sqrt(3 pi)
        assert jerk([noisy]) == pytest.approx(s * np.sqrt(3 * np.pi), rel=0.1)
    gappy = line.copy()
    gappy[5] = np.nan  # a missing frame removes the three triples through it, no more
    assert jerk([gappy[:10]]) < 1e-9 and np.isnan(jerk([line[:2]]))


def test_shuffled_frames_have_much_larger_jerk(one_shape, roads):
    perm = np.random.default_rng(0).permutation(T)
    shapes = np.stack([c.frames for c in one_shape])
    captions = [c.caption for c in one_shape]
    ordered = coherence_report(shapes, "shapes", captions)["jerk"]
    shuffled = coherence_report(shapes[:, perm], "shapes", captions)["jerk"]
    assert shuffled > 4 * ordered, (ordered, shuffled)
    cars = np.stack([c.frames for c in roads])
    ordered = coherence_report(cars, "driving")["jerk"]
    shuffled = coherence_report(cars[:, perm], "driving")["jerk"]
    assert shuffled > 3 * ordered, (ordered, shuffled)


def test_driving_finds_the_cars(roads):
    hits = frames_with_car = day_hit = day_cars = 0
    for c in roads:
        assert daytime_of(c.caption) == c.attributes["daytime"]
        _, counts, mask = track_cars(_f(c.frames), daytime_of(c.caption))
        big = [[b for b in fb if (b["box"][2] - b["box"][0]) * (b["box"][3] - b["box"][1]) >= 16]  # at least 4x4 pixels
               for fb in c.ground_truth["boxes"]]
        has = np.array([len(b) > 0 for b in big])
        frames_with_car += has.sum()
        hits += (has & (counts > 0)).sum()
        cars = c.extras["ids"] >= 0
        stars = np.zeros(cars.shape[1:], bool)
        stars[tuple(c.extras["stars"].T)] = c.extras["night"]  # single pixels, too small to be a detection
        assert (mask & ~cars & ~stars).sum() <= 0.002 * cars.sum()
        if c.attributes["daytime"] == "day":  # at night a dark car on the dark road shows only its lights
            day_hit, day_cars = day_hit + (mask & cars).sum(), day_cars + cars.sum()
    # A grey car over a lane line is partly "background" (the envelope spans road to paint there).
    assert day_hit >= 0.85 * day_cars, day_hit / day_cars
    assert hits >= 0.95 * frames_with_car
    report = coherence_report([c.frames for c in roads], "driving", [c.attributes for c in roads])
    for c, row in zip(roads, report["per_video"]):
        if c.attributes["daytime"] == "day":
            assert row["found_fraction"] >= 0.95
    # One night clip here has only a 4-pixel dark car: not visible, so not found.
    assert report["found_fraction"] >= 0.85 and report["cars_per_frame"] >= 1.0
    json.dumps(report)  # loggable as it is


def test_link_detections():
    dets = [np.array([[0.0, 0.0], [50.0, 0.0]]), np.array([[52.0, 1.0], [1.0, 1.0]]), np.array([[2.0, 2.0]])]
    tracks = link_detections(dets, max_step=5.0)
    assert len(tracks) == 2
    np.testing.assert_array_equal(tracks[0], [[0, 0], [1, 1], [2, 2]])
    assert np.isnan(tracks[1][2]).all() and tracks[1][1].tolist() == [52.0, 1.0]
    assert len(link_detections(dets, max_step=0.5)) == 5  # nothing close enough: every detection its own track


def test_flicker_temporal_error_psnr():
    rng = np.random.default_rng(0)
    static = np.repeat(rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8), 8, 0)
    noisy = np.clip(static + rng.normal(0, 10, static.shape), 0, 255).astype(np.uint8)
    assert flicker(static) == 0.0
    assert flicker(noisy) == pytest.approx(10 / 255 * 2 / np.sqrt(np.pi), rel=0.15)  # E|N(0, 2 s^2)|
    assert temporal_error(noisy, noisy) == 0.0
    offset = np.clip(static.astype(int) + 5, 0, 255).astype(np.uint8)
    assert temporal_error(offset, static) == 0.0  # an error fixed in time does not flicker
    assert temporal_error(noisy, static) == pytest.approx(flicker(noisy))
    assert psnr(static, static) == float("inf")
    one_off = np.where(static < 255, static + 1, static - 1).astype(np.uint8)
    assert psnr(one_off, static) == pytest.approx(20 * np.log10(255), abs=1e-4)


def test_sharpness_drops_with_blur(one_shape):
    x = np.stack([c.frames for c in one_shape[:4]])
    blurred = ndimage.gaussian_filter(x.astype(np.float32), (0, 0, 1.5, 1.5, 0)).round().astype(np.uint8)
    assert sharpness(blurred) < 0.5 * sharpness(x)
    assert sharpness(np.zeros((4, 16, 16, 3), np.uint8)) == 0.0


def test_inputs_torch_and_numpy_agree(one_shape):
    x = np.stack([c.frames for c in one_shape[:3]])
    t = torch.from_numpy(x).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
    np.testing.assert_allclose(as_videos(t), as_videos(x), atol=1e-6)
    np.testing.assert_allclose(as_videos(t[0]), as_videos(x[0]), atol=1e-6)
    captions = [c.caption for c in one_shape[:3]]
    a, b = coherence_report(t, "shapes", captions), coherence_report(x, "shapes", captions)
    assert a["jerk"] == pytest.approx(b["jerk"]) and a["found_fraction"] == b["found_fraction"]
    report = coherence_report(t, "shapes", captions, reference=x)
    assert report["psnr"] > 60 and report["temporal_error"] < 1e-6
    with pytest.raises(ValueError, match="uint8"):
        as_videos(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_videos(x.astype(np.float32))
    with pytest.raises(ValueError, match="3 channels"):
        as_videos(torch.zeros(1, 4, 2, 8, 8))
    with pytest.raises(ValueError, match="kind"):
        coherence_report(x, "camera")


def test_footage_is_measured_frame_by_frame_with_nothing_to_track(one_shape):
    """Real footage (`kind="footage"`): no tracker, so the tracking numbers are NaN; flicker and sharpness are
    those of the same frames under any kind, and a frozen clip flickers less than a shuffled one."""
    from videoldm.evaluation.metrics import coherence_report

    clips = np.stack([c.frames for c in one_shape[:3]])
    report = coherence_report(clips, "footage")
    assert np.isnan(report["found_fraction"]) and np.isnan(report["jerk"]) and "background_flicker" not in report
    shapes = coherence_report(clips, "shapes", [c.caption for c in one_shape[:3]])
    assert report["flicker"] == shapes["flicker"] and report["sharpness"] == shapes["sharpness"]
    frozen = np.repeat(clips[:, :1], clips.shape[1], 1)
    shuffled = clips[:, np.random.default_rng(0).permutation(clips.shape[1])]
    assert coherence_report(frozen, "footage")["flicker"] == 0 < coherence_report(shuffled, "footage")["flicker"]
