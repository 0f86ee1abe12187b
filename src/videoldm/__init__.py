"""Video latent diffusion models on top of diffusers."""
__version__ = "0.1.0"

from .models import TemporalDecoder, VideoDiscriminator, VideoUNet  # noqa: E402

__all__ = ["TemporalDecoder", "VideoDiscriminator", "VideoUNet", "__version__"]
