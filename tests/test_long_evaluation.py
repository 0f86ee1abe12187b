"""Long-video measurements: context continuation, interpolation vs linear blending, rollout joins."""
import json

import numpy as np
import pytest
import torch

from conftest import run_stage as run

PROMPT = "a red circle moving left on a dark background"


def test_linear_blend_reproduces_a_linear_ramp_and_keeps_keyframes():
    from videoldm.evaluation.long_videos import linear_blend

    t = torch.arange(9, dtype=torch.float32).view(1, 9, 1, 1, 1).expand(2, 9, 3, 4, 4) / 8
    blended = linear_blend(t[:, ::4], 4)
    assert blended.shape == t.shape and torch.allclose(blended, t)
    step = torch.zeros(1, 5, 3, 2, 2)
    step[:, 4:] = 1  # keyframes 0 and 1: the middle frames are their mix, not either one
    assert torch.allclose(linear_blend(step[:, ::4], 4)[0, :, 0, 0, 0], torch.tensor([0, .25, .5, .75, 1]))


def test_rollout_joins_finds_a_jump_at_the_boundary():
    from videoldm.evaluation.long_videos import rollout_joins

    rng = np.random.default_rng(0)
    smooth = np.clip(np.linspace(40, 200, 24)[:, None, None, None] + rng.normal(0, 1, (24, 16, 32, 3)), 0, 255)
    smooth = smooth.astype(np.uint8)
    even = rollout_joins(smooth, [0, 8, 16])
    assert 0.7 < even["change_ratio"] < 1.4
    jumped = smooth.copy()
    jumped[8:] = np.clip(jumped[8:].astype(int) + 40, 0, 255).astype(np.uint8)  # a jump entering clip 2
    assert rollout_joins(jumped, [0, 8, 16])["change_ratio"] > 3


def test_rollout_joins_track_the_shapes_a_caption_names():
    """A red circle moving at constant speed: no acceleration anywhere; one that jumps where clip 2 starts:
    its acceleration at the join stands out."""
    from videoldm.data.synthetic.shapes import BACKGROUNDS, COLORS, shape_mask
    from videoldm.evaluation.long_videos import rollout_joins

    def video(jump: float):
        ys, xs = np.mgrid[0:32, 0:48] + 0.5
        frames = np.empty((24, 32, 48, 3), np.uint8)
        for t in range(24):
            x = 8 + 1.0 * t + (jump if t >= 8 else 0.0)
            frames[t] = np.where(shape_mask("circle", xs - x, ys - 16, 4)[..., None], COLORS["red"], BACKGROUNDS["dark"])
        return frames

    smooth = rollout_joins(video(0.0), [0, 8, 16], PROMPT)
    assert smooth["tracked"] == "shapes" and smooth["objects_per_frame"] == 1.0
    assert smooth["track_samples_at_joins"] > 0 and smooth["track_acceleration_at_joins"] < 0.2
    jumped = rollout_joins(video(6.0), [0, 8, 16], PROMPT)
    assert jumped["track_acceleration_at_joins"] > 2.0 and jumped["track_acceleration_ratio"] > 5
    for prompt in ({"daytime": "night"}, "driving on a highway at night", None):  # names no shape: cars
        assert rollout_joins(video(0.0), [0, 8, 16], prompt)["tracked"] == "cars"
    footage = rollout_joins(video(6.0), [0, 8, 16], PROMPT, track="none")  # real footage: frame change only
    assert footage["tracked"] == "nothing" and np.isnan(footage["track_acceleration_ratio"])
    assert footage["change_ratio"] == jumped["change_ratio"]
    with pytest.raises(ValueError, match="track"):
        rollout_joins(video(0.0), [0, 8, 16], PROMPT, track="cars")


def test_pipeline_context_starts_the_clip_with_the_given_latents(chain):
    from videoldm.inference.pipeline import VideoLDMPipeline

    tmp, data, image, temporal = chain
    final = run(tmp, "pred-eval", "prediction", data, {"image_model": str(image)}, max_steps=1).train()
    pipe = VideoLDMPipeline.from_pretrained(final)
    frames = torch.rand(1, 5, 3, 16, 16) * 2 - 1
    z = pipe.encode(frames)
    assert z.shape == (1, 4, 5, 8, 8)
    out = pipe([PROMPT], num_frames=5, num_inference_steps=2, progress=False, output_type="latent", context=z[:, :, :2]).frames
    assert torch.equal(out[:, :, :2], z[:, :, :2])
    free = pipe([PROMPT], num_frames=5, num_inference_steps=2, progress=False, output_type="latent").frames
    assert not torch.allclose(out[:, :, 2:], free[:, :, 2:])
    with pytest.raises(ValueError, match="context frames for a clip"):
        pipe([PROMPT], num_frames=5, num_inference_steps=2, progress=False, context=z)
    with pytest.raises(ValueError, match="context must be latents"):
        pipe([PROMPT], num_frames=5, num_inference_steps=2, progress=False, context=z[:, :3, :2])
    with pytest.raises(ValueError, match="prediction model"):
        VideoLDMPipeline.from_pretrained(temporal)([PROMPT], num_frames=5, context=z[:, :, :2])


