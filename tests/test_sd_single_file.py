"""Round trip: small random diffusers UNet -> original (LDM) single-file .safetensors -> ``from_single_file``.

Runs fully offline: ``HF_HUB_OFFLINE=1`` is set before diffusers is imported, huggingface_hub's offline flag is forced
on, and opening any network connection fails the test.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before diffusers / huggingface_hub read it (import time)

import json  # noqa: E402
import socket  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from sd_single_file import LDM_UNET_PREFIX, save_original_checkpoint, unet_to_original_state_dict  # noqa: E402

# Small stand-ins for /work/shared/reference/unet-configs/{sd15,sd21,sd-x4-upscaler}-unet.json
SMALL_CONFIGS = {
    "sd15-like": dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    ),
    "sd21-like": dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        upcast_attention=True,
        norm_num_groups=8,
    ),
    "x4-upscaler-like": dict(
        sample_size=16,
        in_channels=7,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        only_cross_attention=(True, True, False),
        cross_attention_dim=32,
        attention_head_dim=8,
        use_linear_projection=True,
        num_class_embeds=1000,
        class_embed_type=None,
        norm_num_groups=8,
    ),
}


@pytest.fixture
def offline(monkeypatch):
    """Hub offline mode on, and any attempt to open a network connection is an error."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)


def _random_unet(config: dict, seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**config).eval()
    # Randomise *every* tensor (norm weights/biases included), so a key the loader skips cannot match by accident.
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return unet


def _plain(config) -> dict:
    """Public config as JSON-like data (save_config/load_config turn tuples into lists; `_*` keys are bookkeeping)."""
    return json.loads(json.dumps({k: v for k, v in dict(config).items() if not k.startswith("_")}))


def _forward(unet: UNet2DConditionModel, config: dict) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(2, config["in_channels"], 16, 16, generator=g)
    text = torch.randn(2, 5, config["cross_attention_dim"], generator=g)
    class_labels = torch.tensor([20, 350]) if config.get("num_class_embeds") else None
    with torch.no_grad():
        return unet(sample, torch.tensor([10, 500]), text, class_labels=class_labels).sample


@pytest.mark.parametrize("use_subfolder", [True, False], ids=["subfolder", "flat"])
@pytest.mark.parametrize("name", list(SMALL_CONFIGS))
def test_single_file_round_trip(name, use_subfolder, tmp_path, offline):
    config = SMALL_CONFIGS[name]
    unet = _random_unet(config)
    reference = {k: v.clone() for k, v in unet.state_dict().items()}

    ckpt = tmp_path / "model.safetensors"
    save_original_checkpoint(unet, ckpt)

    # The file really is in the original layout.
    on_disk = load_file(str(ckpt))
    assert on_disk and all(k.startswith(LDM_UNET_PREFIX) for k in on_disk)
    assert len(on_disk) == len(reference)
    assert f"{LDM_UNET_PREFIX}time_embed.0.weight" in on_disk
    assert f"{LDM_UNET_PREFIX}out.2.weight" in on_disk
    assert f"{LDM_UNET_PREFIX}middle_block.1.proj_in.weight" in on_disk
    assert f"{LDM_UNET_PREFIX}output_blocks.0.0.in_layers.0.weight" in on_disk
    assert not any(k.startswith(LDM_UNET_PREFIX + p) for k in on_disk for p in ("down_blocks", "up_blocks", "mid_block"))
    proj_in = on_disk[f"{LDM_UNET_PREFIX}middle_block.1.proj_in.weight"]
    assert proj_in.ndim == (2 if config.get("use_linear_projection") else 4)
    if config.get("num_class_embeds"):
        assert on_disk[f"{LDM_UNET_PREFIX}label_emb.weight"].shape == (1000, config["block_out_channels"][0] * 4)

    # diffusers' own converter maps it back onto exactly the model's keys (nothing dropped, nothing unused).
    converted = convert_ldm_unet_checkpoint(on_disk, dict(unet.config))
    assert set(converted) == set(reference)

    if use_subfolder:
        unet.save_config(tmp_path / "config" / "unet")
        kwargs = dict(config=str(tmp_path / "config"), subfolder="unet")
    else:
        unet.save_config(tmp_path / "config")
        kwargs = dict(config=str(tmp_path / "config"))

    torch.manual_seed(1234)  # a fresh init would differ from the saved weights
    loaded = UNet2DConditionModel.from_single_file(str(ckpt), local_files_only=True, **kwargs)

    assert _plain(loaded.config) == _plain(unet.config)
    loaded_sd = loaded.state_dict()
    assert set(loaded_sd) == set(reference)
    for k, v in reference.items():
        assert loaded_sd[k].device.type == "cpu", k
        assert loaded_sd[k].dtype == v.dtype, k
        assert torch.equal(loaded_sd[k], v), k

    assert torch.equal(_forward(loaded, config), _forward(unet, config))


def test_unknown_key_raises():
    unet = _random_unet(SMALL_CONFIGS["sd15-like"])
    unet.register_parameter("extra", torch.nn.Parameter(torch.zeros(1)))
    with pytest.raises(KeyError, match="extra"):
        unet_to_original_state_dict(unet)


REFERENCE_CONFIGS = "/work/shared/reference/unet-configs"


@pytest.mark.parametrize(
    "name, n_keys, model_type",
    [("sd15-unet", 686, "v1"), ("sd21-unet", 686, "v2"), ("sd-x4-upscaler-unet", 687, "upscale")],
)
def test_full_size_key_layout(name, n_keys, model_type):
    """Real SD configs on the meta device (no weights allocated): key layout only, incl. input_blocks.10/11."""
    from accelerate import init_empty_weights
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    path = os.path.join(REFERENCE_CONFIGS, f"{name}.json")
    if not os.path.exists(path):
        pytest.skip(f"{path} not available")
    with open(path) as f:
        config = json.load(f)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(config)

    original = unet_to_original_state_dict(unet)
    assert len(original) == n_keys
    assert infer_diffusers_model_type(original) == model_type  # diffusers recognises it as that SD checkpoint
    converted = convert_ldm_unet_checkpoint(original, dict(unet.config))
    reference = unet.state_dict()
    assert set(converted) == set(reference)
    assert all(converted[k].shape == v.shape for k, v in reference.items())
