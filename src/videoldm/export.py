"""The export format: what `videoldm train` writes at the end of a stage, and every loader of it.

An export is a folder with a ``videoldm.json`` index (its ``stage`` and the sub-folders it holds) and
its weights in diffusers formats. An export that builds on another (temporal layers on their image model,
a temporal decoder on its autoencoder, a video upsampler on its image upsampler) refers to it by a path
relative to itself, so a tree of exports moves or ships as a whole. This is the one module that reads and
writes the index; training writes exports through :func:`write_index`, inference loads them through the
``load_*`` functions, which return models, not pipelines.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from .models.conditioning import AttributeConditioner, TextConditioner
from .models.loading import load_image_unet
from .models.temporal_decoder import TemporalDecoder
from .models.video_unet import VideoUNet

MODEL_INDEX = "videoldm.json"
VIDEO_STAGES = ("temporal", "prediction", "interpolation")  # temporal layers on an image model
UPSAMPLER_STAGES = ("upsampler-image", "upsampler-video")


def is_export(folder: str | Path) -> bool:
    return (Path(folder) / MODEL_INDEX).is_file()


def read_index(folder: str | Path) -> dict:
    """The index of the export ``folder``; a clear error if it is none."""
    path = Path(folder) / MODEL_INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: not an exported videoldm model (no {MODEL_INDEX})")
    return json.loads(path.read_text())


def write_index(folder: str | Path, index: dict) -> None:
    (Path(folder) / MODEL_INDEX).write_text(json.dumps(index, indent=2))


def reference(target: str | Path, directory: str | Path) -> str:
    """How an export refers to another folder (its frozen image model, its autoencoder): relative to the
    export, so a tree of exports can be moved or shipped as a whole. Read back with :func:`referenced`."""
    return os.path.relpath(Path(target).resolve(), Path(directory).resolve())


def referenced(root: str | Path, value: str) -> Path:
    """The folder an export's reference names (relative to the export; older exports hold absolute paths)."""
    return Path(root) / value


def temporal_layers_folder(path: str | Path) -> Path:
    """The temporal-layers folder of an export (or ``path`` itself, a bare temporal-layers folder)."""
    root = Path(path)
    return root / read_index(root)["temporal_layers"] if is_export(root) else root


