"""Stages `prediction` and `interpolation`: masks per clip, start from a video model, exact resume."""
import csv
import json

import pytest
import torch

from conftest import run_stage as run


def test_prediction_masks_give_the_first_s_frames(chain):
    tmp, data, image, temporal = chain
    stage = run(tmp, "p0", "prediction", data, {"image_model": str(image), "context_frames": [0, 1, 2]}).stage
    masks = stage.masks(list(range(200)), 5, seed=0)
    counts = masks.sum(1)
    assert set(counts.tolist()) == {0.0, 1.0, 2.0}
    for m, s in zip(masks, counts):  # the given frames come first
        assert m[: int(s)].all() and not m[int(s):].any()
    assert torch.equal(masks, stage.masks(list(range(200)), 5, seed=0))


def test_interpolation_gives_every_kth_frame_and_checks_the_clip_length(chain):
    tmp, data, image, temporal = chain
    stage = run(tmp, "i0", "interpolation", data, {"image_model": str(image), "keyframe_every": 2}).stage
    assert stage.masks([0, 1], 5, 0).tolist() == [[1, 0, 1, 0, 1]] * 2
    with pytest.raises(ValueError, match="keyframe_every"):
        run(tmp, "i1", "interpolation", data, {"image_model": str(image), "keyframe_every": 3})


def test_prediction_starts_from_the_video_model_and_exports_its_kind(chain):
    tmp, data, image, temporal = chain
    trainer = run(tmp, "pred", "prediction", data, {"image_model": str(image), "init_temporal": str(temporal),
                                                     "context_frames": [1, 2]})
    from videoldm.inference.pipeline import VideoLDMPipeline

    video = VideoLDMPipeline.from_pretrained(temporal).unet
    for key, tensor in video.temporal_layers.state_dict().items():  # the plain layers came along
        assert torch.equal(trainer.stage.video_unet.temporal_layers.state_dict()[key], tensor)
    final = trainer.train()
    index = json.loads((final / "videoldm.json").read_text())
    assert index["stage"] == "prediction" and index["context_frames"] == [1, 2]
    pipe = VideoLDMPipeline.from_pretrained(final)
    assert pipe.unet.context_encoder is not None
    assert pipe(["a red circle moving left on a dark background"], num_frames=5, num_inference_steps=2,
                progress=False).frames.shape == (1, 5, 3, 16, 16)


def test_a_carry_model_starts_from_a_plain_prediction_model_with_a_new_context_encoder(chain):
    tmp, data, image, temporal = chain
    plain = run(tmp, "pred-plain", "prediction", data, {"image_model": str(image), "init_temporal": str(temporal),
                                                         "context_frames": [1, 2]}).train()
    trainer = run(tmp, "pred-carry", "prediction", data, {
        "image_model": str(image), "init_temporal": str(plain), "context_frames": [1, 2],
        "temporal": {"context_carry": True}})
    model = trainer.stage.video_unet
    assert model.config.context_carry and model.context_encoder.conv_in.in_channels == 3 * (4 + 1)
    assert all(p.abs().sum() == 0 for p in model.context_encoder.projections.parameters())  # a no-op at first
    from videoldm.inference.pipeline import VideoLDMPipeline

    final = trainer.train()
    assert VideoLDMPipeline.from_pretrained(final).unet.config.context_carry


@pytest.mark.parametrize("options", [{"context_dropout": 0.5}, {"temporal_text": True, "shared_noise": 0.5}],
                         ids=["plain", "own-text-encoder-mixed-noise"])
def test_prediction_resumes_exactly(chain, options):
    tmp, data, image, _ = chain
    model = {"image_model": str(image), **options}
    name = "-".join(options)
    run(tmp, f"whole-{name}", "prediction", data, model, max_steps=4).train()
    run(tmp, f"cut-{name}", "prediction", data, model, max_steps=2, checkpoint_every=2).train()
    resumed = run(tmp, f"cut-{name}", "prediction", data, model, max_steps=4, checkpoint_every=2)
    assert resumed.resume()
    resumed.train()

    def losses(run_name):
        with open(tmp / run_name / "log.csv") as f:
            return [float(r["loss"]) for r in csv.DictReader(f)]

    assert losses(f"cut-{name}")[2:] == pytest.approx(losses(f"whole-{name}")[2:], rel=1e-5, abs=1e-7)


