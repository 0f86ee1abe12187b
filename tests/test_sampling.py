import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from torch import nn

from conftest import make_unet, randomize_temporal
from videoldm import VideoUNet
from videoldm.inference.sampling import SCHEDULERS, frame_by_frame, make_scheduler, sample

TRAIN = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.00085, "beta_end": 0.012,
         "prediction_type": "epsilon"}
VIDEO, IMAGE = (2, 4, 3, 8, 8), (2, 4, 8, 8)


@pytest.fixture(scope="module")
def models():
    unet = make_unet(cross_attention_dim=64)
    video = randomize_temporal(VideoUNet.from_unet2d(unet)).eval()
    return unet, video


def tokens(batch=2, seed=0):
    return torch.randn(batch, 5, 64, generator=torch.Generator().manual_seed(seed))


def test_make_scheduler_follows_the_training_config():
    trained = DDPMScheduler(**{**TRAIN, "prediction_type": "v_prediction"})
    classes = {"ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler,
               "ddpm": DDPMScheduler}
    for name, cls in classes.items():
        s = make_scheduler(name, trained.config)
        assert type(s) is cls and s.config.prediction_type == "v_prediction"
        assert torch.allclose(s.alphas_cumprod, trained.alphas_cumprod)
        assert not s.config.get("clip_sample", False)  # DDPMScheduler's recorded default does not leak in
    assert make_scheduler("dpm++", TRAIN).config.algorithm_type == "dpmsolver++"
    assert make_scheduler("ddim", TRAIN, timestep_spacing="trailing").config.timestep_spacing == "trailing"
    with pytest.raises(ValueError, match="ddim, dpm\\+\\+, euler, ddpm"):
        make_scheduler("plms", TRAIN)


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_sampler_runs_on_images_and_videos(models, name):
    unet, video = models
    for model, shape in ((unet, IMAGE), (video, VIDEO)):
        out = sample(model, make_scheduler(name, TRAIN), shape, cond=tokens(), uncond=tokens(1, 1),
                     guidance_scale=2.0, num_inference_steps=2, generator=0, progress=False)
        assert out.shape == shape and torch.isfinite(out).all()


def test_seeds_reproduce(models):
    unet, _ = models

    def run(name, generator):
        return sample(unet, make_scheduler(name, TRAIN), IMAGE, cond=tokens(), num_inference_steps=2,
                      generator=generator, progress=False)

    for name in ("ddim", "ddpm"):  # deterministic and stochastic steps
        a = run(name, 7)
        assert torch.equal(a, run(name, 7)) and torch.equal(a, run(name, torch.Generator().manual_seed(7)))
        assert not torch.allclose(a, run(name, 8))


class Counting(nn.Module):
    """Wraps a model and records the batch size of every call."""

    def __init__(self, model):
        super().__init__()
        self.model, self.batches = model, []

    def forward(self, x, t, encoder_hidden_states=None, **kwargs):
        self.batches.append(x.shape[0])
        return self.model(x, t, encoder_hidden_states=encoder_hidden_states, **kwargs)


def test_guidance_scale_one_is_the_conditional_model(models):
    _, video = models
    counting = Counting(video)
    kw = dict(cond=tokens(), num_inference_steps=2, generator=0, progress=False)
    plain = sample(counting, make_scheduler("ddim", TRAIN), VIDEO, **kw)
    guided_one = sample(counting, make_scheduler("ddim", TRAIN), VIDEO, uncond=tokens(1, 1), guidance_scale=1.0, **kw)
    assert torch.equal(plain, guided_one)
    assert counting.batches == [2] * 4  # no doubled batch when guidance would change nothing


@pytest.mark.parametrize("name", ["ddim", "euler"])
def test_batched_guidance_equals_two_separate_passes(models, name):
    unet, video = models
    cond, uncond, s = tokens(), tokens(1, 1).expand(2, -1, -1), 3.0
    image_only = torch.tensor([False, True])  # a per-sample model kwarg: must be doubled with the batch
    counting = Counting(video)
    batched = sample(counting, make_scheduler(name, TRAIN), VIDEO, cond=cond, uncond=uncond[:1], guidance_scale=s,
                     num_inference_steps=3, generator=3, progress=False, model_kwargs={"image_only": image_only})
    assert counting.batches == [4] * 3

    scheduler = make_scheduler(name, TRAIN)
    scheduler.set_timesteps(3)
    x = torch.randn(VIDEO, generator=torch.Generator().manual_seed(3)) * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            xin = scheduler.scale_model_input(x, t)
            e_c = video(xin, t.expand(2), cond, image_only=image_only).sample
            e_u = video(xin, t.expand(2), uncond, image_only=image_only).sample
            x = scheduler.step(e_u + s * (e_c - e_u), t, x).prev_sample
    torch.testing.assert_close(batched, x, rtol=1e-4, atol=1e-4)  # Euler latents reach ~50: relative


