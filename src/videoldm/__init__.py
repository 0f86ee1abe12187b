"""Video latent diffusion models on top of diffusers."""
__version__ = "0.1.0"
