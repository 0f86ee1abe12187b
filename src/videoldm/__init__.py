"""Video latent diffusion models (Align your Latents) on top of diffusers.

The package is one folder per layer, each importing only the layers below it:
``commands`` -> ``evaluation``, ``training`` -> ``inference`` -> ``export`` -> ``models``, ``data``.
The classes users start from are importable from here.
"""
import importlib

from . import _moved

__version__ = "0.1.0"

_PUBLIC = {
    "VideoUNet": "videoldm.models.video_unet",
    "TemporalDecoder": "videoldm.models.temporal_decoder",
    "VideoDiscriminator": "videoldm.models.discriminator",
    "TextConditioner": "videoldm.models.conditioning",
    "AttributeConditioner": "videoldm.models.conditioning",
    "VideoLDMPipeline": "videoldm.inference.pipeline",
    "VideoLDMStack": "videoldm.inference.stack",
    "Upsampler": "videoldm.inference.upsampling",
    "VideoOutput": "videoldm.inference.outputs",
}

__all__ = [*_PUBLIC, "__version__"]

_moved.install()


def __getattr__(name: str):
    """The public classes, imported when first used (``videoldm --version`` does not load torch)."""
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'videoldm' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
