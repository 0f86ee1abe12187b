"""`TemporalDecoder`: the decoder of a diffusers ``AutoencoderKL`` made video-aware (Video LDM, section 3).

An image autoencoder decodes every frame on its own, so fine detail flickers from frame to frame. Here
temporal layers are attached, by forward hooks, to the decoder's blocks: a residual block of 3D
convolutions after every ResNet block (every decoder resolution) and temporal attention after the
decoder's attention. The encoder is untouched, so its latents, and every diffusion model trained on
them, stay valid. With alpha = 1 the image decoder comes back exactly.

Long videos are decoded in overlapping chunks of frames, blended over the overlap, so peak memory is set
by the chunk size, not the video length; large frames can also be decoded in spatial tiles (diffusers'
tiling, which keeps all frames of a tile together, so the temporal layers still see videos).
"""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import torch
from diffusers import AutoencoderKL, ModelMixin  # ModelMixin: diffusers' pipeline loader looks it up here
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.resnet import ResnetBlock2D
from torch import nn
from tqdm.auto import tqdm

from .attach import (FrameState, TemporalAttachment, attach, layer_key, load_temporal_weights, read_json,
                     save_temporal_weights)
from .frames import vae_scale_factor, window_starts
from .temporal_layers import TemporalResBlock, TemporalTransformer

TEMPORAL_DECODER_WEIGHTS = "temporal_decoder.safetensors"
TEMPORAL_DECODER_CONFIG = "temporal_decoder_config.json"
# ResNet and attention blocks of the decoder's mid block and up blocks (not the encoder's).
_ATTACH_POINT = re.compile(r"^decoder\.(mid_block|up_blocks\.\d+)\.(resnets|attentions)\.\d+$")
# What must match between a saved temporal decoder and the autoencoder it is loaded onto.
_ARCHITECTURE_KEYS = ("latent_channels", "block_out_channels", "layers_per_block", "up_block_types",
                      "norm_num_groups", "mid_block_add_attention")


