"""What inflation costs: parameters and multiply-adds of the temporal layers, per block and in total."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from diffusers import UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

from .video_unet import VideoUNet


@dataclass
class InflationReport:
    rows: list[tuple[str, int, int, float]]  # block, spatial params, temporal params, temporal MACs per frame
    spatial_params: int
    temporal_params: int
    image_macs_per_frame: float
    video_macs_per_frame: float
    latent: tuple[int, int]
    frames: int
    options: dict = field(default_factory=dict)

    @property
    def temporal_param_share(self) -> float:
        """Temporal parameters as a share of the whole video UNet (the paper quotes 43% for SD 1.4)."""
        return self.temporal_params / (self.spatial_params + self.temporal_params)

    @property
    def temporal_mac_share(self) -> float:
        """Extra multiply-adds relative to the image UNet: the ideal VideoUNet/image time ratio is 1 + this."""
        return self.video_macs_per_frame / self.image_macs_per_frame - 1

    def format(self) -> str:
        lines = [f"{'block':<16}{'spatial':>14}{'temporal':>14}{'temporal MACs/frame':>22}"]
        for block, s, t, macs in self.rows:
            lines.append(f"{block:<16}{s:>14,}{t:>14,}{macs / 1e9:>19.2f} G")
        extra = self.video_macs_per_frame - self.image_macs_per_frame
        lines += [
            "-" * 66,
            f"{'total':<16}{self.spatial_params:>14,}{self.temporal_params:>14,}{extra / 1e9:>19.2f} G",
            "",
            f"temporal parameters: {self.temporal_params / 1e6:.1f}M = {100 * self.temporal_param_share:.1f}% "
            f"of the video UNet ({(self.spatial_params + self.temporal_params) / 1e6:.1f}M)",
            f"multiply-adds per frame at latent {self.latent[0]}x{self.latent[1]}, {self.frames} frames: image "
            f"{self.image_macs_per_frame / 1e9:.1f} G, video {self.video_macs_per_frame / 1e9:.1f} G "
            f"(+{100 * self.temporal_mac_share:.1f}%)",
        ]
        return "\n".join(lines)


def _block_of(name: str) -> str:
    parts = name.split(".")
    if parts[0] in ("down_blocks", "up_blocks"):
        return f"{parts[0]}.{parts[1]}"
    return parts[0] if parts[0] == "mid_block" else "other"


def count_macs(model: torch.nn.Module, *args, **kwargs) -> tuple[float, dict[str, float]]:
    """Multiply-adds of one forward pass (FlopCounterMode counts 2 flops per multiply-add), total and per module."""
    with FlopCounterMode(display=False) as counter:
        model(*args, **kwargs)
    per_module = {name: sum(ops.values()) / 2 for name, ops in counter.get_flop_counts().items()}
    return counter.get_total_flops() / 2, per_module


def inflation_report(unet_config: dict, latent: tuple[int, int] = (64, 64), frames: int = 16,
                     **temporal_options) -> InflationReport:
    """Counts on the meta device: no weights are allocated and no arithmetic is done, so any size is instant."""
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
        video = VideoUNet.from_unet2d(unet, **temporal_options)
        cfg = unet.config
        x = torch.zeros(1, cfg.in_channels, frames, *latent)
        tokens = None
        dims = [layer.token_dim for layer in video.temporal_layers.values() if getattr(layer, "token_dim", None)]
        cross_dim = cfg.cross_attention_dim if isinstance(cfg.cross_attention_dim, int) else (dims or [None])[0]
        if cross_dim:
            tokens = torch.zeros(1, 77, cross_dim)
        extra = {}
        if cfg.num_class_embeds or cfg.class_embed_type:
            extra["class_labels"] = torch.zeros(1, dtype=torch.long)
        if cfg.addition_embed_type == "text_time":
            text_dim = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
            extra["added_cond_kwargs"] = {"text_embeds": torch.zeros(1, text_dim), "time_ids": torch.zeros(1, 6)}
        video_macs, per_module = count_macs(video, x, torch.tensor([500]), tokens, **extra)
        image_extra = {k: _repeat(v, frames) for k, v in extra.items()}
        image_macs, _ = count_macs(unet, x[:, :, 0].expand(frames, -1, -1, -1), torch.full((frames,), 500),
                                   None if tokens is None else tokens.expand(frames, -1, -1), **image_extra)
    spatial, temporal, macs = defaultdict(int), defaultdict(int), defaultdict(float)
    for name, p in unet.named_parameters():
        spatial[_block_of(name)] += p.numel()
    for key, layer in video.temporal_layers.items():
        block = _block_of(key.replace("_blocks_", "_blocks.").replace("_resnets_", ".").replace("_attentions_", "."))
        temporal[block] += sum(p.numel() for p in layer.parameters())
        macs[block] += per_module.get(f"VideoUNet.temporal_layers.{key}", 0.0) / frames
    blocks = [b for b in spatial if b != "other"]
    order = ([b for b in blocks if b.startswith("down")] + [b for b in blocks if b == "mid_block"]
             + [b for b in blocks if b.startswith("up")] + ["other"])
    rows = [(b, spatial[b], temporal[b], macs[b]) for b in order]
    return InflationReport(rows, sum(spatial.values()), sum(temporal.values()), image_macs / frames,
                           video_macs / frames, latent, frames, temporal_options)


def _repeat(value, n: int):
    if isinstance(value, dict):
        return {k: _repeat(v, n) for k, v in value.items()}
    return value.expand(n, *value.shape[1:])
