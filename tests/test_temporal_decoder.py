"""The temporal decoder: exact image decoder at alpha = 1, chunked and tiled decoding, its own weight file."""
import pytest
import torch
from diffusers import AutoencoderKL

from conftest import TINY_AE as AE, force_alpha, randomize_temporal
from videoldm.models.discriminator import (VideoDiscriminator, adaptive_weight, discriminator_loss,
                                           generator_loss)
from videoldm.models.frames import window_starts
from videoldm.models.temporal_decoder import TemporalDecoder


def make_vae(seed=0, **overrides):
    torch.manual_seed(seed)
    return AutoencoderKL(**{**AE, **overrides}).eval()


def frame_by_frame(vae, z):
    B, C, T, h, w = z.shape
    out = vae.decode(z.transpose(1, 2).flatten(0, 1)).sample
    return out.view(B, T, *out.shape[1:]).transpose(1, 2)


@pytest.fixture
def decoder():
    return randomize_temporal(TemporalDecoder.from_autoencoder(make_vae()), std=0.1).eval()


def test_layers_sit_after_every_decoder_resnet_and_attention_and_never_in_the_encoder(decoder):
    keys = set(decoder.temporal_layers)
    from diffusers.models.resnet import ResnetBlock2D

    resnets = [m for m in decoder.vae.decoder.modules() if isinstance(m, ResnetBlock2D)]
    assert len(keys) == len(resnets) + 1  # + the mid-block attention
    assert "decoder_mid_block_attentions_0" in keys
    assert not any(k.startswith("encoder") for k in keys)


@torch.no_grad()
def test_alpha_one_is_the_image_decoder_and_other_alphas_are_not(decoder):
    z = torch.randn(2, 4, 5, 8, 8)
    reference = frame_by_frame(decoder.vae, z)
    force_alpha(decoder, 1.0)
    assert (decoder(z).sample - reference).abs().max() <= 1e-5
    force_alpha(decoder, 0.5)
    assert (decoder(z).sample - reference).abs().max() > 1e-3  # the temporal layers really act
    assert torch.equal(decoder(z, image_only=True).sample, reference)


@torch.no_grad()
def test_a_new_temporal_decoder_starts_as_the_image_decoder():
    vae = make_vae()
    z = torch.randn(1, 4, 4, 8, 8)
    assert (TemporalDecoder.from_autoencoder(vae, alpha_init=0.3)(z).sample - frame_by_frame(vae, z)).abs().max() <= 1e-5


@torch.no_grad()
def test_frames_interact_only_through_time(decoder):
    """Changing frame 0's latent changes later frames (temporal mixing) but not another video of the batch."""
    z = torch.randn(2, 4, 6, 8, 8)
    z2 = z.clone()
    z2[0, :, 0] += 1.0
    a, b = decoder(z).sample, decoder(z2).sample
    assert (a[0, :, 3] - b[0, :, 3]).abs().max() > 1e-4
    assert torch.equal(a[1], b[1])


def test_chunk_starts_cover_every_frame_with_the_overlap():
    for T in range(1, 40):
        for chunk, overlap in [(8, 2), (5, 0), (16, 4), (4, 3)]:
            starts = window_starts(T, chunk, overlap)
            assert starts[0] == 0 and min(starts[-1] + chunk, T) == T
            for a, b in zip(starts, starts[1:]):
                assert b > a and a + chunk - b >= overlap  # neighbours share at least `overlap` frames


@torch.no_grad()
def test_chunked_decoding_cross_fades_exactly(decoder):
    z = torch.randn(1, 4, 13, 8, 8)
    # without temporal mixing every chunk gives the same frames: the cross-fade must give them back
    assert (decoder.decode(z, chunk_size=5, overlap=2, image_only=True) - frame_by_frame(decoder.vae, z)).abs().max() < 1e-5
    whole = decoder(z).sample
    assert torch.equal(decoder.decode(z, chunk_size=None), whole)
    chunked = decoder.decode(z, chunk_size=6, overlap=3)
    assert chunked.shape == whole.shape
    pieces = list(decoder.iter_decode(z, chunk_size=6, overlap=3))
    assert len(pieces) > 1 and torch.equal(torch.cat(pieces, 2), chunked)
    with pytest.raises(ValueError, match="overlap"):
        decoder.decode(z, chunk_size=4, overlap=4)


