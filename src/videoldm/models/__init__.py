"""Models: temporal layers, the video UNet and temporal decoder they make of image models, the video discriminator."""
from .temporal_layers import (AlphaBlender, RotaryTimeEmbedding, TemporalResBlock, TemporalSelfAttention,
                              TemporalTransformer, local_attention)
from .discriminator import VideoDiscriminator
from .temporal_decoder import TemporalDecoder
from .video_unet import VideoUNet, VideoUNetOutput

__all__ = ["AlphaBlender", "RotaryTimeEmbedding", "TemporalResBlock", "TemporalSelfAttention",
           "TemporalTransformer", "TemporalDecoder", "VideoDiscriminator", "VideoUNet", "VideoUNetOutput", "local_attention"]
