"""The training stages of a Video LDM, one module each, by the name a recipe's ``stage:`` gives."""
from .autoencoder import AutoencoderStage
from .context import InterpolationStage, PredictionStage
from .decoder import DecoderStage
from .image import ImageStage
from .temporal import TemporalStage
from .upsampler import UpsamplerImageStage, UpsamplerVideoStage

STAGES = {"autoencoder": AutoencoderStage, "image": ImageStage, "temporal": TemporalStage, "decoder": DecoderStage,
          "prediction": PredictionStage, "interpolation": InterpolationStage,
          "upsampler-image": UpsamplerImageStage, "upsampler-video": UpsamplerVideoStage}

__all__ = ["STAGES", *(cls.__name__ for cls in STAGES.values())]
