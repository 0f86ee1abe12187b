"""Diffusion upsamplers: noise augmentation, tiles, the two stages, and the SD x4 upscaler layout."""
import json

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from conftest import force_alpha, randomize_temporal, run_stage
from videoldm.inference.upsampling import ConcatConditioned, Upsampler, _ramp, condition_image, noise_field
from videoldm.models.frames import window_starts

PIXEL_UNET = {"block_out_channels": [16, 32], "down_block_types": ["DownBlock2D"] * 2,
              "up_block_types": ["UpBlock2D"] * 2, "layers_per_block": 1, "norm_num_groups": 8,
              "mid_block_type": "UNetMidBlock2D", "sample_size": 16}


def pixel_upsampler(seed=0) -> Upsampler:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(in_channels=6, out_channels=3, num_class_embeds=350, **PIXEL_UNET)
    return Upsampler(unet, DDPMScheduler().config, "pixel", 4)


def test_tiles_cover_the_frame_and_their_weights_blend_to_one():
    assert window_starts(100, 40, 10) == [0, 30, 60]
    assert window_starts(30, 40, 10) == [0]
    total = torch.zeros(100)
    for y in window_starts(100, 40, 10):
        total[y:y + 40] += _ramp(40, 10, y == 0, y + 40 >= 100)
    assert total.min() > 0.04 and torch.allclose(total[:10], torch.ones(10))  # borders keep full weight
    with pytest.raises(ValueError, match="overlap"):
        window_starts(100, 40, 40)


def test_overlapping_tiles_get_the_same_noise_and_the_same_condition():
    a = noise_field(3, (1, 3, 2, 32, 32), 0, 0, 16)
    b = noise_field(3, (1, 3, 2, 32, 32), 16, 16, 16)
    assert torch.equal(a[..., 16:, 16:], b[..., :16, :16])
    assert not torch.equal(a, noise_field(4, (1, 3, 2, 32, 32), 0, 0, 16))
    up = pixel_upsampler()
    low = torch.rand(1, 3, 2, 12, 20) * 2 - 1
    whole = condition_image(low.transpose(1, 2).flatten(0, 1), "pixel", 4).view(1, 2, 3, 48, 80).transpose(1, 2)
    tile = up._low_res_tile(low, 16, 32, 32, 32, 4)  # bicubic sees the same neighbours as on the whole frame
    assert torch.allclose(tile, whole[..., 16:48, 32:64], atol=1e-6)


def test_tiled_upsampling_runs_and_checks_its_input():
    up = pixel_upsampler()
    low = torch.rand(1, 2, 3, 8, 12) * 2 - 1
    whole = up(low, num_inference_steps=2, progress=False).frames
    tiled = up(low, num_inference_steps=2, tile_size=16, tile_overlap=8, progress=False).frames
    assert whole.shape == tiled.shape == (1, 2, 3, 32, 48) and torch.isfinite(tiled).all()
    assert torch.equal(tiled, up(low, num_inference_steps=2, tile_size=16, tile_overlap=8, progress=False).frames)
    with pytest.raises(ValueError, match="low_res must be frames"):
        up(low[0], num_inference_steps=2)
    with pytest.raises(ValueError, match="noise_level"):
        up(low, noise_level=400)
    with pytest.raises(ValueError, match=r"in \[-1, 1\], got values up to \d+"):
        up(low.clamp(0) * 255, num_inference_steps=2)  # uint8-range frames
    with pytest.raises(ValueError, match="tile_size must be at least 1"):
        up(low, num_inference_steps=2, tile_size=0)  # was taken as "no tiles"
    with pytest.raises(ValueError, match="not an upsampler UNet"):
        Upsampler(UNet2DConditionModel(in_channels=3, out_channels=3, **PIXEL_UNET), DDPMScheduler().config)