def read_frames(path):
    import av
    import numpy as np

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_rollout_writes_every_clip_and_a_resumed_render_equals_an_uninterrupted_one(chain, tmp_path):
    import numpy as np

    from videoldm.inference.pipeline import VideoLDMPipeline
    from videoldm.inference.rollout import rollout

    tmp, data, image, temporal = chain
    final = run(tmp, "pred-roll", "prediction", data, {"image_model": str(image)}, max_steps=1).train()
    pipe = VideoLDMPipeline.from_pretrained(final)
    kw = dict(num_frames=5, context_frames=2, num_inference_steps=2, seed=4, progress=False)
    prompt = "a red circle moving left on a dark background"
    written = []
    whole = rollout(pipe, prompt, 3, tmp_path / "whole.mp4", on_clip_end=lambda k, n: written.append((k, n)), **kw)
    assert whole["frames"] == 5 + 2 * 3 and read_frames(tmp_path / "whole.mp4").shape == (11, 16, 16, 3)
    assert written == [(0, 5), (1, 8), (2, 11)]  # called as each clip is in the file
    rollout(pipe, prompt, 2, tmp_path / "cut.mp4", state_dir=tmp_path / "state", **kw)  # "interrupted" after 2
    resumed = rollout(pipe, prompt, 3, tmp_path / "cut.mp4", state_dir=tmp_path / "state", **kw)
    assert resumed["resumed_clips"] == 2
    assert np.array_equal(read_frames(tmp_path / "cut.mp4"), read_frames(tmp_path / "whole.mp4"))
    with pytest.raises(ValueError, match="seed"):
        rollout(pipe, prompt, 3, tmp_path / "x.mp4", state_dir=tmp_path / "state", **{**kw, "seed": 5})
    with pytest.raises(ValueError, match="context_frames"):
        rollout(pipe, prompt, 3, tmp_path / "x.mp4", **{**kw, "context_frames": 5})
    with pytest.raises(ValueError, match="prediction model"):
        rollout(VideoLDMPipeline.from_pretrained(temporal), prompt, 2, tmp_path / "x.mp4", **kw)
    with pytest.raises(ValueError, match="interpolation_steps must be >= 1"):  # 0 was read as "the default"
        rollout(pipe, prompt, 2, tmp_path / "x.mp4", interpolator=pipe, interpolation_steps=0, **kw)
    # with an interpolation model (k = 2): (5 - 1) * 2 + 1 frames, then (5 - 2) * 2 per clip, at twice the rate
    interp = run(tmp, "interp-roll", "interpolation", data, {"image_model": str(image), "keyframe_every": 2},
                 max_steps=1).train()
    dense = rollout(pipe, prompt, 2, tmp_path / "dense.mp4", interpolator=VideoLDMPipeline.from_pretrained(interp),
                    state_dir=tmp_path / "dense-state", **kw)
    assert dense["frames"] == 9 + 6 and dense["fps"] == 2 * whole["fps"]
    assert read_frames(tmp_path / "dense.mp4").shape[0] == 15
    from videoldm.cli import main

    assert main(["rollout", str(final), "--prompt", prompt, "--clips", "2", "--frames", "5", "--steps", "2",
                 "--out", str(tmp_path / "cli.mp4")]) == 0
    assert read_frames(tmp_path / "cli.mp4").shape[0] == 5 + 3
    assert main(["rollout", str(final), "--clips", "2", "--out", str(tmp_path / "y.mp4")]) == 2  # no --prompt
    # refused before sampling: a length of nothing, a file that would not be what its name says, a folder
    # that cannot be made (a file stands where it would go)
    (tmp_path / "a-file").write_text("keep me")
    for bad in (["--seconds", "0", "--out", str(tmp_path / "z.mp4")], ["--out", str(tmp_path / "z.gif")],
                ["--out", str(tmp_path / "a-file" / "z.mp4")]):
        assert main(["rollout", str(final), "--prompt", prompt, "--frames", "5", "--steps", "2", *bad]) == 2
    assert not (tmp_path / "z.mp4").exists() and not (tmp_path / "z.gif").exists()
    assert (tmp_path / "a-file").read_text() == "keep me"
    for option in ("--clips", "--frames", "--steps", "--interpolation-steps"):  # counts: positive at parse time
        with pytest.raises(SystemExit):
            main(["rollout", str(final), "--prompt", prompt, option, "0", "--out", str(tmp_path / "z.mp4")])