def test_prediction_and_interpolation_evaluations_report_both_sides(chain, tmp_path, capsys):
    from videoldm.cli import main

    tmp, data, image, temporal = chain
    pred = run(tmp, "pred-eval2", "prediction", data, {"image_model": str(image)}, max_steps=1).train()
    interp = run(tmp, "interp-eval", "interpolation", data, {"image_model": str(image), "keyframe_every": 2},
                 max_steps=1).train()
    common = ["--data", data["path"], "--num", "2", "--frames", "5", "--steps", "2"]
    assert main(["evaluate-prediction", str(pred), *common, "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "prediction.json").read_text())
    assert summary["real_change"] > 0
    for name in ("context_given", "context_none"):
        assert summary[name]["ratio"] == pytest.approx(summary[name]["continuation_error"] / summary["real_change"])
    assert (tmp_path / "prediction.gif").is_file()
    for bad in ("-1", "0", "5"):  # -1 gave all frames but the last as context, silently
        assert main(["evaluate-prediction", str(pred), *common, "--context", bad]) == 2
        assert "context_frames must be in 1..4 for clips of 5 frames" in capsys.readouterr().err
    assert main(["evaluate-interpolation", str(interp), *common, "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "interpolation.json").read_text())
    assert set(summary) >= {"model", "blend_true_keyframes", "blend_decoded_keyframes", "autoencoder"}
    assert all(np.isfinite(summary[k]["psnr"]) for k in ("model", "blend_true_keyframes", "autoencoder"))
    assert main(["evaluate-interpolation", str(interp), *common[:4], "--frames", "4", "--steps", "2"]) == 2


def test_rollout_sidecar_gives_the_clip_boundaries_to_evaluate_rollout(chain, tmp_path):
    from videoldm.cli import main

    tmp, data, image, temporal = chain
    pred = run(tmp, "pred-eval3", "prediction", data, {"image_model": str(image)}, max_steps=1).train()
    out = tmp_path / "r.mp4"
    assert main(["rollout", str(pred), "--prompt", PROMPT, "--clips", "3", "--frames", "5", "--steps", "2",
                 "--out", str(out)]) == 0
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["clip_starts"] == [0, 5, 8] and info["frames"] == 11
    assert main(["evaluate-rollout", str(out)]) == 0
    assert main(["evaluate-rollout", str(tmp_path / "missing.mp4")]) == 2


def test_stack_keyframes_interpolation_decoder_keeps_the_frame_rate(chain, tmp_path):
    from PIL import Image

    from videoldm.inference.pipeline import VideoLDMPipeline
    from videoldm.inference.rollout import rollout
    from videoldm.inference.stack import VideoLDMStack

    tmp, data, image, temporal = chain
    pred = run(tmp, "pred-stack", "prediction", data, {"image_model": str(image)}, max_steps=1).train()
    interp = run(tmp, "interp-stack", "interpolation", data, {"image_model": str(image), "keyframe_every": 2},
                 max_steps=1).train()
    stack = VideoLDMStack.from_pretrained(pred, interp)
    kw = dict(num_frames=5, num_inference_steps=2, seed=3, progress=False)
    keys = stack(PROMPT, num_clips=3, interpolations=0, output_type="latent", **kw)
    assert keys.frames.shape[2] == 5 + 2 * 3 and keys.fps == (stack.keyframes.fps or 8.0)
    # the same keyframes as a streamed rollout with the same seed
    rollout(stack.keyframes, PROMPT, 3, tmp_path / "r.mp4", num_frames=5, num_inference_steps=2, seed=3,
            guidance_scale=3.0, state_dir=tmp_path / "state", progress=False)
    from safetensors.torch import load_file
    clips = [load_file(tmp_path / "state" / f"clip-{k:06d}.safetensors")["latents"] for k in range(3)]
    assert torch.equal(keys.frames, torch.cat([clips[0]] + [c[:, :, 2:] for c in clips[1:]], dim=2))
    twice = stack(PROMPT, num_clips=1, interpolations=2, output_type="pil", **kw)
    assert len(twice.frames[0]) == (5 - 1) * 4 + 1 and twice.fps == 4 * keys.fps
    assert isinstance(twice.frames[0][0], Image.Image)
    assert twice.export(tmp_path / "x.gif").is_file() and twice.export(tmp_path / "x.mp4").is_file()
    with pytest.raises(ValueError, match="mp4 or .gif"):
        twice.export(tmp_path / "x.avi")
    with pytest.raises(ValueError, match="prediction model"):
        VideoLDMStack(VideoLDMPipeline.from_pretrained(temporal))(PROMPT, num_clips=2, interpolations=0, **kw)
    with pytest.raises(ValueError, match="interpolation model"):
        VideoLDMStack(stack.keyframes)(PROMPT, interpolations=1, **kw)
    with pytest.raises(ValueError, match="num_clips must be >= 1"):
        stack(PROMPT, num_clips=0, **kw)
    np_frames = stack(PROMPT, interpolations=0, output_type="np", **kw).frames
    assert np_frames.dtype == np.uint8 and np_frames.shape == (1, 5, 16, 16, 3)
