import json

import pytest
import torch
from conftest import force_alpha, make_unet, randomize_temporal, small_unet_config
from sd_single_file import save_original_checkpoint

from videoldm import VideoUNet
from videoldm.cli import main
from videoldm.models.loading import KNOWN_ARCHITECTURES, load_image_unet, resolve_unet_config


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_known_architectures_ship_with_the_package():
    assert {"sd15", "sd21", "sdxl", "x4-upscaler", "tiny"} <= set(KNOWN_ARCHITECTURES)
    assert resolve_unet_config("sd15")["cross_attention_dim"] == 768


def test_diffusers_model_folder_and_pipeline_folder(tmp_path):
    unet = make_unet(seed=3)
    unet.save_pretrained(tmp_path / "model")
    unet.save_pretrained(tmp_path / "pipeline" / "unet")
    for path in (tmp_path / "model", tmp_path / "pipeline"):
        assert same_weights(load_image_unet(path), unet)
        assert resolve_unet_config(path)["block_out_channels"] == [32, 64]


def test_single_file_checkpoint_through_diffusers(tmp_path):
    unet = make_unet(seed=4)
    save_original_checkpoint(unet, tmp_path / "model.safetensors")
    (tmp_path / "cfg.json").write_text(json.dumps(small_unet_config()))
    loaded = load_image_unet(tmp_path / "model.safetensors", config=tmp_path / "cfg.json")
    assert same_weights(loaded, unet)
    video = randomize_temporal(VideoUNet.from_unet2d(loaded))
    force_alpha(video, 1.0)
    x, t, ehs = torch.randn(1, 4, 2, 8, 8), torch.tensor([3]), torch.randn(1, 5, 32)
    with torch.no_grad():
        expected = unet(x[:, :, 1], t, ehs).sample
        assert (video(x, t, ehs).sample[:, :, 1] - expected).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="config"):
        load_image_unet(tmp_path / "model.safetensors")


def test_unknown_sources_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="known architecture"):
        load_image_unet(tmp_path / "nothing-here")
    (tmp_path / "model.ckpt").write_bytes(b"\0")
    with pytest.raises(ValueError, match="pickled"):
        load_image_unet(tmp_path / "model.ckpt")


def test_inflate_report_cli(capsys, tmp_path):
    assert main(["inflate", "--base", "sd15", "--latent", "32x32", "--frames", "8"]) == 0
    out = capsys.readouterr().out
    assert "mid_block" in out and "temporal parameters" in out and "of the video UNet" in out
    assert main(["inflate", "--base", "tiny", "--save", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "temporal_layers.safetensors").is_file()
    assert main(["inflate", "--base", str(tmp_path / "missing")]) == 2


def test_report_counts_match_the_model():
    from videoldm.models.size_report import inflation_report

    report = inflation_report(small_unet_config(), latent=(8, 8), frames=4)
    video = VideoUNet.from_unet2d(make_unet())
    assert report.temporal_params == sum(p.numel() for p in video.trainable_parameters())
    assert report.spatial_params == sum(p.numel() for p in video.unet.parameters())
    assert sum(r[3] for r in report.rows) == pytest.approx(report.video_macs_per_frame - report.image_macs_per_frame)
    assert 0 < report.temporal_mac_share < 1