def test_interpolation_keeps_the_keyframes_and_fills_between(chain):
    from videoldm.inference.interpolation import interpolate
    from videoldm.inference.pipeline import VideoLDMPipeline

    tmp, data, image, temporal = chain
    final = run(tmp, "interp", "interpolation", data, {"image_model": str(image), "keyframe_every": 2},
                max_steps=1).train()
    pipe = VideoLDMPipeline.from_pretrained(final)
    assert pipe.info["keyframe_every"] == 2
    keys = torch.randn(1, 4, 4, 8, 8)
    out = interpolate(pipe, keys, "a red circle moving left on a dark background", num_inference_steps=2)
    assert out.shape == (1, 4, 7, 8, 8) and torch.equal(out[:, :, ::2], keys)  # windows of 3 keys, then 2
    assert torch.equal(out, interpolate(pipe, keys, "a red circle moving left on a dark background",
                                        num_inference_steps=2))
    with pytest.raises(ValueError, match="interpolation model"):
        interpolate(VideoLDMPipeline.from_pretrained(temporal), keys)
    with pytest.raises(ValueError, match="keyframes"):
        interpolate(pipe, keys[:, :, :1])


def test_a_clean_context_model_trains_without_its_given_frames_in_the_loss(chain):
    tmp, data, image, temporal = chain
    trainer = run(tmp, "pred-clean", "prediction", data, {
        "image_model": str(image), "init_temporal": str(temporal), "context_frames": [2],
        "context_dropout": 0.0, "temporal": {"clean_context": True}})
    stage = trainer.stage
    assert stage.video_unet.config.clean_context
    from videoldm.training.data import _collate

    batch = _collate([(*stage.dataset[i], i) for i in range(2)])

    def spoiled(noisy, t, tokens, image_only, context=None, context_mask=None):  # wrong at the given frames only
        out = stage.module(noisy, t, tokens, image_only, context, context_mask)
        return out + 100.0 * context_mask[:, None, :, None, None]

    with torch.no_grad():
        assert torch.equal(stage.loss(spoiled, batch, seed=0)[0], stage.loss(stage.module, batch, seed=0)[0])
    from videoldm.inference.pipeline import VideoLDMPipeline

    final = trainer.train()
    pipe = VideoLDMPipeline.from_pretrained(final)
    assert pipe.unet.config.clean_context
    context = pipe.encode(torch.rand(1, 2, 3, 16, 16) * 2 - 1)
    video = pipe(["a red circle moving left on a dark background"], num_frames=5, num_inference_steps=2,
                 progress=False, output_type="latent", context=context).frames
    assert torch.equal(video[:, :, :2], context)  # the given frames come back as given


