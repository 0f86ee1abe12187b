"""Test helpers: a tiny Stable-Diffusion-structured pipeline folder, with CLIP's own tokenizer.

No hub access in the tests, so the folder is made here: random weights in the real diffusers and transformers
classes (UNet2DConditionModel, AutoencoderKL, CLIPTextModel, CLIPTokenizer, PNDMScheduler), saved by
``StableDiffusionPipeline.save_pretrained`` in the layout users download. The tokenizer is CLIP's real BPE
tokenizer (49408 tokens, the one every SD 1.x/2.x folder holds), built from the merges file that
``open-clip-torch`` ships; the wheel is fetched once from the package registry into a cache folder, and the
tests that need it are skipped, with the reason, when the registry cannot be reached.
"""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

CLIP_WHEEL = "open-clip-torch==3.3.0"
MERGES = "open_clip/bpe_simple_vocab_16e6.txt.gz"
CACHE = Path.home() / ".cache" / "videoldm-tests"

# SD 1.5's layout at toy widths: cross-attention blocks, 4 latent channels, CLIP text tokens of width 32
SD_UNET = {"sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1, "block_out_channels": [16, 32],
           "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
           "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 32, "attention_head_dim": 4,
           "norm_num_groups": 8}
SD_VAE = {"block_out_channels": [8, 16], "down_block_types": ["DownEncoderBlock2D"] * 2,
          "up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1, "latent_channels": 4,
          "norm_num_groups": 4, "sample_size": 16, "scaling_factor": 0.18215}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of bytes to printable characters, which CLIP's BPE vocabulary is written in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def clip_merges() -> list[str]:
    """CLIP's BPE merges (48894 of them, as CLIP uses), from the open_clip wheel, fetched once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(CACHE.glob("open_clip_torch-*.whl"))
    if not wheels:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(CACHE),
                               CLIP_WHEEL], capture_output=True, text=True, timeout=300)
        wheels = sorted(CACHE.glob("open_clip_torch-*.whl"))
        if done.returncode or not wheels:
            pytest.skip(f"{CLIP_WHEEL} (CLIP's BPE merges) could not be fetched: {done.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        lines = gzip.decompress(wheel.read(MERGES)).decode("utf-8").split("\n")
    return lines[1:49152 - 256 - 2 + 1]


def write_clip_tokenizer(directory: Path) -> None:
    """``vocab.json`` and ``merges.txt`` of CLIP's tokenizer, as SD folders hold them."""
    merges = clip_merges()
    base = list(_bytes_to_unicode().values())
    vocab = base + [c + "</w>" for c in base] + ["".join(m.split()) for m in merges] + \
        ["<|startoftext|>", "<|endoftext|>"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def make_sd_folder(path: Path, seed: int = 0) -> Path:
    """A Stable Diffusion pipeline folder at toy size, in diffusers' layout, with CLIP's tokenizer."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    write_clip_tokenizer(path.parent / f"{path.name}-tokenizer")
    tokenizer = CLIPTokenizer(str(path.parent / f"{path.name}-tokenizer" / "vocab.json"),
                              str(path.parent / f"{path.name}-tokenizer" / "merges.txt"), model_max_length=77)
    torch.manual_seed(seed)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                        bos_token_id=49406, eos_token_id=49407, pad_token_id=1))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              steps_offset=1)
    StableDiffusionPipeline(vae=AutoencoderKL(**SD_VAE), text_encoder=text, tokenizer=tokenizer,
                            unet=UNet2DConditionModel(**SD_UNET), scheduler=scheduler, safety_checker=None,
                            feature_extractor=None, requires_safety_checker=False).save_pretrained(path)
    return path