class TemporalDecoder(TemporalAttachment):
    """An ``AutoencoderKL`` whose decoder has temporal layers attached.

    Args:
        vae_config: the image autoencoder's diffusers config.
        temporal_kernel_size / spatial_kernel_size: kernel of the 3D convolutions over (t) and (h, w).
        temporal_attention: also attach temporal attention after the decoder's attention blocks.
        attention_head_dim: channels per head of that attention.
        attention_window: temporal attention sees at most this many frames either side (None: all).
        alpha_init / learn_alpha: initial blend factor of every temporal layer, and whether it is learned.
        ff_mult: width of the temporal attention's feed-forward, in channels.
        zero_init: every temporal layer starts as the identity (the image decoder, whatever alpha is).
    """

    base_attribute = "vae"

    @register_to_config
    def __init__(
        self,
        vae_config: dict,
        temporal_kernel_size: int = 3,
        spatial_kernel_size: int = 3,
        temporal_attention: bool = True,
        attention_head_dim: int = 32,
        attention_window: int | None = None,
        alpha_init: float = 0.5,
        learn_alpha: bool = True,
        ff_mult: int = 2,
        zero_init: bool = True,
        max_period: float = 10000.0,
    ):
        super().__init__()
        self._set_up(AutoencoderKL.from_config(vae_config))

    # ----------------------------------------------------------------------------------------- build
    def _attach_points(self) -> list[tuple[str, nn.Module]]:
        return [(name, m) for name, m in self.vae.named_modules()
                if _ATTACH_POINT.match(name) and isinstance(m, (ResnetBlock2D, Attention))]

    def _build(self) -> None:
        self.temporal_layers = self._temporal_layers()

    def _temporal_layers(self) -> nn.ModuleDict:
        cfg = self.config
        groups = self.vae.config.norm_num_groups
        common = dict(norm_groups=groups, norm_eps=1e-6, alpha_init=cfg.alpha_init, learn_alpha=cfg.learn_alpha,
                      zero_init=cfg.zero_init)
        layers = nn.ModuleDict()
        for name, block in self._attach_points():
            if isinstance(block, ResnetBlock2D):
                layers[layer_key(name)] = TemporalResBlock(
                    block.out_channels, None, temporal_kernel=cfg.temporal_kernel_size,
                    spatial_kernel=cfg.spatial_kernel_size, **common)
            elif cfg.temporal_attention:
                channels = block.to_q.in_features
                heads = max(1, channels // cfg.attention_head_dim)
                layers[layer_key(name)] = TemporalTransformer(
                    channels, heads, None, window=cfg.attention_window, ff_mult=cfg.ff_mult,
                    max_period=cfg.max_period, **common)
        return layers

    def _attach(self) -> None:
        """(Re)registers the hooks and freezes the autoencoder (the stage may unfreeze its decoder)."""
        attach(self._attach_points(), self.temporal_layers, self._state, self._hooks)
        self.vae.requires_grad_(False)

    @classmethod
    def from_autoencoder(cls, vae: AutoencoderKL, temporal_layers: str | os.PathLike | None = None,
                         **temporal_options) -> "TemporalDecoder":
        """Attaches temporal layers to ``vae`` (the same object, shared, not copied).

        ``temporal_layers``: a folder written by :meth:`save_temporal_layers`; its options are used
        (``temporal_options`` override them) and its weights loaded after checking they fit ``vae``.
        """
        if not isinstance(vae, AutoencoderKL):
            raise ValueError(f"from_autoencoder needs a diffusers AutoencoderKL, got {type(vae).__name__}")
        if temporal_layers is not None:
            saved = read_temporal_decoder_config(temporal_layers)
            _check_architecture(saved.get("architecture", {}), vae.config, temporal_layers)
            temporal_options = {**saved["options"], **temporal_options}
        model = cls._attach_to(vae, **temporal_options)
        if temporal_layers is not None:
            model.load_temporal_layers(temporal_layers)
        return model

    # ------------------------------------------------------------------------------------ parameters
    def trainable_parameters(self) -> list[nn.Parameter]:
        """The temporal layers with their blend factors (the autoencoder stays frozen)."""
        return list(self.temporal_layers.parameters())

    # ----------------------------------------------------------------------------------- temporal io
    def save_temporal_layers(self, directory: str | os.PathLike) -> None:
        """Writes the temporal weights (safetensors) and their config; the autoencoder is not copied."""
        meta = {"model": type(self).__name__,
                "options": {k: self.config[k] for k in self._temporal_option_names()},
                "architecture": {k: self.vae.config[k] for k in _ARCHITECTURE_KEYS}}
        save_temporal_weights(self.temporal_layers, directory, TEMPORAL_DECODER_WEIGHTS, TEMPORAL_DECODER_CONFIG, meta)

    def load_temporal_layers(self, directory: str | os.PathLike) -> None:
        """Loads weights saved by :meth:`save_temporal_layers`; ``ValueError`` if they are for another autoencoder."""
        _check_architecture(read_temporal_decoder_config(directory).get("architecture", {}), self.vae.config,
                            directory)
        load_temporal_weights(self.temporal_layers, directory, TEMPORAL_DECODER_WEIGHTS)

    # ---------------------------------------------------------------------------------------- encode
    def encode(self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None):
        """``(B, 3, T, H, W)`` pixels in [-1, 1] -> ``(B, C, T, h, w)`` latents (unscaled, like diffusers'),
        frame by frame with the untouched image encoder."""
        B, _, T, _, _ = _check_video(video, self.vae.config.in_channels, "video")
        dist = self.vae.encode(video.transpose(1, 2).flatten(0, 1)).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        return z.view(B, T, *z.shape[1:]).transpose(1, 2)

    # ---------------------------------------------------------------------------------------- decode
    def forward(self, latents: torch.Tensor, image_only: bool = False, return_dict: bool = True):
        """Decodes a whole clip at once: ``(B, C, T, h, w)`` unscaled latents -> ``(B, 3, T, H, W)`` frames, as
        ``DecoderOutput.sample`` (diffusers' output of a decoder) or, with ``return_dict=False``, a 1-tuple.

        ``image_only`` runs the plain image decoder (alpha = 1), frame by frame.
        """
        B, C, T, h, w = _check_video(latents, self.vae.config.latent_channels, "latents")
        frames = latents.transpose(1, 2).flatten(0, 1)
        with self._state.use(None if image_only else FrameState(T)), self._whole_batch():
            out = self.vae.decode(frames).sample
        out = out.view(B, T, *out.shape[1:]).transpose(1, 2)
        return DecoderOutput(sample=out) if return_dict else (out,)

    def iter_decode(self, latents: torch.Tensor, chunk_size: int | None = 16, overlap: int = 4,
                    tile_size: int | None = None, image_only: bool = False,
                    progress: bool = False) -> Iterator[torch.Tensor]:
        """Decodes ``(B, C, T, h, w)`` latents in chunks of ``chunk_size`` frames overlapping by ``overlap``,
        yielding the finished frames ``(B, 3, n, H, W)`` in order as soon as no later chunk changes them.

        Frames in an overlap are a linear cross-fade of the two chunks, so there is no seam. Peak memory is
        that of one chunk (plus what the caller keeps). ``tile_size``: decode each chunk in spatial tiles of
        this many pixels (diffusers' tiled decoding, a quarter overlap), for frames too large to decode whole.
        """
        B, C, T, h, w = _check_video(latents, self.vae.config.latent_channels, "latents")
        if chunk_size is None or chunk_size >= T:
            chunk_size, overlap = T, 0
        if chunk_size < 1 or not 0 <= overlap < chunk_size:
            raise ValueError(f"need chunk_size >= 1 and 0 <= overlap < chunk_size; got {chunk_size}, {overlap}")
        starts = window_starts(T, chunk_size, overlap)
        tail = None
        with self._tiles(tile_size):
            for k, start in enumerate(tqdm(starts, desc="decode", disable=not progress, leave=False)):
                end = min(start + chunk_size, T)
                chunk = self.forward(latents[:, :, start:end], image_only=image_only).sample
                if tail is not None:  # cross-fade into the previous chunk's frames over [start, start + L)
                    L = tail.shape[2]
                    weight = torch.arange(1, L + 1, device=chunk.device, dtype=chunk.dtype) / (L + 1)
                    chunk[:, :, :L] = torch.lerp(tail, chunk[:, :, :L], weight.view(1, 1, L, 1, 1))
                next_start = starts[k + 1] if k + 1 < len(starts) else end
                yield chunk[:, :, :next_start - start]
                tail = chunk[:, :, next_start - start:]

    def decode(self, latents: torch.Tensor, chunk_size: int | None = 16, overlap: int = 4,
               tile_size: int | None = None, image_only: bool = False, progress: bool = False) -> torch.Tensor:
        """All frames of :meth:`iter_decode` as one ``(B, 3, T, H, W)`` tensor."""
        return torch.cat(list(self.iter_decode(latents, chunk_size, overlap, tile_size, image_only, progress)), 2)

    @contextlib.contextmanager
    def _whole_batch(self):
        """The temporal layers need all frames of a video in one call: no batch slicing."""
        slicing, self.vae.use_slicing = self.vae.use_slicing, False
        try:
            yield
        finally:
            self.vae.use_slicing = slicing

    @contextlib.contextmanager
    def _tiles(self, tile_size: int | None):
        vae = self.vae
        saved = vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size
        if tile_size is not None:
            factor = vae_scale_factor(vae)
            if tile_size < 2 * factor or tile_size % factor:
                raise ValueError(f"tile_size must be a multiple of {factor} pixels and at least {2 * factor}, "
                                 f"got {tile_size}")
            vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size = True, tile_size, tile_size // factor
        try:
            yield
        finally:
            vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size = saved


def _check_video(x, channels: int, name: str) -> tuple[int, ...]:
    if not isinstance(x, torch.Tensor) or x.ndim != 5:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a video tensor of shape (B, C, T, H, W), got {shape}")
    if x.shape[1] != channels:
        raise ValueError(f"{name} have {x.shape[1]} channels (dim 1), the autoencoder expects {channels}: "
                         f"{name} are (B, C, T, H, W)")
    return tuple(x.shape)


def _check_architecture(saved: dict, vae_config, where) -> None:
    for key, value in saved.items():
        have = vae_config.get(key)
        if (list(have) if isinstance(have, (list, tuple)) else have) != value:
            raise ValueError(f"temporal decoder in {where} was made for an autoencoder with {key}={value}, "
                             f"this one has {key}={have}")


def read_temporal_decoder_config(directory: str | os.PathLike) -> dict:
    config = read_json(directory, TEMPORAL_DECODER_CONFIG, "temporal-decoder")
    if config.get("model") not in (None, TemporalDecoder.__name__):
        raise ValueError(f"{directory} holds temporal layers for a {config['model']}, not a temporal decoder")
    return config


def decode_latents(vae, latents: torch.Tensor, chunk_size: int = 16, overlap: int = 4,
                   image_only: bool = False, progress: bool = False) -> torch.Tensor:
    """``(B, C, T, h, w)`` scaled latents -> ``(B, T, 3, H, W)`` frames in [-1, 1].

    ``vae``: an ``AutoencoderKL`` (frame by frame, 16 frames at a time) or a ``TemporalDecoder`` (chunks
    of ``chunk_size`` frames cross-faded over ``overlap``; ``image_only`` makes it the image decoder).
    """
    weight = next(vae.parameters())
    latents = latents.to(weight.device, weight.dtype)
    with torch.no_grad():
        if isinstance(vae, TemporalDecoder):
            frames = vae.decode(latents / vae.vae.config.scaling_factor, chunk_size, overlap,
                                image_only=image_only, progress=progress)
            return frames.transpose(1, 2).clamp(-1, 1).float()
        B, C, T = latents.shape[:3]
        frames = latents.transpose(1, 2).flatten(0, 1) / vae.config.scaling_factor
        images = torch.cat([vae.decode(chunk).sample for chunk in frames.split(16)])
    return images.view(B, T, *images.shape[1:]).clamp(-1, 1).float()


def encode_latents(vae, video: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """``(B, 3, T, H, W)`` frames in [-1, 1] -> ``(B, C, T, h, w)`` scaled latents: the posterior's mode of an
    ``AutoencoderKL``'s (frozen) encoder, ``chunk_size`` frames at a time (None: all at once)."""
    B, T = video.shape[0], video.shape[2]
    weight = next(vae.parameters())
    frames = video.transpose(1, 2).flatten(0, 1).to(weight.device, weight.dtype)
    with torch.no_grad():
        z = torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in frames.split(chunk_size or len(frames))])
    z = z.float() * vae.config.scaling_factor
    return z.view(B, T, *z.shape[1:]).transpose(1, 2)
