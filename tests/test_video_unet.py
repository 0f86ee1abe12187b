import copy
import re

import pytest
import torch
from conftest import force_alpha, make_unet, randomize_temporal

from videoldm import VideoUNet


def frame_by_frame(unet, x, t, ehs, **kwargs):
    B, C, T, H, W = x.shape
    out = unet(x.transpose(1, 2).reshape(B * T, C, H, W), t.repeat_interleave(T), ehs.repeat_interleave(T, 0),
               **{k: v.repeat_interleave(T, 0) for k, v in kwargs.items()}).sample
    return out.view(B, T, -1, H, W).transpose(1, 2)


def inputs(B=2, T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 4, T, 8, 8, generator=g), torch.tensor([10, 700])[:B], torch.randn(B, 6, 32, generator=g)


@pytest.fixture
def video(unet):
    return randomize_temporal(VideoUNet.from_unet2d(unet))


def test_layers_attach_after_every_resnet_and_transformer_block(video):
    keys = set(video.temporal_layers)
    pattern = re.compile(r"^(down_blocks\.\d|mid_block|up_blocks\.\d)\.(resnets|attentions)\.\d$")
    spatial = {n.replace(".", "_") for n, _ in video.unet.named_modules() if pattern.match(n)}
    assert keys == spatial and any(k.startswith("mid_block") for k in keys)
    assert len(keys) == 3 + 6 + 3  # down: resnet+attn, resnet; up: 2 resnets, 2 x (resnet+attn); mid: 2 resnets+attn
    names = [n for n, _ in video.named_parameters()]
    assert "unet.down_blocks.0.resnets.0.conv1.weight" in names  # spatial keys keep their diffusers names
    assert set(video.unet.state_dict()) == set(make_unet().state_dict())


def test_alpha_one_gives_back_the_image_model(unet, video):
    x, t, ehs = inputs()
    expected = frame_by_frame(unet, x, t, ehs)
    with torch.no_grad():
        assert (video(x, t, ehs).sample - expected).abs().max() > 1e-3  # the temporal layers do something
        force_alpha(video, 1.0)
        assert (video(x, t, ehs).sample - expected).abs().max() <= 1e-5
        force_alpha(video, 0.5)
        # the per-sample override: sample 0 is an image, sample 1 a video
        mixed = video(x, t, ehs, image_only=torch.tensor([True, False])).sample
        assert (mixed[0] - expected[0]).abs().max() <= 1e-5
        assert (mixed[1] - expected[1]).abs().max() > 1e-3


def test_batch_and_guidance_doubling_are_independent_per_sample(video):
    x, t, ehs = inputs(B=2)
    with torch.no_grad():
        both = video(x, t, ehs).sample
        alone = video(x[1:], t[1:], ehs[1:]).sample
        doubled = video(torch.cat([x, x]), torch.cat([t, t]), torch.cat([torch.zeros_like(ehs), ehs])).sample
    assert torch.allclose(both[1:], alone, atol=1e-5)
    assert torch.allclose(doubled[2:], both, atol=1e-5)


def test_frames_interact_and_any_length_runs(video):
    x, t, ehs = inputs(B=1, T=6)
    y = x.clone()
    y[:, :, 0] += 1.0
    with torch.no_grad():
        assert not torch.allclose(video(x, t, ehs).sample[:, :, 5], video(y, t, ehs).sample[:, :, 5], atol=1e-4)
        video_windowed = VideoUNet.from_unet2d(make_unet(), attention_window=2)
        for T in (1, 24):
            assert video_windowed(torch.randn(1, 4, T, 8, 8), t, ehs).sample.shape == (1, 4, T, 8, 8)


def test_per_frame_timesteps_and_tokens_match_per_video(video):
    x, t, ehs = inputs(B=2, T=3)
    with torch.no_grad():
        per_video = video(x, t, ehs).sample
        per_frame = video(x, t[:, None].expand(2, 3), ehs[:, None].expand(2, 3, 6, 32)).sample
    assert torch.allclose(per_video, per_frame, atol=1e-5)


def test_temporal_tokens_are_separable_from_spatial_tokens(video):
    x, t, ehs = inputs()
    other = torch.randn_like(ehs)
    with torch.no_grad():
        same = video(x, t, ehs).sample
        split = video(x, t, ehs, temporal_encoder_hidden_states=other).sample
        force_alpha(video, 1.0)  # the image path ignores the temporal tokens
        assert torch.allclose(video(x, t, ehs, temporal_encoder_hidden_states=other).sample,
                              video(x, t, ehs).sample)
    assert not torch.allclose(same, split, atol=1e-4)


def test_gradient_step_changes_only_temporal_parameters(video):
    spatial_before = copy.deepcopy(video.unet.state_dict())
    temporal_before = {k: v.clone() for k, v in video.temporal_layers.state_dict().items()}
    trainable = video.trainable_parameters()
    trainable_ids = {id(p) for p in trainable}
    assert trainable_ids == {id(p) for p in video.temporal_layers.parameters()}
    assert not any(p.requires_grad for p in video.unet.parameters())
    opt = torch.optim.AdamW(video.parameters(), lr=1e-2)  # even an optimiser over everything
    x, t, ehs = inputs()
    loss = (video(x, t, ehs).sample - torch.randn_like(x)).pow(2).mean()
    loss.backward()
    opt.step()
    for k, v in video.unet.state_dict().items():
        assert torch.equal(v, spatial_before[k]), k
    changed = [k for k, v in video.temporal_layers.state_dict().items() if not torch.equal(v, temporal_before[k])]
    assert len(changed) > 0.9 * len(temporal_before)
    assert any(k.endswith("mix.mix_logit") for k in changed)