@torch.no_grad()
def test_tiled_decoding_matches_diffusers_tiling_frame_by_frame(decoder):
    z = torch.randn(1, 4, 3, 16, 16)  # 32x32 pixels, tiles of 16
    vae = decoder.vae
    vae.enable_tiling()
    vae.tile_sample_min_size, vae.tile_latent_min_size = 16, 8
    reference = frame_by_frame(vae, z)
    vae.disable_tiling()
    tiled = decoder.decode(z, tile_size=16, image_only=True)
    assert (tiled - reference).abs().max() < 1e-5
    assert decoder.decode(z, tile_size=16).shape == (1, 3, 3, 32, 32)
    assert not vae.use_tiling  # the setting is restored
    with pytest.raises(ValueError, match="tile_size"):
        decoder.decode(z, tile_size=7)


def test_bad_latents_get_a_clear_error(decoder):
    with pytest.raises(ValueError, match="channels"):
        decoder(torch.randn(1, 3, 4, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        decoder(torch.randn(4, 4, 8, 8))


def test_temporal_weights_round_trip_and_refuse_another_autoencoder(decoder, tmp_path):
    decoder.save_temporal_layers(tmp_path / "td")
    assert {p.name for p in (tmp_path / "td").iterdir()} == {"temporal_decoder.safetensors",
                                                            "temporal_decoder_config.json"}
    loaded = TemporalDecoder.from_autoencoder(make_vae(), temporal_layers=tmp_path / "td").eval()
    z = torch.randn(1, 4, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(z).sample, decoder(z).sample)
    with pytest.raises(ValueError, match="block_out_channels"):
        TemporalDecoder.from_autoencoder(make_vae(block_out_channels=[8, 24]), temporal_layers=tmp_path / "td")
    with pytest.raises(ValueError, match="latent_channels"):
        TemporalDecoder.from_autoencoder(make_vae(latent_channels=8), temporal_layers=tmp_path / "td")
    with pytest.raises(FileNotFoundError, match="temporal-decoder"):
        TemporalDecoder.from_autoencoder(make_vae(), temporal_layers=tmp_path)


def test_save_pretrained_round_trip(decoder, tmp_path):
    decoder.save_pretrained(tmp_path / "full")
    loaded = TemporalDecoder.from_pretrained(tmp_path / "full").eval()
    z = torch.randn(1, 4, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(z).sample, decoder(z).sample)
    assert all(not p.requires_grad for p in loaded.vae.parameters())


def test_gradients_reach_only_the_temporal_layers(decoder):
    decoder.train()
    decoder(torch.randn(1, 4, 4, 8, 8)).sample.square().mean().backward()
    assert all(p.grad is None for p in decoder.vae.parameters())
    assert all(p.grad is not None for p in decoder.temporal_layers.parameters())


def test_video_discriminator_and_its_losses():
    disc = VideoDiscriminator(channels=8, num_layers=2)
    real, fake = torch.randn(2, 3, 8, 32, 32), torch.randn(2, 3, 8, 32, 32, requires_grad=True)
    logits = disc(fake)
    assert logits.shape[:3] == (2, 1, 8) and logits.shape[-1] < 32  # one logit per space-time patch
    for kind in ("hinge", "non-saturating"):
        assert discriminator_loss(disc(real), logits, kind).item() >= 0
        rec = (fake - real).abs().mean()
        weight = adaptive_weight(rec, generator_loss(logits, kind), fake)
        assert weight.item() > 0 and not weight.requires_grad
    with pytest.raises(ValueError, match="hinge"):
        generator_loss(logits, "wasserstein")
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        disc(torch.randn(2, 3, 32, 32))
