"""Stable Diffusion as the image model of the training stages (configs/sd/): temporal layers trained on a
(tiny, SD-structured) pipeline folder with captioned clips, then generated with it."""
import json

import pytest
import torch

from sd_pipeline import make_sd_folder

RECIPE = "configs/sd/temporal.yaml"


def tiny(tmp_path, sd, **more) -> list[str]:
    """Overrides that run an SD recipe on the tiny folder and 16x16 clips for two steps."""
    values = {"data.path": tmp_path / "clips", "data.size": "[16, 16]", "data.num_frames": 5, "data.fps": "null",
              "data.num_workers": 0, "run.max_steps": 2, "run.grad_accum": 1, "run.output_dir": tmp_path / "run",
              "run.checkpoint_every": 0, "run.sample_every": 0, "run.num_samples": 1, "run.sample_steps": 2,
              "optim.warmup_steps": 0, **more}
    return [f"{key}={value}" for key, value in values.items()]


@pytest.fixture(scope="module")
def sd_and_clips(tmp_path_factory):
    from videoldm.data.synthetic import make_generator
    from videoldm.data.synthetic.base import write_dataset

    tmp = tmp_path_factory.mktemp("sd")
    write_dataset(make_generator("shapes", frames=5, size=(16, 16), fps=8, seed=0), tmp / "clips", num=4)
    return tmp, make_sd_folder(tmp / "sd")


