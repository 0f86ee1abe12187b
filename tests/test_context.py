"""Context conditioning c_S = (m_S * z, m_S): a no-op at first, then it conditions; saved with the temporal file."""
import pytest
import torch

from conftest import make_unet, randomize_temporal
from videoldm import VideoUNet


def randomize(module, seed=2, std=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


@pytest.fixture
def model():
    return randomize_temporal(VideoUNet.from_unet2d(make_unet(), context_conditioning=True)).eval()


def inputs(B=2, T=4):
    torch.manual_seed(0)
    return torch.randn(B, 4, T, 8, 8), torch.tensor([500, 20]), torch.randn(B, 7, 32)


@torch.no_grad()
def test_a_new_context_encoder_is_a_no_op(model):
    sample, t, text = inputs()
    context, mask = torch.randn_like(sample), torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]])
    plain = VideoUNet.from_unet2d(model.unet)
    plain.temporal_layers.load_state_dict(model.temporal_layers.state_dict())
    expected = plain(sample, t, text).sample
    assert torch.equal(model(sample, t, text, context=context, context_mask=mask).sample, expected)
    assert torch.equal(model(sample, t, text).sample, expected)


@torch.no_grad()
def test_given_frames_condition_and_masked_frames_do_not(model):
    randomize(model.context_encoder)
    sample, t, text = inputs()
    context, mask = torch.randn_like(sample), torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]])
    out = model(sample, t, text, context=context, context_mask=mask).sample
    assert (out - model(sample, t, text).sample).abs().max() > 1e-4  # S = 2 differs from S = 0
    changed = context.clone()
    changed[:, :, 3] += 1.0  # frame 3 is not given in either video: it must not matter
    assert torch.equal(model(sample, t, text, context=changed, context_mask=mask).sample, out)
    changed = context.clone()
    changed[0, :, 0] += 1.0  # a given frame of video 0: changes video 0 only
    other = model(sample, t, text, context=changed, context_mask=mask).sample
    assert (other[0] - out[0]).abs().max() > 1e-4 and torch.equal(other[1], out[1])


def test_context_encoder_is_trained_and_saved_with_the_temporal_layers(model, tmp_path):
    params = model.trainable_parameters()
    assert any(p is q for p in params for q in model.context_encoder.parameters())
    sample, t, text = inputs()
    model.train()
    model(sample, t, text, context=torch.randn_like(sample), context_mask=torch.ones(2, 4)).sample.square().mean().backward()
    assert all(p.grad is not None for p in model.context_encoder.parameters())
    randomize(model.context_encoder)
    model.save_temporal_layers(tmp_path / "t")
    loaded = VideoUNet.from_unet2d(make_unet(), temporal_layers=tmp_path / "t").eval()
    assert loaded.config.context_conditioning
    model.eval()
    context, mask = torch.randn_like(sample), torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0]])
    with torch.no_grad():
        assert torch.equal(loaded(sample, t, text, context=context, context_mask=mask).sample,
                           model(sample, t, text, context=context, context_mask=mask).sample)
    VideoUNet.from_unet2d(make_unet()).save_temporal_layers(tmp_path / "plain")
    with pytest.raises(ValueError, match="context_encoder"):
        VideoUNet.from_unet2d(make_unet(), context_conditioning=True).load_temporal_layers(tmp_path / "plain")


def test_bad_context_gets_a_clear_error(model):
    sample, t, text = inputs()
    with pytest.raises(ValueError, match=r"context_mask must be \(B, T\)"):
        model(sample, t, text, context=sample, context_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="sample's shape"):
        model(sample, t, text, context=sample[:, :, :2], context_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="both"):
        model(sample, t, text, context=sample)
    with pytest.raises(ValueError, match="binary"):
        model(sample, t, text, context=sample, context_mask=torch.full((2, 4), 0.5))
    with pytest.raises(ValueError, match="no context encoder"):
        VideoUNet.from_unet2d(make_unet())(sample, t, text, context=sample, context_mask=torch.ones(2, 4))