# ---------------------------------------------------------------------------------------------- loaders
def load_autoencoder(path: str | Path) -> AutoencoderKL:
    """An ``AutoencoderKL`` from an `autoencoder` export, a Stable Diffusion folder (its ``vae/``) or a VAE folder."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"autoencoder {path} not found")
    if (root / "vae" / "config.json").is_file():
        root = root / "vae"
    return AutoencoderKL.from_pretrained(root)


def is_stable_diffusion(folder: str | Path) -> bool:
    """A diffusers Stable Diffusion folder: ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``."""
    root = Path(folder)
    return all((root / part).is_dir() for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"))


def load_image_model(path: str | Path, config: str | Path | None = None) -> dict:
    """The parts of an image model: ``index``, ``unet``, ``scheduler``, ``vae``, ``conditioner`` (or None), from
    an `image` export, a diffusers Stable Diffusion folder (whose CLIP text encoder is the conditioner) or an
    original single-file SD checkpoint (``config``: a diffusers-format folder of its configs and tokenizer)."""
    root = Path(path)
    if root.is_file() and root.suffix in (".safetensors", ".ckpt"):
        return load_stable_diffusion_file(root, config)
    if not is_export(root):
        if is_stable_diffusion(root):
            return load_stable_diffusion(root)
        raise FileNotFoundError(f"{path} is neither an exported image model (no {MODEL_INDEX}; train one with stage: "
                                "image) nor a diffusers Stable Diffusion folder (unet/ vae/ text_encoder/ tokenizer/ "
                                "scheduler/)")
    index = read_index(root)
    parts = {"index": index, "unet": UNet2DConditionModel.from_pretrained(root / index["unet"]),
             "scheduler": DDPMScheduler.from_pretrained(root / index["scheduler"]),
             "vae": AutoencoderKL.from_pretrained(root / index["vae"]), "conditioner": None}
    if index.get("conditioner"):
        cls = TextConditioner if index["conditioning"] == "text" else AttributeConditioner
        parts["conditioner"] = cls.from_pretrained(root / index["conditioner"])
    return parts


def load_stable_diffusion(path: str | Path) -> dict:
    """The parts of a diffusers Stable Diffusion folder (``unet/ vae/ text_encoder/ tokenizer/ scheduler/``),
    in the layout of :func:`load_image_model`: its text encoder is the conditioner."""
    root = Path(path)
    if not is_stable_diffusion(root):
        raise ValueError(f"{path}: expected a diffusers Stable Diffusion folder (unet/, vae/, text_encoder/, "
                         "tokenizer/, scheduler/)")
    return {"index": {"conditioning": "text"}, "unet": load_image_unet(root),
            "scheduler": DDPMScheduler.from_pretrained(root / "scheduler"),
            "vae": AutoencoderKL.from_pretrained(root / "vae"), "conditioner": load_text_encoder(root)}


def load_stable_diffusion_file(path: str | Path, config: str | Path | None = None) -> dict:
    """An original single-file Stable Diffusion checkpoint (UNet, VAE and CLIP in one file), read by diffusers'
    own single-file loader, in the layout of :func:`load_image_model`. ``config``: a diffusers-format SD folder
    for the configs and the tokenizer (its weights are not read); without one diffusers looks them up online."""
    from diffusers import StableDiffusionPipeline

    if config is not None and not is_stable_diffusion(config):
        raise ValueError(f"{config}: expected a diffusers Stable Diffusion folder (configs and tokenizer) for {path}")
    pipe = StableDiffusionPipeline.from_single_file(str(path), config=str(config) if config else None,
                                                    local_files_only=config is not None)
    return {"index": {"conditioning": "text"}, "unet": pipe.unet,
            "scheduler": DDPMScheduler.from_config(pipe.scheduler.config), "vae": pipe.vae,
            "conditioner": TextConditioner(pipe.tokenizer, pipe.text_encoder, check_eos=False).eval()}


def load_text_encoder(path: str | Path) -> TextConditioner:
    """The tokenizer and CLIP text encoder of a Stable Diffusion folder, as a conditioner."""
    root = Path(path)
    if not (root / "tokenizer").is_dir() or not (root / "text_encoder").is_dir():
        raise ValueError(f"{path}: expected a Stable Diffusion folder with tokenizer/ and text_encoder/")
    return TextConditioner.from_pretrained(root, check_eos=False).eval()


def load_video_model(path: str | Path, image_model: str | Path | None = None) -> dict:
    """An export that samples videos: a `temporal`/`prediction`/`interpolation` export (``unet`` a
    ``VideoUNet`` on its image model, or on ``image_model``, another `image` export of the same
    architecture) or an `image` export (``unet`` the image UNet, for frame-by-frame sampling). Returns
    the parts of :func:`load_image_model` with ``index`` this export's and ``image_index`` its image model's,
    and ``temporal_conditioner`` where the export trained a text encoder for its temporal layers."""
    root = Path(path)
    index = read_index(root)
    if index["stage"] in VIDEO_STAGES:
        config = referenced(root, index["image_config"]) if index.get("image_config") and not image_model else None
        parts = load_image_model(image_model or referenced(root, index["image_model"]), config)
        unet = parts["unet"]
        if index.get("unet"):  # the spatial layers were fine-tuned too
            unet = UNet2DConditionModel.from_pretrained(root / index["unet"])
        unet = VideoUNet.from_unet2d(unet, temporal_layers=root / index["temporal_layers"])
        if index.get("temporal_conditioner"):  # a text encoder trained for the temporal layers alone
            parts["temporal_conditioner"] = TextConditioner.from_pretrained(root / index["temporal_conditioner"])
    elif index["stage"] == "image":
        parts = load_image_model(root)
        unet = parts["unet"]
    else:
        raise ValueError(f"{path}: a {index['stage']} export is not a diffusion model")
    return {**parts, "unet": unet, "index": index, "image_index": parts["index"]}


def load_temporal_decoder(path: str | Path, vae: AutoencoderKL | None = None) -> TemporalDecoder:
    """A `decoder` export as a ``TemporalDecoder``: its temporal layers on ``vae`` (by default the
    autoencoder it was trained on). An export that fine-tuned the decoder too brings its own autoencoder
    (same frozen encoder)."""
    root = Path(path)
    index = read_index(root)
    if index.get("stage") != "decoder":
        raise ValueError(f"{path} is a {index.get('stage')} export, not a temporal decoder (stage: decoder)")
    if index.get("vae"):
        vae = AutoencoderKL.from_pretrained(root / index["vae"])
    elif vae is None:
        vae = load_autoencoder(referenced(root, index["autoencoder"]))
    return TemporalDecoder.from_autoencoder(vae, temporal_layers=root / index["temporal_decoder"]).eval()


def load_original_autoencoder(path: str | Path) -> AutoencoderKL | None:
    """The autoencoder a `decoder` export fine-tuned its decoder from (None if only temporal layers were
    trained): the untouched image decoder is the frame-by-frame baseline of such an export."""
    root = Path(path)
    index = read_index(root)
    if not index.get("vae"):
        return None
    return load_autoencoder(referenced(root, index["autoencoder"])).eval()


UPSCALER_PIPELINE = "StableDiffusionUpscalePipeline"


def load_upsampler(path: str | Path) -> dict:
    """An `upsampler-image`/`upsampler-video` export, or a folder in the layout of diffusers'
    ``StableDiffusionUpscalePipeline`` (the SD x4 upscaler), as the keyword arguments of
    :class:`~videoldm.inference.upsampling.Upsampler` plus ``temporal_layers`` (a folder, or None)."""
    root = Path(path)
    if is_export(root):
        index = read_index(root)
        if index.get("stage") not in UPSAMPLER_STAGES:
            raise ValueError(f"{path}: a {index.get('stage')} export, not an upsampler ({' or '.join(UPSAMPLER_STAGES)})")
        if index["stage"] == "upsampler-video":  # temporal layers on an upsampler-image export or the SD x4 upscaler
            options = load_upsampler(referenced(root, index["image_model"]))
            return {**options, "temporal_layers": root / index["temporal_layers"],
                    "sampling_steps": index.get("sampling_steps", options.get("sampling_steps", 25))}
        options = {"unet": UNet2DConditionModel.from_pretrained(root / index["unet"]),
                   "scheduler_config": DDPMScheduler.from_pretrained(root / index["scheduler"]).config,
                   "space": index["space"], "scale": index["scale"],
                   "vae": load_autoencoder(root / index["vae"]) if index["space"] == "latent" else None,
                   "text": None, "noise_level": index["noise_level"],
                   "max_noise_level": index["max_noise_level"],
                   "low_res_scheduler_config": index.get("low_res_scheduler"), "fps": index.get("fps"),
                   "residual": index.get("residual", False),
                   "residual_scale": index.get("residual_scale", 1.0),
                   "sampling_steps": index.get("sampling_steps", 25)}
        return {**options, "temporal_layers": None}
    if not (root / "model_index.json").is_file():
        raise FileNotFoundError(f"{path}: neither a videoldm upsampler export ({MODEL_INDEX}) nor a diffusers "
                                "upscaler folder (model_index.json)")
    index = json.loads((root / "model_index.json").read_text())
    name = index.get("_class_name")
    if name != UPSCALER_PIPELINE:
        raise ValueError(f"{root}: a {name} folder; only the {UPSCALER_PIPELINE} layout (the SD x4 upscaler) "
                         "loads as an upsampler")
    return {"unet": UNet2DConditionModel.from_pretrained(root / "unet"),
            "scheduler_config": DDPMScheduler.from_pretrained(root / "scheduler").config, "space": "latent",
            "scale": 4, "vae": AutoencoderKL.from_pretrained(root / "vae"),
            "text": load_text_encoder(root) if (root / "text_encoder").is_dir() else None, "noise_level": 20,
            "max_noise_level": index.get("max_noise_level", 350),
            "low_res_scheduler_config": dict(DDPMScheduler.from_pretrained(root / "low_res_scheduler").config),
            "temporal_layers": None}