def test_the_sd_folder_is_real_clip(sd_and_clips):
    from transformers import AutoTokenizer

    _, sd = sd_and_clips
    tokenizer = AutoTokenizer.from_pretrained(sd / "tokenizer")
    assert len(tokenizer) == 49408
    ids = tokenizer("a red circle moving left").input_ids
    assert ids[0] == 49406 and ids[-1] == 49407 and len(ids) == 7  # BOS, one token per word, EOS
    assert json.loads((sd / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"


def test_temporal_layers_train_on_a_stable_diffusion_folder_and_generate_with_it(sd_and_clips, tmp_path):
    from safetensors.torch import load_file

    from videoldm import VideoLDMPipeline
    from videoldm.cli import main
    from videoldm.data.io import read_video
    from videoldm.training.config import load_config
    from videoldm.training.trainer import Trainer

    data, sd = sd_and_clips
    config = load_config(RECIPE, [f"model.image_model={sd}", *tiny(data, sd, **{"run.output_dir": tmp_path / "run"})])
    trainer = Trainer(config)
    assert type(trainer.stage.conditioner.tokenizer).__name__.startswith("CLIPTokenizer")
    final = trainer.train()
    saved = load_file(sd / "unet" / "diffusion_pytorch_model.safetensors")
    trained = trainer.stage.video_unet.unet.state_dict()
    assert all(torch.equal(trained[k], v) for k, v in saved.items())  # the spatial layers did not move
    index = json.loads((final / "videoldm.json").read_text())
    assert index["stage"] == "temporal" and (final / index["image_model"]).resolve() == sd.resolve()
    assert sorted(p.name for p in final.iterdir()) == ["temporal_layers", "videoldm.json"]  # no copy of SD

    out = tmp_path / "out"
    assert main(["generate", "--base", str(sd), "--temporal", str(final), "--prompt", "a red circle moving left",
                 "--steps", "2", "--seconds", "0.5", "--out", str(out)]) == 0
    assert read_video(out / "text.mp4").shape == (4, 16, 16, 3)  # 0.5 s at the data's 8 fps, the trained size
    # the export alone finds its SD folder by its reference
    video = VideoLDMPipeline.from_pretrained(final)(["a red circle"], num_frames=3, num_inference_steps=2,
                                                    progress=False).frames
    assert video.shape == (1, 3, 3, 16, 16) and torch.isfinite(video).all()


def test_sd_spatial_layers_fine_tune_on_video_frames_with_their_own_frozen_text_encoder(sd_and_clips, tmp_path):
    """The paper's first step for SD: the spatial layers briefly fine-tuned on the video frames; CLIP stays."""
    from safetensors.torch import load_file

    from videoldm.training.config import load_config
    from videoldm.training.trainer import Trainer

    data, sd = sd_and_clips
    overrides = [f"model.autoencoder={sd}", f"model.unet.pretrained={sd}",
                 *tiny(data, sd, **{"run.output_dir": tmp_path / "image", "data.frames_per_clip": 2,
                                    "data.batch_size": 2})]
    trainer = Trainer(load_config("configs/sd/image.yaml", overrides))
    final = trainer.train()
    before = load_file(sd / "text_encoder" / "model.safetensors")
    after = load_file(final / "conditioner" / "text_encoder" / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)  # CLIP untouched
    unet_before = load_file(sd / "unet" / "diffusion_pytorch_model.safetensors")
    unet_after = load_file(final / "unet" / "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(unet_before[k], unet_after[k]) for k in unet_before)  # the UNet learned
    # and the temporal stage takes that export as its image model
    temporal = Trainer(load_config(RECIPE, [f"model.image_model={final}",
                                            *tiny(data, sd, **{"run.output_dir": tmp_path / "temporal"})]))
    assert temporal.train().joinpath("videoldm.json").is_file()


def test_a_temporal_decoder_fine_tunes_on_the_sd_autoencoder(sd_and_clips, tmp_path):
    """The decoder stage takes an SD folder as its autoencoder (its vae/), encoder untouched."""
    from conftest import run_stage
    from videoldm.export import load_temporal_decoder

    data, sd = sd_and_clips
    clips = {"path": str(data / "clips"), "num_frames": 5, "fps": None, "size": [16, 16], "batch_size": 2}
    final = run_stage(tmp_path, "decoder", "decoder", clips, {
        "autoencoder": str(sd), "discriminator": {"channels": 8, "num_layers": 1}}).train()
    decoder = load_temporal_decoder(final)
    assert decoder.vae.config.scaling_factor == 0.18215  # SD's own autoencoder, referenced, not copied
    frames = decoder(torch.randn(1, 4, 5, 8, 8)).sample
    assert frames.shape == (1, 3, 5, 16, 16) and torch.isfinite(frames).all()


def test_an_original_single_file_checkpoint_trains_and_generates_like_its_folder(sd_and_clips, tmp_path):
    """The same tiny SD as one original-format file (UNet, VAE, CLIP under their LDM keys), read by diffusers'
    single-file loader with the folder as its configs: same weights, a temporal run on it, generate with it."""
    from sd_single_file import save_sd_single_file
    from videoldm.cli import main
    from videoldm.data.io import read_video
    from videoldm.export import load_image_model
    from videoldm.training.config import load_config
    from videoldm.training.trainer import Trainer

    data, sd = sd_and_clips
    checkpoint = tmp_path / "sd.safetensors"
    save_sd_single_file(sd, checkpoint)
    single, folder = load_image_model(checkpoint, sd), load_image_model(sd)
    for part in ("unet", "vae"):
        a, b = single[part].state_dict(), folder[part].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        assert torch.equal(single["conditioner"].encode(["a red circle"]), folder["conditioner"].encode(["a red circle"]))

    config = load_config(RECIPE, [f"model.image_model={checkpoint}", f"model.image_config={sd}",
                                  *tiny(data, sd, **{"run.output_dir": tmp_path / "run"})])
    final = Trainer(config).train()
    index = json.loads((final / "videoldm.json").read_text())
    assert (final / index["image_model"]).resolve() == checkpoint.resolve()
    assert (final / index["image_config"]).resolve() == sd.resolve()
    out = tmp_path / "out"
    assert main(["generate", "--base", str(checkpoint), "--base-config", str(sd), "--temporal", str(final),
                 "--prompt", "a red circle", "--steps", "2", "--seconds", "0.5", "--out", str(out)]) == 0
    assert read_video(out / "text.mp4").shape == (4, 16, 16, 3)
