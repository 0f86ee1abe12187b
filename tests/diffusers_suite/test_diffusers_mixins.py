"""diffusers' own model test suite on the project's models: its ``ModelTesterMixin`` and ``MemoryTesterMixin``
(``tests/models/testing_utils/`` of a huggingface/diffusers checkout) run against ``VideoUNet`` and
``TemporalDecoder``, so they behave as diffusers models do (save/load, variants, outputs, offloading).

The suite is not part of the diffusers wheel and is not copied here: point ``DIFFUSERS_TESTS`` at the root of
a diffusers checkout (the folder holding ``tests/``) to run it; otherwise this module is skipped.

    DIFFUSERS_TESTS=path/to/diffusers .venv/bin/python -m pytest -q tests/diffusers_suite
"""
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = os.environ.get("DIFFUSERS_TESTS")
if not ROOT or not (Path(ROOT) / "tests" / "models" / "testing_utils").is_dir():
    pytest.skip("set DIFFUSERS_TESTS to a huggingface/diffusers checkout to run diffusers' model test mixins",
                allow_module_level=True)
sys.path.insert(0, ROOT)

from tests.models.testing_utils import BaseModelTesterConfig, MemoryTesterMixin, ModelTesterMixin  # noqa: E402

from videoldm.models.temporal_decoder import TemporalDecoder  # noqa: E402
from videoldm.models.video_unet import VideoUNet  # noqa: E402

UNET = {"sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1, "block_out_channels": [16, 32],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 16, "attention_head_dim": 4,
        "norm_num_groups": 8}
VAE = {"block_out_channels": [8, 16], "down_block_types": ["DownEncoderBlock2D"] * 2,
       "up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4,
       "sample_size": 16}


def _generator():
    return torch.Generator().manual_seed(0)


def config_for(model, init: dict, inputs, output_shape) -> type:
    """The interface diffusers' mixins read (``BaseModelTesterConfig``) for one of our models."""
    class Config(BaseModelTesterConfig):
        model_class = property(lambda self: model)
        output_shape = property(lambda self: output_shape)

        def get_init_dict(self):
            return dict(init)

        def get_dummy_inputs(self):
            return inputs()
    return Config


VideoUNetConfig = config_for(  # temporal layers that act (not zero-initialised), so outputs differ
    VideoUNet, {"unet_config": UNET, "zero_init": False}, lambda: {
        "sample": torch.randn(2, 4, 3, 8, 8, generator=_generator()), "timestep": torch.tensor([10, 500]),
        "encoder_hidden_states": torch.randn(2, 5, 16, generator=_generator().manual_seed(1))}, (4, 3, 8, 8))
TemporalDecoderConfig = config_for(
    TemporalDecoder, {"vae_config": VAE, "attention_head_dim": 8, "zero_init": False},
    lambda: {"latents": torch.randn(2, 4, 3, 8, 8, generator=_generator())}, (3, 3, 16, 16))


# one class per mixin: the memory mixins mark their class as needing an accelerator, and a class's marks
# are inherited by every test of a class that mixes it in
class TestVideoUNet(VideoUNetConfig, ModelTesterMixin):
    pass


class TestVideoUNetMemory(VideoUNetConfig, MemoryTesterMixin):
    pass


class TestTemporalDecoder(TemporalDecoderConfig, ModelTesterMixin):
    pass


class TestTemporalDecoderMemory(TemporalDecoderConfig, MemoryTesterMixin):
    pass