def test_prompts_that_change_along_a_rollout_condition_each_clip_on_its_own(chain, tmp_path, monkeypatch):
    import json

    import numpy as np

    from videoldm.cli import main
    from videoldm.inference import stack
    from videoldm.inference.pipeline import VideoLDMPipeline
    from videoldm.inference.rollout import rollout
    from videoldm.inference.stack import scheduled_prompts

    # clip k takes the prompt in effect at its first new frame: clips start at 0, 5, 8, 11 frames (2 s at 4 fps)
    schedule = [(0, "left"), (2.0, "up")]
    assert scheduled_prompts(schedule, 4, 5, 2, fps=4) == ["left", "left", "up", "up"]
    for bad, match in (([], "empty"), ([(1, "a")], "starts at 0"), ([(0, "a"), (0, "b")], "increase")):
        with pytest.raises(ValueError, match=match):
            scheduled_prompts(bad, 4, 5, 2, fps=4)

    tmp, data, image, _ = chain
    final = run(tmp, "pred-travel", "prediction", data, {"image_model": str(image)}, max_steps=1).train()
    pipe = VideoLDMPipeline.from_pretrained(final)
    seen = []
    original = stack.next_clip
    monkeypatch.setattr(stack, "next_clip", lambda p, prompt, *a, **k: seen.append(prompt) or original(p, prompt, *a, **k))
    kw = dict(num_frames=5, context_frames=2, num_inference_steps=2, seed=4, progress=False)
    left, up = "a red circle moving left on a dark background", "a red circle moving up on a dark background"
    travel = rollout(pipe, [left, left, up], 3, tmp_path / "t.mp4", state_dir=tmp_path / "state", **kw)
    assert seen == [left, left, up] and travel["frames"] == 11
    single = rollout(pipe, left, 3, tmp_path / "s.mp4", **kw)  # the same clips until the prompt changes
    # the same frames until the prompt changes; H.264 codes a frame with the next ones in view (B-frames), so the
    # frame before the change may differ by the encoding alone (seen: frame 7, by 3.7/255 on average, at most 16)
    same_t, same_s = read_frames(tmp_path / "t.mp4")[:8].astype(int), read_frames(tmp_path / "s.mp4")[:8].astype(int)
    assert np.array_equal(same_t[:7], same_s[:7]) and np.abs(same_t[7] - same_s[7]).mean() < 8
    assert not np.array_equal(read_frames(tmp_path / "t.mp4")[8:], read_frames(tmp_path / "s.mp4")[8:])
    with pytest.raises(ValueError, match="one prompt per clip"):
        rollout(pipe, [left, up], 3, tmp_path / "x.mp4", **kw)
    with pytest.raises(ValueError, match="prompt"):  # a resumed render must keep its schedule
        rollout(pipe, [left, up, up], 3, tmp_path / "t.mp4", state_dir=tmp_path / "state", **kw)

    common = [str(final), "--frames", "5", "--steps", "2", "--clips", "3"]
    seen.clear()
    assert main(["rollout", *common, "--prompt", left, "--prompt", up, "--seconds-per-prompt", "0.75",
                 "--out", str(tmp_path / "c.mp4")]) == 0  # at 8 fps the clips start at 0, 0.625, 1.0 s
    assert seen == [left, left, up]
    assert json.loads((tmp_path / "c.json").read_text())["prompt"] == [left, left, up]
    (tmp_path / "schedule.txt").write_text(f"# seconds caption\n0 {left}\n0.5 {up}\n")
    seen.clear()
    assert main(["rollout", *common, "--prompt-file", str(tmp_path / "schedule.txt"), "--out", str(tmp_path / "f.mp4")]) == 0
    assert seen == [left, up, up]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    assert main(["rollout", *common, "--prompt-file", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "e.mp4")]) == 2
    assert main(["evaluate-rollout", str(tmp_path / "c.mp4")]) == 0