def test_video_upsampler_with_alpha_one_is_the_image_upsampler():
    up = pixel_upsampler()
    video = up.video()
    randomize_temporal(video.unet)  # temporal layers that do something, mixed in at alpha = 0.3
    force_alpha(video.unet, 0.3)
    low = torch.rand(1, 3, 3, 4, 4) * 2 - 1
    kw = dict(num_inference_steps=2, progress=False, seed=5)
    image = up(low, **kw).frames
    assert torch.allclose(video(low, frame_by_frame=True, **kw).frames, image, atol=1e-5)
    assert (video(low, **kw).frames - image).abs().max() > 1e-4


@pytest.fixture(scope="module")
def upsampler_runs(tmp_path_factory):
    from videoldm.data.synthetic import make_generator
    from videoldm.data.synthetic.base import write_dataset

    tmp = tmp_path_factory.mktemp("upsampler")
    write_dataset(make_generator("driving", frames=4, size=(32, 64), fps=8, seed=0), tmp / "clips", num=3)
    data = {"path": str(tmp / "clips"), "num_frames": 4, "fps": None, "size": [32, 64], "batch_size": 2}
    image = run_stage(tmp, "up-image", "upsampler-image", {**data, "frames_per_clip": 2},
                      {"unet": PIXEL_UNET, "patch_size": 16, "residual_scale": 4.0, "sampling_steps": 3},
                      sample_steps=2).train()
    video = run_stage(tmp, "up-video", "upsampler-video", data, {"image_model": str(image), "patch_size": 16,
                                                                "sampling_steps": 2}, sample_steps=2).train()
    return tmp, data, image, video


def test_upsampler_stages_export_what_loads(upsampler_runs):
    tmp, data, image, video = upsampler_runs
    assert json.loads((image / "videoldm.json").read_text())["stage"] == "upsampler-image"
    assert list((tmp / "up-image" / "samples").glob("upsampler-*.gif"))
    up = Upsampler.from_pretrained(video)
    assert up.is_video and up.space == "pixel" and up.scale == 4
    base = Upsampler.from_pretrained(image)
    assert torch.equal(up.image_unet.conv_in.weight, base.image_unet.conv_in.weight)  # spatial part frozen
    low = torch.rand(1, 4, 3, 8, 16) * 2 - 1
    assert up(low, num_inference_steps=2, progress=False).frames.shape == (1, 4, 3, 32, 64)
    with pytest.raises(ValueError, match="video upsampler already"):
        run_stage(tmp, "bad", "upsampler-video", data, {"image_model": str(video)})
    with pytest.raises(ValueError, match="multiple of the scale"):
        run_stage(tmp, "bad2", "upsampler-image", data, {"unet": PIXEL_UNET, "patch_size": 18})


def test_an_upsampler_samples_with_the_steps_its_recipe_set_unless_told_otherwise(upsampler_runs):
    tmp, data, image, video = upsampler_runs
    low = torch.rand(1, 2, 3, 8, 16) * 2 - 1
    for folder, own in ((image, 3), (video, 2)):
        up = Upsampler.from_pretrained(folder)
        calls = []
        handle = up.image_unet.register_forward_hook(lambda *_: calls.append(1))
        up(low, progress=False)
        assert (up.sampling_steps, len(calls)) == (own, own)  # one tile, one chunk, no guidance: a call per step
        calls.clear()
        up(low, num_inference_steps=1, progress=False)
        assert len(calls) == 1
        handle.remove()



def test_an_image_upsampler_continues_from_its_export(upsampler_runs):
    """`image_model` on `upsampler-image` starts from that export's UNet (e.g. more steps on other data)."""
    tmp, data, image, video = upsampler_runs
    start = Upsampler.from_pretrained(image).image_unet
    stage = run_stage(tmp, "up-more", "upsampler-image", {**data, "frames_per_clip": 2},
                      {"image_model": str(image), "patch_size": 16, "residual_scale": 4.0}, sample_steps=2)
    assert torch.equal(stage.stage.unet.conv_in.weight, start.conv_in.weight)  # before training: the export's weights
    more = Upsampler.from_pretrained(stage.train()).image_unet
    assert not torch.equal(more.conv_in.weight, start.conv_in.weight)
    with pytest.raises(ValueError, match="residual_scale is 1.0 but .* was trained with 4.0"):
        run_stage(tmp, "bad3", "upsampler-image", data, {"image_model": str(image), "patch_size": 16})
    with pytest.raises(ValueError, match="not an upsampler-image export"):
        run_stage(tmp, "bad4", "upsampler-image", data, {"image_model": str(video), "patch_size": 16})
    with pytest.raises(ValueError, match="not an upsampler-image export"):
        run_stage(tmp, "bad6", "upsampler-image", data, {"image_model": str(tmp / "nowhere"), "patch_size": 16})


