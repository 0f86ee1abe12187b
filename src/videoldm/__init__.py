"""Video latent diffusion models on top of diffusers."""
__version__ = "0.1.0"

from .models import VideoUNet  # noqa: E402

__all__ = ["VideoUNet", "__version__"]
