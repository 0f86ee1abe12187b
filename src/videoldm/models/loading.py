"""Image UNets from the formats users have: an architecture name, a config, a diffusers folder, a single file.

Everything goes through diffusers' own loaders; nothing here reads a checkpoint by hand.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from diffusers import UNet2DConditionModel

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs" / "unets"
KNOWN_ARCHITECTURES = sorted(p.name for p in CONFIG_ROOT.iterdir() if (p / "config.json").is_file())


def architecture_config(name: str) -> dict:
    """The diffusers config of a known architecture (``sd15``, ``sd21``, ``sdxl``, ``x4-upscaler``, ``tiny``)."""
    path = CONFIG_ROOT / name / "config.json"
    if not path.is_file():
        raise ValueError(f"unknown architecture '{name}'; known: {', '.join(KNOWN_ARCHITECTURES)}")
    return json.loads(path.read_text())


def resolve_unet_config(source: str | os.PathLike, config: str | os.PathLike | None = None) -> dict:
    """The diffusers config of the UNet that :func:`load_image_unet` would build, without reading weights."""
    source = str(source)
    if source in KNOWN_ARCHITECTURES:
        return architecture_config(source)
    path = Path(source)
    if path.is_dir():
        for candidate in (path / "unet" / "config.json", path / "config.json"):
            if candidate.is_file():
                return json.loads(candidate.read_text())
        raise FileNotFoundError(f"{source}: a folder without config.json or unet/config.json")
    if path.suffix == ".json" and path.is_file():
        return json.loads(path.read_text())
    if path.suffix == ".safetensors" and path.is_file():
        if config is None:
            raise ValueError(f"{source}: a single-file checkpoint needs a config naming its architecture")
        return resolve_unet_config(config)
    raise FileNotFoundError(f"{source}: neither a known architecture ({', '.join(KNOWN_ARCHITECTURES)}), "
                            "a config .json, a diffusers folder nor a .safetensors checkpoint")


def load_image_unet(source: str | os.PathLike, config: str | os.PathLike | None = None,
                    **from_pretrained_kwargs) -> UNet2DConditionModel:
    """Builds a diffusers image UNet from ``source``:

    - a known architecture name (random weights, for architecture work), or a ``config.json`` file;
    - a diffusers folder: a model folder (``config.json`` + weights) or a pipeline folder (``unet/``);
    - a single-file Stable Diffusion checkpoint (``.safetensors``, original layout), read by diffusers'
      ``from_single_file``. ``config`` then names its architecture (a known name, a ``config.json``, or
      a folder holding one); it is required, because without it diffusers would ask the model hub.
    """
    source = str(source)
    if source in KNOWN_ARCHITECTURES:
        return UNet2DConditionModel.from_config(architecture_config(source))
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{source}: neither a file, a folder, nor a known architecture "
                                f"({', '.join(KNOWN_ARCHITECTURES)})")
    if path.is_dir():
        if (path / "unet" / "config.json").is_file():
            return UNet2DConditionModel.from_pretrained(path, subfolder="unet", **from_pretrained_kwargs)
        if (path / "config.json").is_file():
            return UNet2DConditionModel.from_pretrained(path, **from_pretrained_kwargs)
        raise FileNotFoundError(f"{source}: a folder without config.json or unet/config.json")
    if path.suffix == ".json":
        return UNet2DConditionModel.from_config(json.loads(path.read_text()))
    if path.suffix == ".safetensors":
        return _from_single_file(path, config, **from_pretrained_kwargs)
    raise ValueError(f"{source}: unsupported file type '{path.suffix}' (use .safetensors or a config .json; "
                     "pickled .ckpt files are not loaded)")


def _from_single_file(path: Path, config, **kwargs) -> UNet2DConditionModel:
    if config is None:
        raise ValueError(f"{path}: a single-file checkpoint needs config= (one of {', '.join(KNOWN_ARCHITECTURES)}, "
                         "a config.json or a folder holding one) to name its architecture offline")
    with tempfile.TemporaryDirectory() as tmp:
        if str(config) in KNOWN_ARCHITECTURES:
            config_dir = CONFIG_ROOT / str(config)
        elif Path(config).is_dir():
            config_dir = Path(config) / "unet" if (Path(config) / "unet" / "config.json").is_file() else Path(config)
        elif Path(config).is_file():
            config_dir = Path(tmp)
            (config_dir / "config.json").write_text(Path(config).read_text())
        else:
            raise FileNotFoundError(f"config {config}: not a known architecture, file or folder")
        try:
            return UNet2DConditionModel.from_single_file(str(path), config=str(config_dir),
                                                          local_files_only=True, **kwargs)
        except NotImplementedError as err:  # diffusers' meta-tensor error when a key is missing
            raise ValueError(f"{path}: the checkpoint does not fit the architecture of {config} "
                             f"(a weight is missing): {err}") from err