def test_training_noise_levels_can_be_capped(upsampler_runs):
    """`max_train_noise_level` draws the augmentation levels below it; above max_noise_level is refused."""
    tmp, data, image, video = upsampler_runs
    trainer = run_stage(tmp, "low-levels", "upsampler-video", data,
                        {"image_model": str(image), "patch_size": 16, "max_train_noise_level": 3})
    hi = torch.rand(4, 3, 2, 16, 16) * 2 - 1
    levels = trainer.stage.diffusion_inputs(hi, list(range(4)), seed=0)[2]
    assert levels.max() < 3
    with pytest.raises(ValueError, match="max_train_noise_level must be in 0..350"):
        run_stage(tmp, "bad5", "upsampler-video", data, {"image_model": str(image), "max_train_noise_level": 351})

def tiny_x4_upscaler(tmp_path):
    """A StableDiffusionUpscalePipeline folder with the real layout and tiny random weights."""
    from diffusers import StableDiffusionUpscalePipeline

    from videoldm.models.conditioning import make_text_encoder, train_tokenizer

    torch.manual_seed(0)
    tokenizer = train_tokenizer(["a photo of a cat"], max_length=8)
    unet = UNet2DConditionModel(in_channels=7, out_channels=4, num_class_embeds=1000, cross_attention_dim=16,
                                block_out_channels=[16, 32], down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                                up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], layers_per_block=1,
                                norm_num_groups=8, attention_head_dim=4, sample_size=8)
    vae = AutoencoderKL(block_out_channels=[8, 16, 16], down_block_types=["DownEncoderBlock2D"] * 3,
                        up_block_types=["UpDecoderBlock2D"] * 3, latent_channels=4, norm_num_groups=4,
                        scaling_factor=0.08333)
    pipe = StableDiffusionUpscalePipeline(vae=vae, text_encoder=make_text_encoder(tokenizer, 16, 1, 2, 8),
                                          tokenizer=tokenizer, unet=unet, low_res_scheduler=DDPMScheduler(),
                                          scheduler=DDIMScheduler(), max_noise_level=350)
    pipe.save_pretrained(tmp_path / "x4")
    return tmp_path / "x4"


def test_a_folder_in_the_sd_x4_upscaler_layout_runs_through_the_video_upsampler(tmp_path):
    folder = tiny_x4_upscaler(tmp_path)
    up = Upsampler.from_pretrained(folder)
    assert up.space == "latent" and up.text is not None and not up.is_video
    video = up.video()
    low = torch.rand(1, 3, 3, 8, 8) * 2 - 1
    out = video(low, "a photo of a cat", num_inference_steps=2, guidance_scale=2.0, progress=False)
    assert out.frames.shape == (1, 3, 3, 32, 32)  # latents at the low-res size, decoded 4x
    assert video(low, "a photo of a cat", num_inference_steps=2, progress=False, output_type="latent"
                 ).frames.shape == (1, 4, 3, 8, 8)
    # another diffusers layout, and a videoldm export that is no upsampler: clear errors
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError, match="StableDiffusionUpscalePipeline"):
        Upsampler.from_pretrained(folder)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "videoldm.json").write_text(json.dumps({"stage": "temporal"}))
    with pytest.raises(ValueError, match="not an upsampler"):
        Upsampler.from_pretrained(tmp_path / "other")


