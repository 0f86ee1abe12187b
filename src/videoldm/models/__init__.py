"""Models: temporal layers and the video UNet they make of an image UNet."""
from .temporal_layers import (AlphaBlender, RotaryTimeEmbedding, TemporalResBlock, TemporalSelfAttention,
                              TemporalTransformer, local_attention)
from .video_unet import VideoUNet, VideoUNetOutput

__all__ = ["AlphaBlender", "RotaryTimeEmbedding", "TemporalResBlock", "TemporalSelfAttention",
           "TemporalTransformer", "VideoUNet", "VideoUNetOutput", "local_attention"]