def test_guidance_on_context_one_is_the_conditional_prediction(model):
    from diffusers import DDIMScheduler

    from videoldm.inference.sampling import sample

    randomize(model.context_encoder)
    _, _, text = inputs()
    context, mask = torch.randn(2, 4, 4, 8, 8), torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0]])
    none = torch.zeros_like(mask)

    def run(scale, **kw):
        return sample(model, DDIMScheduler(num_train_timesteps=1000), (2, 4, 4, 8, 8), cond=text, guidance_scale=scale,
                      num_inference_steps=2, generator=0, progress=False, context=context, **kw)

    conditional = run(1.0, context_mask=mask)
    assert torch.equal(run(1.0, context_mask=mask, uncond_kwargs={"context_mask": none}), conditional)
    guided = run(3.0, context_mask=mask, uncond_kwargs={"context_mask": none})
    assert (guided - conditional).abs().max() > 1e-4
    with pytest.raises(ValueError, match="no conditional counterpart"):
        run(3.0, context_mask=mask, uncond_kwargs={"other": none})


def test_carried_latents_are_the_nearest_given_frames_with_their_closeness():
    from videoldm.models.context_encoder import carried

    z = torch.arange(5.0).view(1, 1, 5, 1, 1).expand(2, 1, 5, 1, 1).contiguous()  # frame t holds t
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 1]])
    before, after = carried(z, mask)
    assert before[0, 0, :, 0, 0].tolist() == [0, 1, 1, 1, 1]  # prediction: the last given frame
    assert before[0, 1, :, 0, 0].tolist() == pytest.approx([1, 1, 1 / 2, 1 / 3, 1 / 4])
    assert after[0, :, 2:].abs().sum() == 0  # nothing given after frame 1: zeros, closeness 0
    assert after[1, 0, :, 0, 0].tolist() == [0, 4, 4, 4, 4]  # interpolation: the keyframe after
    assert before[1, 0, :, 0, 0].tolist() == [0, 0, 0, 0, 4]
    assert after[1, 1, :, 0, 0].tolist() == pytest.approx([1, 1 / 4, 1 / 3, 1 / 2, 1])


@torch.no_grad()
def test_carry_lets_a_given_frame_reach_frames_after_it_directly():
    """With carry, frame 3 sees given frame 1 through its own context features (no temporal layer needed:
    they are all zero here); without carry it cannot."""
    from conftest import make_unet

    unet = make_unet()
    carry = VideoUNet.from_unet2d(unet, context_conditioning=True, context_carry=True).eval()
    randomize(carry.context_encoder)
    sample, t, text = inputs()
    context, mask = torch.randn_like(sample), torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0]])
    changed = context.clone()
    changed[:, :, 1] += 1.0
    out = carry(sample, t, text, context=context, context_mask=mask).sample
    other = carry(sample, t, text, context=changed, context_mask=mask).sample
    assert (other[:, :, 3] - out[:, :, 3]).abs().max() > 1e-4
    plain = VideoUNet.from_unet2d(unet, context_conditioning=True).eval()  # temporal layers zero: per frame
    randomize(plain.context_encoder)
    assert torch.equal(plain(sample, t, text, context=changed, context_mask=mask).sample[:, :, 3],
                       plain(sample, t, text, context=context, context_mask=mask).sample[:, :, 3])


def test_a_model_with_another_context_design_starts_a_fresh_encoder(model, tmp_path):
    randomize(model.context_encoder)
    model.save_temporal_layers(tmp_path / "t")
    carry = VideoUNet.from_unet2d(model.unet, context_conditioning=True, context_carry=True)
    with pytest.raises(ValueError, match="context_encoder.conv_in"):
        carry.load_temporal_layers(tmp_path / "t")
    carry.load_temporal_layers(tmp_path / "t", fresh_context=True)
    assert all(torch.equal(a, b) for a, b in zip(carry.temporal_layers.state_dict().values(),
                                                 model.temporal_layers.state_dict().values()))
    assert all(p.abs().sum() == 0 for name, p in carry.context_encoder.projections.named_parameters())