def test_concat_conditioning_appends_the_low_res_channels():
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x, t, ehs=None, **kw):
            seen["x"] = x
            return x

    ConcatConditioned(Probe())(torch.zeros(1, 4, 2, 8, 8), 1, low_res=torch.ones(1, 3, 2, 8, 8))
    assert seen["x"].shape == (1, 7, 2, 8, 8) and seen["x"][:, 4:].eq(1).all()


def test_upsample_command_refuses_what_it_could_not_write_before_any_work(tmp_path, capsys):
    """The model does not exist here: each error must come before it is even looked for."""
    from videoldm.cli import main

    start = ["upsample", str(tmp_path / "low.mp4"), "--model", str(tmp_path / "no-model")]
    assert main([*start, "--out", str(tmp_path / "up.txt")]) == 2
    assert "export writes .mp4 or .gif, got up.txt" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: a usage line and exit code 2
        main([*start, "--chunk", "0", "--out", str(tmp_path / "up.mp4")])
    assert "argument --chunk: must be positive" in capsys.readouterr().err


def test_upsample_and_evaluate_upsampler_commands(upsampler_runs, tmp_path):
    from videoldm.cli import main
    from videoldm.data.io import write_mp4
    from videoldm.data.io import read_video

    tmp, data, image, video = upsampler_runs
    low = (torch.rand(3, 8, 16, 3) * 255).to(torch.uint8).numpy()
    write_mp4(tmp_path / "low.mp4", low, 8)
    assert main(["upsample", str(tmp_path / "low.mp4"), "--model", str(video), "--steps", "2", "--tile", "16",
                 "--overlap", "8", "--out", str(tmp_path / "up.mp4")]) == 0
    assert read_video(tmp_path / "up.mp4").shape == (3, 32, 64, 3)
    assert main(["evaluate-upsampler", str(video), "--data", data["path"], "--num", "2", "--frames", "3",
                 "--steps", "2", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "upsampler.json").read_text())
    assert set(summary) >= {"bicubic", "frame_by_frame", "video"} and (tmp_path / "upsampler.gif").is_file()
    # an image upsampler: bicubic and itself frame by frame (no video row)
    assert main(["evaluate-upsampler", str(image), "--data", data["path"], "--num", "1", "--frames", "3",
                 "--steps", "2", "--out", str(tmp_path / "image")]) == 0
    summary = json.loads((tmp_path / "image" / "upsampler.json").read_text())
    assert {"bicubic", "frame_by_frame"} <= set(summary) and "video" not in summary


def test_pixel_upsampler_learns_the_difference_to_bicubic(upsampler_runs):
    tmp, data, image, video = upsampler_runs
    assert Upsampler.from_pretrained(image).residual and Upsampler.from_pretrained(video).residual
    stage = run_stage(tmp, "res", "upsampler-image", {**data, "frames_per_clip": 1},
                      {"unet": PIXEL_UNET, "patch_size": 16}).stage
    flat = torch.full((2, 3, 1, 16, 16), 0.3)
    target, cond, levels = stage.diffusion_inputs(flat, [0, 1], seed=0)
    assert target.abs().max() < 1e-5  # bicubic gets a flat patch exactly: nothing left to generate
    assert cond.shape == flat.shape and levels.shape == (2,)
    # the target is the difference to bicubic times residual_scale (4 in the fixture's image stage)
    assert Upsampler.from_pretrained(video).residual_scale == 4.0 and stage.residual_scale == 1.0
    hi = torch.rand(2, 3, 1, 16, 16) * 2 - 1
    target, cond, _ = stage.diffusion_inputs(hi, [0, 1], seed=0)
    stage.residual_scale = 4.0
    scaled, _, _ = stage.diffusion_inputs(hi, [0, 1], seed=0)
    assert torch.allclose(scaled, 4 * target) and target.abs().max() > 0.1
    with pytest.raises(ValueError, match="pixel-space"):
        Upsampler(pixel_upsampler().unet, DDPMScheduler().config, "latent", vae=AutoencoderKL(
            block_out_channels=[8, 16, 16], down_block_types=["DownEncoderBlock2D"] * 3,
            up_block_types=["UpDecoderBlock2D"] * 3, latent_channels=3, norm_num_groups=4), residual=True)