def test_frame_by_frame_is_the_video_unet_at_alpha_one(models):
    unet, video = models
    x, cond = torch.randn(VIDEO), tokens()
    with torch.no_grad():
        wrapped = frame_by_frame(unet)(x, torch.tensor([10, 500]), cond).sample
        per_frame = torch.stack([unet(x[:, :, f], torch.tensor([10, 500]), cond).sample for f in range(3)], 2)
        image_only = video(x, torch.tensor([10, 500]), cond, image_only=torch.ones(2, dtype=torch.bool)).sample
        temporal = video(x, torch.tensor([10, 500]), cond).sample
    assert torch.allclose(wrapped, per_frame, atol=1e-5)
    assert torch.equal(wrapped, image_only)
    assert not torch.allclose(wrapped, temporal, atol=1e-3)  # the temporal layers do act
    kw = dict(cond=cond, uncond=tokens(1, 1), guidance_scale=2.0, num_inference_steps=2, generator=1, progress=False)
    assert torch.equal(sample(frame_by_frame(unet), make_scheduler("dpm++", TRAIN), VIDEO, **kw),
                       sample(video, make_scheduler("dpm++", TRAIN), VIDEO, image_only=torch.ones(2, dtype=torch.bool),
                              **kw))


class Oracle(nn.Module):
    """Predicts the exact noise (or v) of a known x0: any correct sampler must land on x0.

    alpha_bar at a (possibly fractional, as Euler's) timestep is read from the schedule's sigma table by
    linear interpolation, as the diffusers samplers do.
    """

    def __init__(self, x0, alphas_cumprod, prediction_type="epsilon"):
        super().__init__()
        self.x0, self.prediction_type = x0, prediction_type
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().double().numpy()

    def forward(self, x, t, encoder_hidden_states=None):
        sigma = np.interp(t[0].item(), np.arange(len(self.sigmas)), self.sigmas)
        a = 1.0 / (1.0 + sigma ** 2)
        x = x.double()
        eps = (x - a ** 0.5 * self.x0) / (1 - a) ** 0.5
        return eps if self.prediction_type == "epsilon" else a ** 0.5 * eps - (1 - a) ** 0.5 * self.x0


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_oracle_model_recovers_x0(name, prediction_type):
    config = {**TRAIN, "prediction_type": prediction_type}
    x0 = torch.randn(VIDEO, generator=torch.Generator().manual_seed(5)).double() * 1.5  # beyond [-1, 1]: no clipping
    oracle = Oracle(x0, DDPMScheduler(**config).alphas_cumprod, prediction_type)
    out = sample(oracle, make_scheduler(name, config), VIDEO, num_inference_steps=10, generator=0, progress=False)
    assert (out - x0).abs().max() < 1e-3
    # One step from t = 999 reads x0 from a single prediction; under the other prediction type it is far off
    # (with many steps it would not show: near t = 0, epsilon and v nearly coincide).
    one_step = dict(num_inference_steps=1, generator=0, progress=False)
    other = {**TRAIN, "prediction_type": "v_prediction" if prediction_type == "epsilon" else "epsilon"}
    right = sample(oracle, make_scheduler(name, config, timestep_spacing="trailing"), VIDEO, **one_step)
    wrong = sample(oracle, make_scheduler(name, other, timestep_spacing="trailing"), VIDEO, **one_step)
    assert (right - x0).abs().max() < 1e-3 and (wrong - x0).abs().max() > 0.5


def test_interpolation_seeds_are_those_of_earlier_versions():
    """Stack passes and rollout clips draw the noise they drew before the two shared one seed function."""
    from videoldm.inference.seeding import interpolation_seed

    for seed in (0, 3, 12345):
        assert interpolation_seed(seed, 2) == seed * 1_000_003 + 7919 * 2  # the stack's second pass
        assert interpolation_seed(seed, clip=5) == seed * 1_000_003 + 5  # rollout clip 5


def test_the_pipeline_calls_back_after_every_step_and_takes_a_generator(chain):
    """diffusers' callback_on_step_end: once per step with the latents, which it may replace; raising stops;
    generator= gives what the same seed gives."""
    import pytest
    import torch

    from videoldm import VideoLDMPipeline

    _, _, _, temporal = chain
    pipe = VideoLDMPipeline.from_pretrained(temporal)
    seen = []

    def record(pipeline, step, timestep, tensors):
        seen.append((step, int(timestep), tuple(tensors["latents"].shape)))
        return {"latents": torch.zeros_like(tensors["latents"])} if step == 2 else {}

    run = dict(num_frames=3, num_inference_steps=3, progress=False, output_type="latent")
    zeroed = pipe(["a red circle"], callback_on_step_end=record, **run).frames
    assert [s for s, _, _ in seen] == [0, 1, 2] and seen[0][1] > seen[-1][1]
    assert torch.equal(zeroed, torch.zeros_like(zeroed))  # what the last call returned is the result
    by_seed = pipe(["a red circle"], seed=5, **run).frames
    assert torch.equal(pipe(["a red circle"], generator=torch.Generator().manual_seed(5), **run).frames, by_seed)

    def cancel(pipeline, step, timestep, tensors):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipe(["a red circle"], callback_on_step_end=cancel, **run)
