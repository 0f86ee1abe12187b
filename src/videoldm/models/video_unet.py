"""`VideoUNet`: a diffusers image UNet with temporal layers attached, not forked.

The image ``UNet2DConditionModel`` runs unchanged on the frames as a batch of images. A forward hook
on every spatial ResNet block and every spatial transformer block of its down, mid and up blocks hands
that block's output to a temporal layer, and returns the alpha-blend of the two. The spatial weights
keep their diffusers names (under ``unet.``), so any fine-tuned image checkpoint loads straight into
``video_unet.unet``; the temporal weights live in ``temporal_layers`` and in a file of their own.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
from diffusers import ModelMixin, UNet2DConditionModel  # ModelMixin: diffusers' pipeline loader looks it up here
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.utils import BaseOutput
from torch import nn

from .attach import (FrameState, TemporalAttachment, attach, layer_key, load_temporal_weights, read_json,
                     save_temporal_weights)
from .context_encoder import ContextEncoder, check_context
from .frames import frame_timesteps, frame_tokens, per_frame
from .temporal_layers import TemporalResBlock, TemporalTransformer

TEMPORAL_WEIGHTS_NAME = "temporal_layers.safetensors"
TEMPORAL_CONFIG_NAME = "temporal_config.json"
# The spatial blocks that receive a temporal layer: the ResNet and transformer blocks proper of the
# down, mid and up blocks (not the resampling ResNets some blocks use as down/upsamplers).
_ATTACH_POINT = re.compile(r"^(down_blocks\.\d+|mid_block|up_blocks\.\d+)\.(resnets|attentions)\.\d+$")


@dataclass
class VideoUNetOutput(BaseOutput):
    """``sample``: ``(B, C, T, H, W)``, the model output for every frame."""

    sample: torch.Tensor = None


def _transformer_geometry(block: Transformer2DModel) -> tuple[int, int, int | None]:
    """(channels, heads, cross-attention dim or None) of a spatial transformer block."""
    inner: BasicTransformerBlock = block.transformer_blocks[0]
    attn = inner.attn2 if inner.attn2 is not None else (inner.attn1 if inner.only_cross_attention else None)
    token_dim = attn.to_k.in_features if attn is not None and attn.is_cross_attention else None
    return block.in_channels, inner.attn1.heads, token_dim


class VideoUNet(TemporalAttachment):
    """Video LDM denoiser: a diffusers ``UNet2DConditionModel`` plus interleaved temporal layers.

    Args:
        unet_config: the image UNet's diffusers config.
        attention_window: temporal attention sees at most this many frames either side (None: all).
            Sequences longer than ``2 * window`` then cost time linear in their length.
        temporal_kernel_size / spatial_kernel_size: kernel of the 3D convolutions over (t) and (h, w).
        alpha_init / learn_alpha: initial value of every blend factor alpha, and whether it is learned.
        temporal_cross_attention: temporal transformers also attend to the conditioning tokens.
        ff_mult: width of the temporal feed-forward, in channels.
        temporal_res_blocks / temporal_attention: which kinds of temporal layers to attach.
        temporal_time_embedding: 3D-conv blocks receive the spatial block's timestep embedding.
        zero_init: the last projection of every temporal layer starts at zero (the model starts as
            the image model whatever alpha is).
        max_period: base of the rotary frequencies over time.
        context_conditioning: add a :class:`ContextEncoder` (prediction and interpolation models): the
            latents of given frames and their mask reach every temporal layer's input.
        context_channels: width of that encoder's first level (doubling per level, at most the UNet's).
        context_carry: the encoder also gives every frame the nearest given frames' latents (see
            :mod:`videoldm.models.context_encoder`; an addition to the paper's c_S).
        clean_context: the given frames also enter the UNet itself as they are, clean latents at
            timestep 0, in place of their noisy latents (an addition to the paper's c_S): the spatial layers
            turn them into the same features as any frame, which temporal attention can carry to the frames
            to generate. The output at a given frame is then no prediction; training leaves it out of the loss.
    """

    base_attribute = "unet"

    @register_to_config
    def __init__(
        self,
        unet_config: dict,
        attention_window: int | None = None,
        temporal_kernel_size: int = 3,
        spatial_kernel_size: int = 1,
        alpha_init: float = 0.5,
        learn_alpha: bool = True,
        temporal_cross_attention: bool = True,
        ff_mult: int = 4,
        temporal_res_blocks: bool = True,
        temporal_attention: bool = True,
        temporal_time_embedding: bool = True,
        zero_init: bool = True,
        max_period: float = 10000.0,
        dropout: float = 0.0,
        context_conditioning: bool = False,
        context_channels: int = 64,
        context_carry: bool = False,
        clean_context: bool = False,
    ):
        super().__init__()
        if attention_window is not None and attention_window < 1:
            raise ValueError(f"attention_window must be >= 1 or None, got {attention_window}")
        if (context_carry or clean_context) and not context_conditioning:
            raise ValueError("context_carry and clean_context need context_conditioning=True")
        self._set_up(UNet2DConditionModel.from_config(unet_config))

    # ----------------------------------------------------------------------------------------- build
    def _attach_points(self) -> list[tuple[str, nn.Module]]:
        return [(name, m) for name, m in self.unet.named_modules() if _ATTACH_POINT.match(name)
                and isinstance(m, (ResnetBlock2D, Transformer2DModel))]

    def _build(self) -> None:
        self.temporal_layers = self._temporal_layers()
        self.context_encoder = self._context_encoder() if self.config.context_conditioning else None

    def _temporal_layers(self) -> nn.ModuleDict:
        cfg, unet_cfg = self.config, self.unet.config
        common = dict(norm_groups=unet_cfg.norm_num_groups, norm_eps=unet_cfg.norm_eps,
                      alpha_init=cfg.alpha_init, learn_alpha=cfg.learn_alpha, zero_init=cfg.zero_init)
        layers = nn.ModuleDict()
        for name, block in self._attach_points():
            if isinstance(block, ResnetBlock2D) and cfg.temporal_res_blocks:
                temb = block.time_emb_proj.in_features if block.time_emb_proj is not None else None
                layers[layer_key(name)] = TemporalResBlock(
                    block.out_channels, temb if cfg.temporal_time_embedding else None,
                    temporal_kernel=cfg.temporal_kernel_size, spatial_kernel=cfg.spatial_kernel_size,
                    dropout=cfg.dropout, **common)
            elif isinstance(block, Transformer2DModel) and cfg.temporal_attention:
                channels, heads, token_dim = _transformer_geometry(block)
                layers[layer_key(name)] = TemporalTransformer(
                    channels, heads, token_dim if cfg.temporal_cross_attention else None,
                    window=cfg.attention_window, ff_mult=cfg.ff_mult, max_period=cfg.max_period, **common)
        return layers

    def _context_encoder(self) -> ContextEncoder:
        widths = list(self.unet.config.block_out_channels)
        levels = len(widths)

        def level_of(key: str) -> int:
            kind, _, rest = key.partition("_blocks_")
            if key.startswith("mid_block"):
                return levels - 1
            index = int(rest.split("_")[0])
            return index if kind == "down" else levels - 1 - index

        targets = {key: (level_of(key), layer.channels) for key, layer in self.temporal_layers.items()}
        context_widths = [min(w, self.config.context_channels * 2 ** i) for i, w in enumerate(widths)]
        return ContextEncoder(self.unet.config.in_channels, context_widths, targets, self.unet.config.norm_num_groups,
                              carry=self.config.context_carry)

    def _attach(self) -> None:
        """(Re)registers the hooks that run the temporal layers, and freezes the spatial weights."""
        attach(self._attach_points(), self.temporal_layers, self._state, self._hooks)
        self.unet.requires_grad_(False)
        self._token_dims = {layer.token_dim for layer in self.temporal_layers.values()
                            if isinstance(layer, TemporalTransformer) and layer.token_dim is not None}
        blocks = [*self.unet.down_blocks, self.unet.mid_block, *self.unet.up_blocks]
        self._takes_tokens = any(getattr(block, "has_cross_attention", False) for block in blocks if block is not None)

    @classmethod
    def from_unet2d(cls, unet: UNet2DConditionModel, temporal_layers: str | os.PathLike | None = None,
                    **temporal_options) -> "VideoUNet":
        """Attaches temporal layers to ``unet`` (the same object: its weights are shared, not copied).

        ``temporal_layers``: a folder written by :meth:`save_temporal_layers`; its options are used
        (``temporal_options`` override them, e.g. a longer ``attention_window``) and its weights loaded.
        """
        if not isinstance(unet, UNet2DConditionModel):
            raise ValueError(f"from_unet2d needs a diffusers UNet2DConditionModel, got {type(unet).__name__}")
        if temporal_layers is not None:
            saved = read_temporal_config(temporal_layers)["options"]
            temporal_options = {**saved, **temporal_options}
        model = cls._attach_to(unet, **temporal_options)
        if temporal_layers is not None:
            model.load_temporal_layers(temporal_layers)
        return model

    # ------------------------------------------------------------------------------------ parameters
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything but the image UNet: the temporal layers with their blend factors."""
        return [p for name, p in self.named_parameters() if not name.startswith("unet.")]

    # ----------------------------------------------------------------------------------- temporal io
    def save_temporal_layers(self, directory: str | os.PathLike) -> None:
        """Writes the temporal weights (safetensors) and a JSON config, apart from the image weights."""
        unet_cfg = self.unet.config
        meta = {
            "model": type(self).__name__,
            "options": {k: self.config[k] for k in self._temporal_option_names()},
            "architecture": {k: unet_cfg[k] for k in ("in_channels", "block_out_channels", "layers_per_block",
                                                        "down_block_types", "up_block_types", "cross_attention_dim")},
        }
        save_temporal_weights(self._temporal_modules(), directory, TEMPORAL_WEIGHTS_NAME, TEMPORAL_CONFIG_NAME, meta)

    def load_temporal_layers(self, directory: str | os.PathLike, context_optional: bool = False,
                             fresh_context: bool = False) -> None:
        """Loads temporal weights saved by :meth:`save_temporal_layers`, onto this image UNet.

        Raises ``ValueError`` naming the first layer whose weights do not fit this architecture.
        ``context_optional``: the file may lack this model's context encoder or hold one this model lacks
        (a prediction model initialised from a video model, or the reverse); the layers must all match.
        ``fresh_context``: keep this model's own (new) context encoder whatever the file holds (starting
        from a model whose context encoder has another design).
        """
        load_temporal_weights(self._temporal_modules(), directory, TEMPORAL_WEIGHTS_NAME,
                              optional="context_encoder." if context_optional or fresh_context else None,
                              fresh="context_encoder." if fresh_context else None)

    def _temporal_modules(self) -> nn.ModuleDict:
        """Everything the temporal file holds: the temporal layers and the context encoder, if any."""
        modules = nn.ModuleDict(dict(self.temporal_layers))
        if self.context_encoder is not None:
            modules["context_encoder"] = self.context_encoder
        return modules

    # --------------------------------------------------------------------------------------- forward
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor | None = None,
        image_only: torch.Tensor | None = None,
        temporal_encoder_hidden_states: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        return_dict: bool = True,
        **unet_kwargs,
    ) -> VideoUNetOutput | tuple:
        """Denoises a batch of video latents.

        Args:
            sample: ``(B, C, T, H, W)`` noisy latents.
            timestep: a number, ``(B,)`` one per video, or ``(B, T)`` one per frame.
            encoder_hidden_states: ``(B, L, D)`` per video or ``(B, T, L, D)`` per frame.
            image_only: ``(B,)`` bool; True forces alpha = 1 (the image model) for that sample.
            context / context_mask: for a model with ``context_conditioning``: clean latents
                ``(B, C, T, h, w)`` of which the frames flagged 1 in ``context_mask`` ``(B, T)`` are given
                (prediction: the first frames, interpolation: keyframes). Neither: no frame is given (S = 0).
            temporal_encoder_hidden_states: tokens for the temporal cross-attention when they must differ
                from the spatial ones (a DreamBooth text encoder for the spatial layers, the original one for
                the temporal layers); defaults to ``encoder_hidden_states``.
            unet_kwargs: passed to the image UNet per frame (tensors with a leading B are repeated T times),
                e.g. ``class_labels`` (the x4 upscaler's noise level) or ``added_cond_kwargs`` (SDXL).
        """
        B, C, T, H, W = self._check_sample(sample)
        timestep = frame_timesteps(timestep, B, T, sample.device)
        if encoder_hidden_states is None and self._takes_tokens:
            raise ValueError("encoder_hidden_states is None, but the image UNet has cross-attention: give "
                             "(B, L, D) tokens per video or (B, T, L, D) per frame")
        ehs = frame_tokens(encoder_hidden_states, B, T, "encoder_hidden_states")
        if temporal_encoder_hidden_states is None:
            temporal_tokens = encoder_hidden_states
        else:
            frame_tokens(temporal_encoder_hidden_states, B, T, "temporal_encoder_hidden_states")
            temporal_tokens = temporal_encoder_hidden_states
        if temporal_tokens is not None and temporal_tokens.ndim == 4:
            temporal_tokens = temporal_tokens.flatten(0, 1)
        self._check_token_dim(temporal_tokens)
        if image_only is not None:
            image_only = torch.as_tensor(image_only, device=sample.device)
            if image_only.shape != (B,) or image_only.dtype != torch.bool:
                raise ValueError(f"image_only must be a bool tensor of shape ({B},), got "
                                 f"{image_only.dtype} {tuple(image_only.shape)}")
            image_only = image_only.repeat_interleave(T)
        injections = None
        if self.context_encoder is not None:
            context, context_mask = check_context(sample, context, context_mask)
            injections = self.context_encoder(context, context_mask)
            if self.config.clean_context:  # given frames in clean, at timestep 0
                given = context_mask > 0
                sample = torch.where(given[:, None, :, None, None], context.to(sample.dtype), sample)
                timestep = torch.where(given.flatten(), torch.zeros_like(timestep), timestep)
        elif context is not None or context_mask is not None:
            raise ValueError("this model has no context encoder (context_conditioning=False): it takes no context")
        frames = sample.transpose(1, 2).reshape(B * T, C, H, W)
        unet_kwargs = {k: per_frame(v, B, T) for k, v in unet_kwargs.items()}
        all_image_only = image_only is not None and bool(image_only.all())
        with self._state.use(FrameState(T, image_only, all_image_only, temporal_tokens, injections)):
            out = self.unet(frames, timestep, ehs, return_dict=False, **unet_kwargs)[0]
        out = out.view(B, T, -1, H, W).transpose(1, 2)
        return VideoUNetOutput(sample=out) if return_dict else (out,)

    def _check_sample(self, sample: torch.Tensor) -> tuple[int, ...]:
        if not isinstance(sample, torch.Tensor) or sample.ndim != 5:
            shape = tuple(sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
            raise ValueError(f"sample must be a video latent of shape (B, C, T, H, W), got {shape}")
        if sample.shape[1] != self.unet.config.in_channels:
            raise ValueError(f"sample has {sample.shape[1]} channels (dim 1), the image UNet takes "
                             f"{self.unet.config.in_channels}: sample is (B, C, T, H, W)")
        return tuple(sample.shape)

    def _check_token_dim(self, tokens: torch.Tensor | None) -> None:
        dims = self._token_dims
        if tokens is not None and dims and tokens.shape[-1] not in dims:
            raise ValueError(f"conditioning tokens have dimension {tokens.shape[-1]}, the model's "
                             f"cross-attention takes {sorted(dims)}")


def read_temporal_config(directory: str | os.PathLike) -> dict:
    return read_json(directory, TEMPORAL_CONFIG_NAME, "temporal-layers")
