"""Encode a dataset's clips once with the frozen autoencoder (deterministic: the posterior's mode)."""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..export import load_autoencoder, load_image_model
from ..models.temporal_decoder import encode_latents
from .config import TrainConfig
from .data import LatentCache
from .stages.base import build_dataset


def cache_latents(config: TrainConfig, batch_size: int = 16) -> Path:
    if not config.data.latents:
        raise ValueError("set data.latents to the folder the cache should be written to")
    out = Path(config.data.latents)
    if out.exists():
        raise FileExistsError(f"{out} exists; remove it to rebuild the cache")
    if config.stage == "image":
        vae = load_autoencoder(config.model.autoencoder)
    elif config.stage == "temporal":
        vae = load_image_model(config.model.image_model, config.model.image_config)["vae"]
    else:
        raise ValueError("cache-latents needs an image or temporal recipe (they name the autoencoder)")
    vae.eval()
    dataset = build_dataset(config, need_pixels=True)
    latents, meta = [], []
    with torch.no_grad():
        for start in tqdm(range(0, len(dataset), batch_size), desc="encoding", unit="batch"):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            clips = torch.stack([x for x, _ in items])  # (B, C, T, H, W)
            latents.append(encode_latents(vae, clips))
            meta += [{"caption": m.get("caption"), "attributes": m.get("attributes"), "path": m.get("path"),
                      "start": m.get("start")} for _, m in items]
    info = {"source": config.data.path, "num_frames": config.data.num_frames, "fps": config.data.fps,
            "size": config.data.size, "scaling_factor": vae.config.scaling_factor}
    LatentCache.write(out, torch.cat(latents), meta, info)
    return out
