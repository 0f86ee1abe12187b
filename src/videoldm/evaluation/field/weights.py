"""Where the field metrics' networks come from: a file or folder the user gives, never a download.

Each network is looked up under a weights folder (``--weights-dir``, else the environment variable
``VIDEOLDM_WEIGHTS``) by the file name it is published under, or given by its own path. When it is not
there the error names the file, the metric that needs it and where it is usually obtained.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WEIGHTS", "WeightsSpec", "MissingWeightsError", "locate_weights", "ENV"]

ENV = "VIDEOLDM_WEIGHTS"


@dataclass(frozen=True)
class WeightsSpec:
    name: str       # the file (or folder) name it is published under
    metric: str     # which metrics need it
    source: str     # where it is usually obtained
    folder: bool = False


WEIGHTS = {
    "i3d": WeightsSpec(
        "i3d_torchscript.pt", "fvd",
        "StyleGAN-V's TorchScript export of the Kinetics-400 I3D that TF-FVD uses: "
        "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt (linked from github.com/universome/stylegan-v)"),
    "inception": WeightsSpec(
        "pt_inception-2015-12-05-6726825d.pth", "fid",
        "pytorch-fid's port of the TF FID Inception: https://github.com/mseitzer/pytorch-fid/releases/download/"
        "fid_weights/pt_inception-2015-12-05-6726825d.pth"),
    "clip": WeightsSpec(
        "clip-vit-base-patch32", "clipsim, clip_consistency",
        "a CLIP folder in transformers' layout (config.json, model weights, tokenizer files), e.g. "
        "`huggingface-cli download openai/clip-vit-base-patch32 --local-dir clip-vit-base-patch32` on a machine "
        "with hub access; any CLIP folder works through --clip", folder=True),
}


class MissingWeightsError(FileNotFoundError):
    """A metric's network is not on this machine; the message says which file and where to get it."""


def locate_weights(key: str, path: str | Path | None = None, weights_dir: str | Path | None = None) -> Path:
    """The file (or folder) of network ``key`` ("i3d", "inception", "clip"): ``path`` if given, else its published
    name under ``weights_dir``, else under $VIDEOLDM_WEIGHTS. Raises :class:`MissingWeightsError` otherwise."""
    spec = WEIGHTS[key]
    tried = []
    if path is not None:
        candidates = [Path(path)]
    else:
        folders = [Path(d) for d in (weights_dir, os.environ.get(ENV)) if d]
        candidates = [folder / spec.name for folder in folders]
    for candidate in candidates:
        if (candidate.is_dir() if spec.folder else candidate.is_file()):
            return candidate
        tried.append(str(candidate))
    where = f"looked at {', '.join(tried)}" if tried else f"no --weights-dir given and ${ENV} is not set"
    raise MissingWeightsError(
        f"{spec.metric} needs {spec.name} ({where}). Nothing is downloaded: put it in a weights folder "
        f"(--weights-dir or ${ENV}) or give its path. It is usually obtained from {spec.source}.")