def test_temporal_text_trains_its_own_encoder_and_leaves_the_image_models_alone(chain):
    """model.temporal_text: a copy of the image model's text encoder is trained with the temporal layers, ships
    with them, and feeds only them; the spatial layers keep reading the frozen one."""
    tmp, data, image, temporal = chain
    from videoldm.inference.pipeline import VideoLDMPipeline

    model = {"image_model": str(image), "init_temporal": str(temporal), "temporal_text": True}
    trainer = run(tmp, "pred-text", "prediction", data, model, max_steps=3)
    stage = trainer.stage
    before = {k: v.clone() for k, v in stage.conditioner.state_dict().items()}
    start = {k: v.clone() for k, v in stage.temporal_conditioner.state_dict().items()}
    assert all(torch.equal(start[k], v) for k, v in before.items())  # starts as a copy
    final = trainer.train()
    assert all(torch.equal(stage.conditioner.state_dict()[k], v) for k, v in before.items())
    trained = stage.temporal_conditioner.state_dict()
    assert any(not torch.equal(trained[k], start[k]) for k in start if start[k].is_floating_point())
    assert json.loads((final / "videoldm.json").read_text())["temporal_conditioner"] == "temporal_conditioner"
    pipe = VideoLDMPipeline.from_pretrained(final)
    caption = ["a red circle moving left on a dark background"]
    spatial, temporal_tokens = pipe.conditioner.encode(caption), pipe.temporal_conditioner.encode(caption)
    assert not torch.allclose(spatial, temporal_tokens)
    assert torch.allclose(temporal_tokens, stage.temporal_conditioner.encode(caption), atol=1e-5)
    # continuing the export carries its temporal text encoder on
    again = run(tmp, "pred-text-2", "prediction", data, {**model, "init_temporal": str(final)}, max_steps=1)
    assert torch.allclose(again.stage.temporal_conditioner.encode(caption), temporal_tokens, atol=1e-5)
    plain = run(tmp, "temporal-text", "temporal", data, {"image_model": str(image), "temporal_text": True}).train()
    assert VideoLDMPipeline.from_pretrained(plain).temporal_conditioner is not None  # the text-to-video stage too
    with pytest.raises(ValueError, match="shared_noise"):
        run(tmp, "pred-bad", "prediction", data, {"image_model": str(image), "shared_noise": 1.0})


def test_a_mixed_noise_model_is_trained_and_sampled_with_noise_shared_across_frames(chain):
    tmp, data, image, _ = chain
    from videoldm.inference.pipeline import VideoLDMPipeline
    from videoldm.inference.sampling import mix_shared_noise

    stage = run(tmp, "shared", "prediction", data, {"image_model": str(image), "shared_noise": 0.5}).stage
    latents = torch.zeros(64, 4, 5, 8, 8)
    noise, _, _ = stage.noise_and_timesteps(latents, list(range(64)), seed=0)
    frames = noise.transpose(1, 2).reshape(64, 5, -1)
    corr = torch.corrcoef(torch.stack([frames[:, 0].flatten(), frames[:, 3].flatten()]))[0, 1]
    assert abs(corr - 0.5) < 0.05 and abs(noise.std() - 1) < 0.03  # half the variance shared, still unit
    final = run(tmp, "shared", "prediction", data, {"image_model": str(image), "shared_noise": 0.5}).train()
    pipe = VideoLDMPipeline.from_pretrained(final)
    assert pipe.info["shared_noise"] == 0.5
    init = pipe.initial_noise((2, 4, 5, 8, 8), torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    expected = mix_shared_noise(torch.randn(2, 4, 5, 8, 8, generator=g), torch.randn(2, 4, 1, 8, 8, generator=g), 0.5)
    assert torch.equal(init, expected)
    prompt = ["a red circle moving left on a dark background"]
    shared = pipe(prompt, num_frames=5, num_inference_steps=2, progress=False, output_type="latent").frames
    pipe.initial_noise = lambda shape, generator: None  # what sampling would start from without the prior
    independent = pipe(prompt, num_frames=5, num_inference_steps=2, progress=False, output_type="latent").frames
    assert not torch.allclose(shared, independent)
    plain = VideoLDMPipeline.from_pretrained(image)  # an image export: independent noise, as before
    assert plain.initial_noise((1, 4, 5, 8, 8), torch.Generator().manual_seed(0)) is None
    with pytest.raises(ValueError, match="shared_noise"):
        mix_shared_noise(init, init[:, :, :1], 1.0)