def test_gradient_checkpointing_gives_the_same_gradients(unet):
    x, t, ehs = inputs()
    grads = []
    for checkpointing in (False, True):
        video = randomize_temporal(VideoUNet.from_unet2d(make_unet()))
        if checkpointing:
            video.enable_gradient_checkpointing()
        video(x, t, ehs).sample.square().mean().backward()
        grads.append({n: p.grad for n, p in video.temporal_layers.named_parameters()})
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], atol=1e-6), name


def test_swapping_the_image_model_keeps_the_temporal_layers(tmp_path, video):
    x, t, ehs = inputs()
    opt = torch.optim.AdamW(video.trainable_parameters(), lr=1e-3)
    for _ in range(2):  # train briefly on the first image UNet
        opt.zero_grad()
        (video(x, t, ehs).sample - x).pow(2).mean().backward()
        opt.step()
    video.save_temporal_layers(tmp_path / "temporal")
    finetuned = make_unet(seed=123)  # same architecture, other weights (a DreamBooth, a style)
    new_weights = copy.deepcopy(finetuned.state_dict())
    swapped = VideoUNet.from_unet2d(finetuned, temporal_layers=tmp_path / "temporal")
    for k, v in swapped.unet.state_dict().items():
        assert torch.equal(v, new_weights[k]), k
    for k, v in swapped.temporal_layers.state_dict().items():
        assert torch.equal(v, video.temporal_layers.state_dict()[k]), k
    with torch.no_grad():
        out = swapped(x, t, ehs).sample
    assert torch.isfinite(out).all() and not torch.allclose(out, video(x, t, ehs).sample)


def test_temporal_file_for_another_architecture_is_a_clear_error(tmp_path, video):
    video.save_temporal_layers(tmp_path / "small")
    other = VideoUNet.from_unet2d(make_unet(block_out_channels=(32, 48)))
    with pytest.raises(ValueError, match=r"down_blocks_1_resnets_0.*shape"):
        other.load_temporal_layers(tmp_path / "small")
    deeper = VideoUNet.from_unet2d(make_unet(layers_per_block=2))
    with pytest.raises(ValueError, match="no weight for layer"):
        deeper.load_temporal_layers(tmp_path / "small")
    with pytest.raises(FileNotFoundError):
        other.load_temporal_layers(tmp_path / "missing")


def test_temporal_weights_are_safetensors_only(tmp_path, video):
    video.save_temporal_layers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["temporal_config.json", "temporal_layers.safetensors"]


@pytest.mark.parametrize("bad, match", [
    (dict(sample=torch.randn(2, 4, 8, 8)), "B, C, T, H, W"),
    (dict(sample=torch.randn(2, 3, 5, 8, 8)), "channels"),
    (dict(encoder_hidden_states=torch.randn(3, 6, 32)), "encoder_hidden_states"),
    (dict(encoder_hidden_states=torch.randn(2, 4, 6, 32)), "per frame"),
    (dict(encoder_hidden_states=torch.randn(2, 6, 31)), "dimension 31"),
    (dict(timestep=torch.tensor([1, 2, 3])), "timestep"),
    (dict(image_only=torch.tensor([1, 0])), "image_only"),
    (dict(encoder_hidden_states=None), "encoder_hidden_states is None, but the image UNet has cross-attention"),
])
def test_bad_input_is_a_clear_value_error(video, bad, match):
    x, t, ehs = inputs()
    args = dict(sample=x, timestep=t, encoder_hidden_states=ehs)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        video(**args)


def test_save_and_load_pretrained_round_trip(tmp_path, video):
    x, t, ehs = inputs()
    video.save_pretrained(tmp_path)
    loaded = VideoUNet.from_pretrained(tmp_path)
    assert not any(p.requires_grad for p in loaded.unet.parameters())
    assert all(p.requires_grad for p in loaded.trainable_parameters())
    with torch.no_grad():
        assert torch.equal(loaded(x, t, ehs).sample, video(x, t, ehs).sample)


def test_image_unet_alone_is_untouched_by_attachment(unet):
    x, t, ehs = inputs(B=1, T=1)
    frames = x[:, :, 0]
    with torch.no_grad():
        before = unet(frames, t, ehs).sample
        randomize_temporal(VideoUNet.from_unet2d(unet))
        assert torch.equal(unet(frames, t, ehs).sample, before)


def test_upscaler_class_labels_pass_through_per_frame():
    unet = make_unet(in_channels=7, num_class_embeds=1000)
    video = randomize_temporal(VideoUNet.from_unet2d(unet))
    force_alpha(video, 1.0)
    x, t, ehs = torch.randn(2, 7, 3, 8, 8), torch.tensor([5, 50]), torch.randn(2, 6, 32)
    noise_level = torch.tensor([20, 300])
    with torch.no_grad():
        out = video(x, t, ehs, class_labels=noise_level).sample
        assert out.shape == (2, 4, 3, 8, 8)
        assert (out - frame_by_frame(unet, x, t, ehs, class_labels=noise_level)).abs().max() <= 1e-5


def test_sdxl_style_added_conditions_pass_through():
    unet = make_unet(addition_embed_type="text_time", addition_time_embed_dim=8,
                     projection_class_embeddings_input_dim=16 + 6 * 8, use_linear_projection=True,
                     transformer_layers_per_block=(2, 1))
    video = randomize_temporal(VideoUNet.from_unet2d(unet))
    added = {"text_embeds": torch.randn(2, 16), "time_ids": torch.randn(2, 6)}
    x, t, ehs = inputs()
    with torch.no_grad():
        assert video(x, t, ehs, added_cond_kwargs=added).sample.shape == x.shape