def test_a_latent_upsampler_trains_on_an_autoencoder_that_downsamples_by_its_scale(upsampler_runs):
    tmp, data, image, video = upsampler_runs
    ae4 = {"block_out_channels": [8, 16, 16], "down_block_types": ["DownEncoderBlock2D"] * 3,
           "up_block_types": ["UpDecoderBlock2D"] * 3, "layers_per_block": 1, "latent_channels": 4,
           "norm_num_groups": 4, "sample_size": 32}
    ae = run_stage(tmp, "ae4", "autoencoder", {**data, "frames_per_clip": 1}, {"config": ae4}).train()
    latent_unet = {**PIXEL_UNET, "sample_size": 4}
    final = run_stage(tmp, "up-latent", "upsampler-image", {**data, "frames_per_clip": 1},
                      {"space": "latent", "autoencoder": str(ae), "unet": latent_unet, "patch_size": 16}).train()
    up = Upsampler.from_pretrained(final)
    assert up.space == "latent" and not up.residual and up.image_unet.config.in_channels == 7
    assert up(torch.rand(1, 2, 3, 8, 16) * 2 - 1, num_inference_steps=2, progress=False).frames.shape == (1, 2, 3, 32, 64)
    with pytest.raises(ValueError, match="downsamples by 2"):
        from conftest import TINY_AE
        ae2 = run_stage(tmp, "ae2", "autoencoder", {**data, "frames_per_clip": 1}, {"config": TINY_AE}).train()
        run_stage(tmp, "bad-latent", "upsampler-image", data, {"space": "latent", "autoencoder": str(ae2),
                                                               "unet": latent_unet, "patch_size": 16})


def test_a_residual_upsampler_divides_its_sample_by_the_scale_and_adds_bicubic(monkeypatch):
    import videoldm.inference.upsampling as upsampling

    up = pixel_upsampler()
    up.residual, up.residual_scale = True, 4.0
    monkeypatch.setattr(upsampling, "sample", lambda model, scheduler, shape, **kw: torch.ones(shape))
    low = torch.rand(1, 2, 3, 8, 8) * 1.6 - 0.8
    out = up(low, noise_level=0, num_inference_steps=1, progress=False).frames
    bicubic = condition_image(low[0], "pixel", 4)
    assert torch.allclose(out[0], (bicubic + 0.25).clamp(-1, 1), atol=1e-6)


def test_temporal_layers_train_on_the_sd_x4_upscaler_folder_with_its_text(tmp_path):
    """upsampler-video on a StableDiffusionUpscalePipeline folder: its UNet frozen, read with the clips' captions
    through its own (frozen) text encoder; the export names the folder and loads as a video upsampler."""
    from conftest import run_stage
    from safetensors.torch import load_file
    from videoldm.data.synthetic import make_generator
    from videoldm.data.synthetic.base import write_dataset

    folder = tiny_x4_upscaler(tmp_path)
    write_dataset(make_generator("shapes", frames=3, size=(32, 32), fps=8, seed=0), tmp_path / "clips", num=2)
    data = {"path": str(tmp_path / "clips"), "num_frames": 3, "fps": None, "size": [32, 32], "batch_size": 2}
    trainer = run_stage(tmp_path, "video", "upsampler-video", data, {"image_model": str(folder), "patch_size": 16})
    assert trainer.stage.text is not None and trainer.config.model.space == "latent"
    final = trainer.train()
    before = load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")
    after = trainer.stage.video_upsampler.image_unet.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # the upscaler's own UNet did not move
    up = Upsampler.from_pretrained(final)
    assert up.is_video and up.text is not None
    out = up(torch.rand(1, 2, 3, 8, 8) * 2 - 1, "a red circle", num_inference_steps=2, progress=False).frames
    assert out.shape == (1, 2, 3, 32, 32) and torch.isfinite(out).all()
