"""Test helpers: write a diffusers ``UNet2DConditionModel`` as an original (CompVis / LDM) single-file checkpoint.

There is no hub access in the tests, so single-file Stable Diffusion checkpoints are produced here from small,
randomly initialised diffusers UNets. :func:`unet_to_original_state_dict` is the inverse of diffusers'
``diffusers.loaders.single_file_utils.convert_ldm_unet_checkpoint``: every key of the diffusers state dict is mapped
to its original ``model.diffusion_model.*`` key, and an unknown key raises instead of being dropped.

Layout (``lpb`` = ``layers_per_block``, ``n = lpb + 1`` original blocks per diffusers block)::

    time_embedding.linear_{1,2}             -> time_embed.{0,2}
    conv_in                                 -> input_blocks.0.0
    class_embedding (nn.Embedding)          -> label_emb            (num_class_embeds, e.g. SD x4 upscaler)
    class_embedding.linear_{1,2}            -> label_emb.0.{0,2}    (class_embed_type "timestep"/"projection")
    add_embedding.linear_{1,2}              -> label_emb.0.{0,2}    (addition_embed_type "text_time", SDXL)
    down_blocks.b.resnets.l                 -> input_blocks.{1 + b*n + l}.0
    down_blocks.b.attentions.l              -> input_blocks.{1 + b*n + l}.1
    down_blocks.b.downsamplers.0.conv       -> input_blocks.{1 + b*n + lpb}.0.op
    mid_block.resnets.0 / attentions.0 / resnets.1 -> middle_block.0 / 1 / 2
    up_blocks.b.resnets.l                   -> output_blocks.{b*n + l}.0
    up_blocks.b.attentions.l                -> output_blocks.{b*n + l}.1
    up_blocks.b.upsamplers.0.conv           -> output_blocks.{b*n + lpb}.{2 if the block has attentions else 1}.conv
    conv_norm_out / conv_out                -> out.0 / out.2

    resnet:  norm1 -> in_layers.0, conv1 -> in_layers.2, time_emb_proj -> emb_layers.1,
             norm2 -> out_layers.0, conv2 -> out_layers.3, conv_shortcut -> skip_connection
    attention (SpatialTransformer): names are identical in both layouts (norm, proj_in, proj_out,
             transformer_blocks.N.{norm1,norm2,norm3,attn1,attn2,ff}); proj_in/proj_out are 1x1 convs (SD 1.x,
             ``use_linear_projection=False``) or linears (SD 2.x, ``use_linear_projection=True``) in *both* layouts,
             so tensors are copied unchanged.

Loading such a file back **offline** (verified with diffusers 0.42.1, huggingface_hub 2.4.0)::

    unet.save_config(config_dir / "unet")                # writes config_dir/unet/config.json
    save_original_checkpoint(unet, "model.safetensors")
    loaded = UNet2DConditionModel.from_single_file(
        "model.safetensors",                             # a local *file* path -> no hub lookup for the weights
        config=str(config_dir),                          # a local *directory*, a str (a dict is rejected)
        subfolder="unet",                                # or omit it and point `config` at the folder with config.json
        local_files_only=True,
    )

``config`` is required offline: without it diffusers infers the model type from the keys and downloads the config of
a hub repo (e.g. ``stable-diffusion-v1-5/stable-diffusion-v1-5``). When ``config`` is given, diffusers'
``default_subfolder="unet"`` is *not* applied, so ``subfolder`` must be passed explicitly if the ``config.json`` lies in
a subfolder.
"""

from __future__ import annotations

import os
import re

import torch
from safetensors.torch import save_file

LDM_UNET_PREFIX = "model.diffusion_model."

_RESNET_RENAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}

_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _resnet_key(rest: str) -> str:
    """``norm1.weight`` -> ``in_layers.0.weight`` (``rest`` is the key inside one ResnetBlock2D)."""
    module, _, param = rest.rpartition(".")
    if module not in _RESNET_RENAMES:
        raise KeyError(f"unknown resnet parameter {rest!r}")
    return f"{_RESNET_RENAMES[module]}.{param}"


def _config_value(config, name, default=None):
    return config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)


