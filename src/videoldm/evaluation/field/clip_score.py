"""CLIP similarity of generated videos to their prompts, and of consecutive frames to each other.

From a CLIP folder in transformers' layout (``CLIPModel`` + its tokenizer; the image preprocessing of its
``preprocessor_config.json``, else OpenAI's): every frame is resized (bicubic, short side to the model's
input size), centre-cropped and normalised; the prompt is tokenized (truncated to the model's 77 tokens).

- ``clipsim``: the cosine of each frame's and the prompt's embeddings, averaged over frames, then videos
  (GODIVA's CLIPSIM, as Make-A-Video and Video LDM report it on MSR-VTT: the paper's 0.2929).
- ``clip_score``: ``100 * max(cos, 0)``, averaged the same way (Hessel et al.'s CLIPScore weighting ``w = 100``,
  as torchmetrics reports it; papers quoting a "CLIP score" near 30 use this scale).
- ``clip_consistency``: the cosine of consecutive frames' image embeddings, averaged (1 for a frozen video).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ClipScorer"]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _embedding(out) -> torch.Tensor:
    """transformers 4 returns the projected embedding, 5 an output whose pooler_output it is."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ClipScorer:
    """``add(video, prompt)`` for each uint8 (T, H, W, 3) video (prompt may be None), then ``result()``."""

    def __init__(self, folder: str | Path, device="cpu", batch_size: int = 32):
        from transformers import AutoTokenizer, CLIPModel

        folder = Path(folder)
        try:
            self.model = CLIPModel.from_pretrained(str(folder)).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except (OSError, ValueError) as err:
            raise ValueError(f"{folder} is not a CLIP folder transformers can load "
                             f"(CLIPModel and its tokenizer): {str(err).splitlines()[0]}") from None
        self.device, self.batch_size = torch.device(device), batch_size
        self.size = self.model.config.vision_config.image_size
        mean, std = OPENAI_MEAN, OPENAI_STD
        config = folder / "preprocessor_config.json"
        if config.is_file():
            pre = json.loads(config.read_text())
            mean, std = pre.get("image_mean", mean), pre.get("image_std", std)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.max_tokens = self.model.config.text_config.max_position_embeddings
        self.text_scores: list[float] = []
        self.consistency: list[float] = []
        self.per_video: list[dict] = []

    def _pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 -> CLIP's normalised (N, 3, size, size)."""
        x = frames.to(self.device).float() / 255.0
        h, w = x.shape[-2:]
        scale = self.size / min(h, w)
        nh, nw = max(self.size, round(h * scale)), max(self.size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        top, left = (nh - self.size) // 2, (nw - self.size) // 2
        x = x[..., top:top + self.size, left:left + self.size]
        return (x - self.mean) / self.std

    @torch.no_grad()
    def image_embeddings(self, video: np.ndarray) -> torch.Tensor:
        frames = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2)
        out = [_embedding(self.model.get_image_features(pixel_values=self._pixels(frames[i:i + self.batch_size])))
               for i in range(0, len(frames), self.batch_size)]
        return F.normalize(torch.cat(out).float(), dim=-1)                  # (T, D)

    @torch.no_grad()
    def text_embedding(self, prompt: str) -> torch.Tensor:
        tokens = self.tokenizer([prompt], padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt").to(self.device)
        return F.normalize(_embedding(self.model.get_text_features(**tokens)).float(), dim=-1)[0]

    def add(self, video: np.ndarray, prompt: str | None = None) -> None:
        images = self.image_embeddings(video)
        row = {"clip_consistency": float((images[1:] * images[:-1]).sum(-1).mean())}
        self.consistency.append(row["clip_consistency"])
        if prompt:
            cos = images @ self.text_embedding(prompt)                       # (T,)
            row["clipsim"], row["clip_score"] = float(cos.mean()), float((100 * cos.clamp(min=0)).mean())
            self.text_scores.append(row["clipsim"])
        self.per_video.append(row)

    def result(self) -> dict:
        out = {"clip_consistency": float(np.mean(self.consistency))}
        if self.text_scores:
            out["clipsim"] = float(np.mean([r["clipsim"] for r in self.per_video if "clipsim" in r]))
            out["clip_score"] = float(np.mean([r["clip_score"] for r in self.per_video if "clip_score" in r]))
        out["per_video"] = self.per_video
        return out
