"""Training data: a resumable, rank-split stream of clips (or of their cached latents).

Every random choice of a training step is drawn from a generator keyed by the sample's position in the
global stream: the shuffle order, the noise, the timestep, the caption dropout. A run therefore sees the
same samples with the same noise whatever the number of processes, and resumes exactly from a position.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

LATENTS_FILE = "latents.safetensors"
META_FILE = "meta.jsonl"


class ClipStream:
    """Positions of a shuffled stream over ``num_items`` (a new permutation per epoch), split by rank."""

    def __init__(self, num_items: int, seed: int):
        if num_items == 0:
            raise ValueError("the dataset is empty")
        self.num_items, self.seed = num_items, seed
        self._perms: dict[int, torch.Tensor] = {}

    def index(self, position: int) -> int:
        epoch, offset = divmod(position, self.num_items)
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.num_items, generator=torch.Generator().manual_seed(
                self.seed * 65_537 + epoch))}
        return int(self._perms[epoch][offset])

    @staticmethod
    def local_positions(start: int, per_rank: int, rank: int) -> list[int]:
        """Stream positions of this rank's share of the global batch that begins at ``start``."""
        return list(range(start + rank * per_rank, start + (rank + 1) * per_rank))


class MixedDataset(Dataset):
    """Several video datasets as one (``data.path`` given as a list): items in order, epochs forwarded."""

    def __init__(self, datasets: list):
        self.datasets = list(datasets)
        self.offsets = [0]
        for d in self.datasets:
            self.offsets.append(self.offsets[-1] + len(d))

    def __len__(self):
        return self.offsets[-1]

    def _locate(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        k = next(k for k in range(len(self.datasets)) if index < self.offsets[k + 1])
        return self.datasets[k], index - self.offsets[k]

    def __getitem__(self, index: int):
        dataset, local = self._locate(index)
        return dataset[local]

    def record(self, index: int) -> dict:
        dataset, local = self._locate(index)
        return dataset.record(local)

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)


class _PositionDataset(Dataset):
    """Loads the item at a stream position; returns it with the position (for per-sample randomness)."""

    def __init__(self, dataset: Dataset, stream: ClipStream):
        self.dataset, self.stream = dataset, stream

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, position: int):
        if hasattr(self.dataset, "set_epoch"):  # a new, reproducible clip choice (start, crop) per epoch
            self.dataset.set_epoch(position // len(self.dataset))
        tensor, meta = self.dataset[self.stream.index(position)]
        return tensor, meta, position


def _collate(items):
    tensors, metas, positions = zip(*items)
    return {"x": torch.stack(tensors), "captions": [m.get("caption") or "" for m in metas],
            "attributes": [m.get("attributes") or {} for m in metas], "positions": list(positions)}


class BatchPositions:
    """Batch sampler: the stream positions of each of this rank's batches from ``start`` on."""

    def __init__(self, start: int, per_rank: int, rank: int, world: int):
        self.start, self.per_rank, self.rank, self.world = start, per_rank, rank, world

    def __iter__(self):
        step_start = self.start
        while True:
            yield ClipStream.local_positions(step_start, self.per_rank, self.rank)
            step_start += self.per_rank * self.world


def make_loader(dataset: Dataset, seed: int, start: int, per_rank: int, rank: int, world: int,
                num_workers: int = 0) -> DataLoader:
    """An endless loader of this rank's batches, from stream position ``start``."""
    stream = ClipStream(len(dataset), seed)
    return DataLoader(_PositionDataset(dataset, stream), batch_sampler=BatchPositions(start, per_rank, rank, world),
                      num_workers=num_workers, collate_fn=_collate, persistent_workers=num_workers > 0)


class LatentCache(Dataset):
    """Clips encoded once by the autoencoder: ``(C, T, h, w)`` latents (scaled) with caption and attributes.

    ``num_frames`` shorter than the cached clips: each item is a window of that many frames, its start drawn
    per (seed, epoch, clip), so a recipe on shorter clips (e.g. 13 frames for interpolation) uses the cache too.
    """

    def __init__(self, root: str | Path, num_frames: int | None = None, seed: int = 0):
        root = Path(root)
        if not (root / LATENTS_FILE).is_file():
            raise FileNotFoundError(f"no latent cache in {root} (make one with `videoldm cache-latents`)")
        self.latents = load_file(root / LATENTS_FILE)["latents"]
        self.meta = [json.loads(line) for line in (root / META_FILE).read_text().splitlines() if line.strip()]
        if len(self.meta) != len(self.latents):
            raise ValueError(f"latent cache {root}: {len(self.latents)} latents but {len(self.meta)} metadata rows")
        self.info = json.loads((root / "cache.json").read_text()) if (root / "cache.json").is_file() else {}
        cached = self.latents.shape[2]
        if num_frames is not None and num_frames > cached:
            raise ValueError(f"latent cache {root} holds clips of {cached} frames; data.num_frames is {num_frames}: "
                             f"cache longer clips, or train on the videos (no data.latents)")
        self.num_frames, self.seed, self.epoch = num_frames or cached, seed, 0

    def __len__(self):
        return len(self.latents)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int):
        clip = self.latents[index]
        spare = clip.shape[1] - self.num_frames
        if spare:
            start = int(np.random.default_rng([self.seed, self.epoch, index]).integers(spare + 1))  # as VideoFolderDataset
            clip = clip[:, start:start + self.num_frames]
        return clip, self.meta[index]

    @staticmethod
    def write(root: str | Path, latents: torch.Tensor, meta: list[dict], info: dict) -> None:
        root = Path(root)
        tmp = root.with_name(root.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        save_file({"latents": latents.contiguous()}, tmp / LATENTS_FILE)
        (tmp / META_FILE).write_text("".join(json.dumps(m) + "\n" for m in meta))
        (tmp / "cache.json").write_text(json.dumps(info, indent=2))
        if root.exists():
            raise FileExistsError(f"{root} exists; remove it to rebuild the cache")
        tmp.rename(root)