def unet_to_original_state_dict(unet) -> dict[str, torch.Tensor]:
    """Convert a diffusers ``UNet2DConditionModel`` state dict to the original LDM / Stable Diffusion key layout.

    Keys get the ``model.diffusion_model.`` prefix. Tensors are returned unchanged (same objects as in
    ``unet.state_dict()``); the layouts need no reshaping for SD 1.x / 2.x / x4-upscaler UNets.
    Raises ``KeyError`` for a diffusers key it cannot place and ``NotImplementedError`` for configurations that
    diffusers' single-file loader cannot read back (per-block ``layers_per_block``, a mid block without attention).
    """
    config = unet.config
    lpb = _config_value(config, "layers_per_block")
    if not isinstance(lpb, int):
        raise NotImplementedError(
            "diffusers' convert_ldm_unet_checkpoint needs an int layers_per_block, got " f"{lpb!r}"
        )
    if _config_value(config, "mid_block_type", "UNetMidBlock2DCrossAttn") != "UNetMidBlock2DCrossAttn":
        raise NotImplementedError("only UNetMidBlock2DCrossAttn maps to the LDM middle_block.{0,1,2} layout")
    n = lpb + 1
    up_has_attn = ["CrossAttn" in t for t in _config_value(config, "up_block_types")]

    out: dict[str, torch.Tensor] = {}

    def put(ldm_key: str, tensor: torch.Tensor, diffusers_key: str) -> None:
        full = LDM_UNET_PREFIX + ldm_key
        if full in out:
            raise KeyError(f"{diffusers_key!r} maps to {full!r}, which is already taken")
        out[full] = tensor

    for key, tensor in unet.state_dict().items():
        module, _, param = key.rpartition(".")

        if module in _TOP_LEVEL:
            put(f"{_TOP_LEVEL[module]}.{param}", tensor, key)
            continue

        if key == "class_embedding.weight":  # nn.Embedding: num_class_embeds with class_embed_type None
            put("label_emb.weight", tensor, key)
            continue

        m = re.fullmatch(r"(class_embedding|add_embedding)\.linear_([12])\.(weight|bias)", key)
        if m:  # TimestepEmbedding class / addition embeddings -> label_emb.0 (Sequential(Linear, SiLU, Linear))
            put(f"label_emb.0.{0 if m.group(2) == '1' else 2}.{m.group(3)}", tensor, key)
            continue

        m = re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.+)", key)
        if m:
            b, kind, idx, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
            if kind == "resnets":
                put(f"input_blocks.{1 + b * n + idx}.0.{_resnet_key(rest)}", tensor, key)
            elif kind == "attentions":
                put(f"input_blocks.{1 + b * n + idx}.1.{rest}", tensor, key)
            else:
                if idx != 0 or not rest.startswith("conv."):
                    raise KeyError(f"unexpected downsampler parameter {key!r}")
                put(f"input_blocks.{1 + b * n + lpb}.0.op.{rest[len('conv.'):]}", tensor, key)
            continue

        m = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key)
        if m:
            kind, idx, rest = m.group(1), int(m.group(2)), m.group(3)
            if kind == "resnets":
                if idx > 1:
                    raise KeyError(f"unexpected mid-block resnet {key!r}")
                put(f"middle_block.{2 * idx}.{_resnet_key(rest)}", tensor, key)
            else:
                if idx != 0:
                    raise KeyError(f"unexpected mid-block attention {key!r}")
                put(f"middle_block.1.{rest}", tensor, key)
            continue

        m = re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.+)", key)
        if m:
            b, kind, idx, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
            if kind == "resnets":
                put(f"output_blocks.{b * n + idx}.0.{_resnet_key(rest)}", tensor, key)
            elif kind == "attentions":
                put(f"output_blocks.{b * n + idx}.1.{rest}", tensor, key)
            else:
                if idx != 0 or not rest.startswith("conv."):
                    raise KeyError(f"unexpected upsampler parameter {key!r}")
                slot = 2 if up_has_attn[b] else 1
                put(f"output_blocks.{b * n + lpb}.{slot}.{rest}", tensor, key)
            continue

        raise KeyError(f"no original-layout key known for diffusers key {key!r}")

    return out


def save_original_checkpoint(unet, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Write ``unet`` as an original-layout single-file ``.safetensors`` checkpoint; returns the saved state dict."""
    state_dict = {k: v.detach().cpu().contiguous() for k, v in unet_to_original_state_dict(unet).items()}
    save_file(state_dict, os.fspath(path))
    return state_dict


LDM_VAE_PREFIX = "first_stage_model."
LDM_CLIP_PREFIX = "cond_stage_model.transformer."


def vae_to_original_state_dict(vae) -> dict:
    """An ``AutoencoderKL``'s state dict under the original LDM keys (``first_stage_model.*``): the inverse of
    diffusers' ``convert_ldm_vae_checkpoint`` (decoder blocks counted from the bottom, attention as 1x1 convs)."""
    n_up = len(vae.config.up_block_types)
    out = {}
    for key, tensor in vae.state_dict().items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        new = re.sub(r"down_blocks\.(\d+)\.resnets\.(\d+)", r"down.\1.block.\2", new)
        new = re.sub(r"down_blocks\.(\d+)\.downsamplers\.0", r"down.\1.downsample", new)
        new = re.sub(r"up_blocks\.(\d+)\.resnets\.(\d+)",
                     lambda m: f"up.{n_up - 1 - int(m.group(1))}.block.{m.group(2)}", new)
        new = re.sub(r"up_blocks\.(\d+)\.upsamplers\.0", lambda m: f"up.{n_up - 1 - int(m.group(1))}.upsample", new)
        new = re.sub(r"mid_block\.resnets\.(\d+)", lambda m: f"mid.block_{int(m.group(1)) + 1}", new)
        if "mid_block.attentions.0" in new:
            new = new.replace("mid_block.attentions.0", "mid.attn_1")
            new = (new.replace("group_norm", "norm").replace("to_q", "q").replace("to_k", "k").replace("to_v", "v")
                   .replace("to_out.0", "proj_out"))
            if tensor.ndim == 2:  # linear -> 1x1 conv
                tensor = tensor[:, :, None, None]
        out[LDM_VAE_PREFIX + new] = tensor
    return out


def save_sd_single_file(pipeline_folder, path) -> None:
    """A diffusers Stable Diffusion 1.x folder as one original-format checkpoint (UNet, VAE, CLIP text encoder)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(os.path.join(pipeline_folder, "unet"))
    vae = AutoencoderKL.from_pretrained(os.path.join(pipeline_folder, "vae"))
    text = CLIPTextModel.from_pretrained(os.path.join(pipeline_folder, "text_encoder"))
    state = {**unet_to_original_state_dict(unet), **vae_to_original_state_dict(vae),
             **{LDM_CLIP_PREFIX + ("" if k.startswith("text_model.") else "text_model.") + k: v
                for k, v in text.state_dict().items()}}  # transformers >= 5.6 flattened CLIPTextModel's keys
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
