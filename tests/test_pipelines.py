"""The generation classes are diffusers pipelines: whole-pipeline save/load, SD folders, devices.

Device correctness without a GPU: every model is put on the ``meta`` device, where an op that mixes a meta
tensor with a CPU tensor of more than one element raises ("Tensor on device cpu is not on the expected device
meta"). A tensor our code makes without following the models' device fails the run. diffusers' schedulers
read timesteps with ``.item()``, which meta tensors cannot give, so the sampler here steps with the timestep
as a Python number (the same arithmetic); results stay on meta and are only checked for shape and device.
"""
import json

import pytest
import torch
from diffusers import DDIMScheduler

from conftest import run_stage


def same_video(a, b, seed=3, **call):
    kwargs = {"num_frames": 3, "num_inference_steps": 2, "progress": False, "seed": seed, **call}
    return torch.equal(a(["a red circle"], **kwargs).frames, b(["a red circle"], **kwargs).frames)


def test_a_pipeline_saves_and_loads_whole_in_diffusers_layout(chain, tmp_path):
    from videoldm import VideoLDMPipeline

    _, _, _, temporal = chain
    pipe = VideoLDMPipeline.from_pretrained(temporal)
    pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["_class_name"] == "VideoLDMPipeline"
    assert index["unet"] == ["videoldm.models.video_unet", "VideoUNet"] and index["decoder"] == [None, None]
    assert index["text_encoder"][1] == "CLIPTextModel" and index["info"]["stage"] == "temporal"
    assert (tmp_path / "saved" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    again = VideoLDMPipeline.from_pretrained(tmp_path / "saved")
    assert again.latent_size == pipe.latent_size and again.fps == pipe.fps and again.info == pipe.info
    assert same_video(pipe, again)
    assert set(pipe.model_cpu_offload_seq.split("->")) <= set(pipe.components)  # what enable_model_cpu_offload moves
    half = VideoLDMPipeline.from_pretrained(tmp_path / "saved", dtype=torch.bfloat16)
    assert half.dtype == half.vae.dtype == half.text_encoder.dtype == torch.bfloat16


def test_a_stable_diffusion_folder_loads_as_a_pipeline_and_takes_temporal_layers(tmp_path):
    from sd_pipeline import make_sd_folder
    from videoldm import VideoLDMPipeline, VideoUNet

    sd = make_sd_folder(tmp_path / "sd")
    pipe = VideoLDMPipeline.from_pretrained(sd)  # StableDiffusionPipeline's folder: its image model, frame by frame
    assert type(pipe.unet).__name__ == "UNet2DConditionModel" and pipe.conditioning == "text"
    frame_by_frame = pipe("a red circle", num_frames=2, num_inference_steps=2, progress=False).frames
    layers = VideoUNet.from_unet2d(pipe.unet)
    torch.manual_seed(0)
    for p in layers.temporal_layers.parameters():
        p.data.normal_(0, 0.05)
    layers.save_temporal_layers(tmp_path / "layers")
    pipe.load_temporal_layers(tmp_path / "layers")
    assert isinstance(pipe.unet, VideoUNet)
    video = pipe("a red circle", num_frames=2, num_inference_steps=2, progress=False).frames
    assert video.shape == frame_by_frame.shape and not torch.equal(video, frame_by_frame)
    assert torch.equal(pipe("a red circle", num_frames=2, num_inference_steps=2, progress=False,
                            frame_by_frame=True).frames, frame_by_frame)


def test_the_stack_and_the_upsampler_save_and_load_whole(chain, context_models, tmp_path):
    from test_upsampling import pixel_upsampler
    from videoldm import Upsampler, VideoLDMStack

    prediction, interpolation = context_models
    stack = VideoLDMStack.from_pretrained(prediction, interpolator=interpolation)
    stack.save_pretrained(tmp_path / "stack")
    assert sorted(p.name for p in (tmp_path / "stack").iterdir()) == ["interpolator", "keyframes", "model_index.json"]
    again = VideoLDMStack.from_pretrained(tmp_path / "stack")
    call = {"num_frames": 5, "num_clips": 2, "interpolations": 1, "num_inference_steps": 2, "progress": False}
    assert torch.equal(stack("a red circle", **call).frames, again("a red circle", **call).frames)

    up = pixel_upsampler().video(alpha_init=0.3)
    up.sampling_steps = 3
    up.save_pretrained(tmp_path / "up")
    loaded = Upsampler.from_pretrained(tmp_path / "up")
    assert loaded.is_video and loaded.sampling_steps == 3 and loaded.space == "pixel" and loaded.scale == 4
    low = torch.rand(1, 2, 3, 8, 8) * 2 - 1
    assert torch.equal(up(low, num_inference_steps=2, progress=False).frames,
                       loaded(low, num_inference_steps=2, progress=False).frames)


class StepsOnNumbers(DDIMScheduler):
    """DDIM stepping with the timestep as a number: the same arithmetic, without ``.item()`` on a meta tensor."""

    def set_timesteps(self, num_inference_steps, device=None):
        super().set_timesteps(num_inference_steps, device="cpu")
        self.numbers = iter(self.timesteps.tolist())  # sample() steps through the timesteps in order
        super().set_timesteps(num_inference_steps, device=device)

    def step(self, model_output, timestep, sample, *args, **kwargs):
        return super().step(model_output, next(self.numbers), sample, *args, **kwargs)


def test_generation_makes_every_tensor_on_the_models_device(chain, context_models, monkeypatch):
    from test_upsampling import pixel_upsampler
    from videoldm import VideoLDMPipeline, VideoLDMStack
    from videoldm.inference import sampling

    monkeypatch.setitem(sampling.SCHEDULERS, "ddim", (StepsOnNumbers, {}))
    _, _, _, temporal = chain
    prediction, interpolation = context_models
    meta = torch.device("meta")
    text = VideoLDMPipeline.from_pretrained(temporal).to(meta)
    assert text.device == meta and text.text_encoder.device == meta
    latents = text(["a red circle"], num_frames=3, num_inference_steps=2, progress=False, output_type="latent").frames
    assert latents.device == meta and latents.shape[:3] == (1, 4, 3)
    assert text.decode(latents).device == meta and text.encode(torch.zeros(1, 3, 3, 16, 16)).device == meta
    stack = VideoLDMStack.from_pretrained(prediction, interpolator=interpolation).to(meta)
    long = stack("a red circle", num_frames=5, num_clips=2, interpolations=1, num_inference_steps=2, progress=False,
                 output_type="latent").frames
    assert long.device == meta and long.shape[2] == (5 + 3 - 1) * 2 + 1
    context = stack.keyframes(["a red circle"], num_frames=5, num_inference_steps=2, progress=False,
                              output_type="latent", context=long[:, :, -2:]).frames
    assert context.device == meta
    upsampler = pixel_upsampler().video().to(meta)
    # sampling runs on meta; then the upsampler blends its tiles on the CPU on purpose (memory), which meta
    # tensors cannot be copied to: that error, not one of mixed devices, is the one expected
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):
        upsampler(torch.zeros(1, 2, 3, 8, 8), num_inference_steps=2, progress=False)


@pytest.mark.parametrize("stage", ["temporal", "prediction"])
def test_a_training_step_makes_every_tensor_on_the_models_device(chain, tmp_path, stage):
    """The loss and its gradients of a temporal (and a prediction) step with every model on meta."""
    from videoldm.training.data import _collate

    _, data, image, _ = chain
    trainer = run_stage(tmp_path, stage, stage, data, {"image_model": str(image)}, mixed_precision="no")
    s = trainer.stage
    meta = torch.device("meta")
    for module in (s.module, s.vae, s.conditioner):
        module.to(meta)
    batch = _collate([(*s.dataset[i], i) for i in range(2)])
    loss, _ = s.loss(s.module, batch, seed=0)
    loss.backward()
    grads = [p.grad for p in s.module.parameters() if p.requires_grad]
    assert loss.device == meta and grads and all(g is not None and g.device == meta for g in grads)