@torch.no_grad()
def test_clean_context_feeds_given_frames_clean_at_timestep_zero():
    """A given frame enters the image UNet as its clean latent at t = 0 (checked with alpha = 1, where a
    frame's output is the image UNet's on that frame), so its noisy latent no longer matters anywhere."""
    unet = make_unet()
    model = randomize_temporal(VideoUNet.from_unet2d(unet, context_conditioning=True, clean_context=True)).eval()
    randomize(model.context_encoder)
    sample, t, text = inputs()
    context, mask = torch.randn_like(sample), torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]])
    images = model(sample, t, text, image_only=torch.ones(2, dtype=torch.bool), context=context, context_mask=mask).sample
    expected = unet(context[0, :, 1][None], torch.tensor([0]), text[:1]).sample[0]
    assert (images[0, :, 1] - expected).abs().max() < 1e-5
    noisy_frame = unet(sample[0, :, 2][None], t[:1], text[:1]).sample[0]  # frame 2 is not given: unchanged
    assert (images[0, :, 2] - noisy_frame).abs().max() < 1e-5
    out = model(sample, t, text, context=context, context_mask=mask).sample
    other = sample.clone()
    other[0, :, :2] += 1.0  # the noisy latents of given frames are replaced: no effect
    assert torch.equal(model(other, t, text, context=context, context_mask=mask).sample, out)
    assert (out - model(sample, t, text).sample).abs().max() > 1e-4  # S = 0 is the plain noisy input
    with pytest.raises(ValueError, match="context_conditioning"):
        VideoUNet.from_unet2d(unet, clean_context=True)


def test_clean_context_leaves_given_frames_out_of_the_loss():
    from diffusers import DDPMScheduler

    from videoldm.training.stages.base import diffusion_loss

    scheduler = DDPMScheduler()
    out, noise = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    weights = torch.tensor([[0.0, 1, 1], [1, 1, 1]])
    loss = diffusion_loss(out, scheduler, None, noise, None, weights)
    per_frame = (out - noise).pow(2).mean(dim=(1, 3, 4))
    assert torch.allclose(loss, (per_frame[0, 1:].sum() + per_frame[1].sum()) / 5)
    assert torch.allclose(diffusion_loss(out, scheduler, None, noise, None), (out - noise).pow(2).mean())


def test_velocity_weighting_gives_an_epsilon_model_the_loss_of_a_v_prediction_model():
    """(v - v_hat) = (eps - eps_hat) / sqrt(alpha_bar) for an epsilon model's v_hat, so the weighted loss is the
    v-prediction loss of the same prediction; a v-prediction model's loss is left as it is."""
    from diffusers import DDPMScheduler

    from videoldm.training.stages.base import diffusion_loss

    scheduler = DDPMScheduler(beta_schedule="linear", beta_start=0.00085, beta_end=0.012)
    latents, noise, eps_hat = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    t = torch.tensor([10, 990])
    a = scheduler.alphas_cumprod[t].view(2, 1, 1, 1, 1)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    x0_hat = (noisy - (1 - a).sqrt() * eps_hat) / a.sqrt()
    v_hat = a.sqrt() * eps_hat - (1 - a).sqrt() * x0_hat
    v = scheduler.get_velocity(latents, noise, t)
    weighted = diffusion_loss(eps_hat, scheduler, latents, noise, t, weighting="velocity")
    assert torch.allclose(weighted, (v_hat - v).pow(2).mean(), rtol=1e-4)
    assert weighted > 10 * diffusion_loss(eps_hat, scheduler, latents, noise, t)  # the t = 990 clip dominates
    frames = torch.tensor([[0.0, 1, 1], [1, 1, 1]])
    per_frame = ((v_hat - v).pow(2)).mean(dim=(1, 3, 4))
    assert torch.allclose(diffusion_loss(eps_hat, scheduler, latents, noise, t, frames, weighting="velocity"),
                          (per_frame[0, 1:].sum() + per_frame[1].sum()) / 5, rtol=1e-4)
    vpred = DDPMScheduler(prediction_type="v_prediction")
    assert torch.equal(diffusion_loss(v_hat, vpred, latents, noise, t, weighting="velocity"),
                       diffusion_loss(v_hat, vpred, latents, noise, t))
    with pytest.raises(ValueError, match="loss weighting"):
        diffusion_loss(eps_hat, scheduler, latents, noise, t, weighting="snr")
