import pytest
import torch
import torch.nn.functional as F

from videoldm.models import (AlphaBlender, RotaryTimeEmbedding, TemporalResBlock, TemporalSelfAttention,
                             TemporalTransformer, local_attention)


def test_alpha_blender_range_init_and_image_override():
    blender = AlphaBlender(alpha_init=0.3)
    assert abs(blender.alpha.item() - 0.3) < 1e-6
    with torch.no_grad():
        blender.mix_logit.fill_(100.0)
        assert blender.alpha.item() <= 1.0
        blender.mix_logit.fill_(-100.0)
        assert blender.alpha.item() >= 0.0
        blender.mix_logit.fill_(0.0)
    spatial, temporal = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    out = blender(spatial, temporal, image_only=torch.tensor([True, False, True, False]))
    assert torch.equal(out[0], spatial[0]) and torch.equal(out[2], spatial[2])
    assert torch.allclose(out[1], 0.5 * spatial[1] + 0.5 * temporal[1])
    with pytest.raises(ValueError):
        AlphaBlender(alpha_init=1.5)


def test_rotary_scores_depend_on_frame_offset_only():
    rope = RotaryTimeEmbedding(16)
    torch.manual_seed(0)
    q = rope(torch.randn(16).expand(12, 16))  # the same query vector at every frame
    k = rope(torch.randn(16).expand(12, 16))
    scores = q @ k.T
    for offset in range(-11, 12):
        diagonal = torch.diagonal(scores, offset)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-5), offset
    assert not torch.allclose(torch.diagonal(scores, 0)[0], torch.diagonal(scores, 3)[0])


@pytest.mark.parametrize("T,window", [(1, 2), (5, 2), (9, 2), (17, 4), (23, 3), (8, 1), (30, 8)])
def test_local_attention_equals_band_masked_attention(T, window):
    torch.manual_seed(T)
    q, k, v = (torch.randn(3, 2, T, 8) for _ in range(3))
    i = torch.arange(T)
    band = (i[:, None] - i[None, :]).abs() <= window
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=band)
    assert torch.allclose(local_attention(q, k, v, window), expected, atol=1e-5)


def test_frames_attend_to_each_other_within_the_window_only():
    torch.manual_seed(0)
    full, local = TemporalSelfAttention(16, 2), TemporalSelfAttention(16, 2, window=2)
    local.load_state_dict(full.state_dict())
    x = torch.randn(3, 10, 16)
    y = x.clone()
    y[:, 0] += 1.0  # change frame 0 only
    # with full attention frame 7 sees frame 0; with a window of 2 it does not, frame 2 does
    assert not torch.allclose(full(x)[:, 7], full(y)[:, 7])
    assert torch.allclose(local(x)[:, 7], local(y)[:, 7], atol=1e-6)
    assert not torch.allclose(local(x)[:, 2], local(y)[:, 2])


@pytest.mark.parametrize("window", [2, 3])
def test_temporal_attention_is_shift_equivariant(window):
    torch.manual_seed(0)
    layer = TemporalTransformer(16, heads=2, token_dim=None, norm_groups=4, window=window, zero_init=False).eval()
    B, T, C, H, W, shift = 2, 40, 16, 2, 3, 7
    clip = torch.randn(B, T + shift, C, H, W)
    a = layer(clip[:, :T].reshape(B * T, C, H, W), num_frames=T).view(B, T, C, H, W)
    b = layer(clip[:, shift:].reshape(B * T, C, H, W), num_frames=T).view(B, T, C, H, W)
    # frames far enough from both clips' ends see the same neighbours at the same offsets
    lo, hi = shift + window, T - window
    assert torch.allclose(a[:, lo:hi], b[:, lo - shift:hi - shift], atol=1e-5)
    assert not torch.allclose(a[:, :window], b[:, :window], atol=1e-3)  # the test could fail


def test_temporal_transformer_cross_attention_per_video_and_per_frame():
    torch.manual_seed(0)
    layer = TemporalTransformer(16, heads=2, token_dim=12, norm_groups=4, zero_init=False).eval()
    B, T = 2, 3
    x = torch.randn(B * T, 16, 4, 4)
    ctx = torch.randn(B, 5, 12)
    per_video = layer(x, T, ctx)
    per_frame = layer(x, T, ctx.repeat_interleave(T, 0))
    assert torch.allclose(per_video, per_frame, atol=1e-5)
    assert not torch.allclose(per_video, layer(x, T, torch.randn(B, 5, 12)), atol=1e-4)


def test_temporal_res_block_is_3d_conv_residual_and_starts_as_identity():
    block = TemporalResBlock(16, temb_channels=8, norm_groups=4, spatial_kernel=3)
    assert block.conv1.kernel_size == (3, 3, 3)
    x, temb = torch.randn(2 * 5, 16, 4, 4), torch.randn(2 * 5, 8)
    assert torch.equal(block(x, 5, temb), x)  # zero-initialised last conv
    torch.nn.init.normal_(block.conv2.weight, std=0.1)
    y = x.clone().view(2, 5, 16, 4, 4)
    y[:, 0] += 1
    out_x, out_y = block(x, 5, temb).view(2, 5, 16, 4, 4), block(y.view(10, 16, 4, 4), 5, temb).view(2, 5, 16, 4, 4)
    assert not torch.allclose(out_x[:, 1], out_y[:, 1])  # frame 1 sees frame 0 through the time kernel
    assert block(torch.randn(3, 16, 4, 4), 1, torch.randn(3, 8)).shape == (3, 16, 4, 4)  # T = 1


@pytest.mark.parametrize("spatial_kernel", [1, 3])
def test_temporal_res_block_equals_its_3d_convolutions(spatial_kernel):
    torch.manual_seed(0)
    block = TemporalResBlock(16, temb_channels=8, norm_groups=4, spatial_kernel=spatial_kernel, zero_init=False)
    B, T, H, W = 2, 5, 4, 3
    x, temb = torch.randn(B * T, 16, H, W), torch.randn(B * T, 8)
    video = x.view(B, T, 16, H, W).transpose(1, 2)
    h = block.conv1(F.silu(block.norm1(video)))
    h = h + block.time_emb_proj(F.silu(temb)).view(B, T, 16).transpose(1, 2)[..., None, None]
    h = block.conv2(F.silu(block.norm2(h)))
    expected = x + h.transpose(1, 2).reshape(B * T, 16, H, W)
    assert torch.allclose(block(x, T, temb), expected, atol=1e-5)
