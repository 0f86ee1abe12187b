"""`videoldm evaluate-ablation`: the same prompts and noise through ever more of the stack."""
import json

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from conftest import randomize_temporal
from videoldm.evaluation.ablation import ABLATION_ROWS, evaluate_ablation
from videoldm.evaluation.coherence import evaluate_coherence
from videoldm.models.temporal_decoder import TemporalDecoder
from videoldm.inference.pipeline import VideoLDMPipeline
from videoldm.inference.upsampling import Upsampler

PROMPTS = ["a red circle moving right", "a blue square moving left"]


def tiny_video_upsampler() -> Upsampler:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(in_channels=6, out_channels=3, num_class_embeds=350, block_out_channels=[16, 32],
                                down_block_types=["DownBlock2D"] * 2, up_block_types=["UpBlock2D"] * 2,
                                layers_per_block=1, norm_num_groups=8, mid_block_type="UNetMidBlock2D")
    return Upsampler(unet, DDPMScheduler().config, "pixel", 4).video()


def test_ablation_rows_share_noise_and_a_new_temporal_decoder_changes_nothing(chain, tmp_path):
    tmp, data, image, temporal = chain
    pipeline = VideoLDMPipeline.from_pretrained(temporal)
    randomize_temporal(pipeline.unet, std=0.1)  # a briefly trained model is close to alpha-blended identity
    pipeline.decoder = TemporalDecoder.from_autoencoder(pipeline.vae).eval()  # new: the image decoder exactly
    kwargs = dict(num_frames=4, num_inference_steps=2, guidance_scale=2.0, seed=3)
    summary = evaluate_ablation(pipeline, PROMPTS, "shapes", tiny_video_upsampler(), tmp_path, upsampler_steps=1,
                                progress=False, **kwargs)
    assert [r for r in ABLATION_ROWS if r in summary] == list(ABLATION_ROWS)
    # the first two rows are what `evaluate` reports for the same prompts and noise
    coherence = evaluate_coherence(pipeline, PROMPTS, "shapes", **kwargs)
    assert summary[ABLATION_ROWS[0]]["flicker"] == coherence["frame_by_frame"]["flicker"]
    assert summary[ABLATION_ROWS[1]]["flicker"] == coherence["video"]["flicker"]
    assert summary[ABLATION_ROWS[0]]["flicker"] != summary[ABLATION_ROWS[1]]["flicker"]
    assert summary[ABLATION_ROWS[1]]["warping_error"] == coherence["video"]["warping_error"] >= 0  # in both
    same = [json.dumps(summary[r], sort_keys=True) for r in ABLATION_ROWS[1:3]]  # as text: NaN equals NaN
    assert same[0] == same[1]  # a temporal decoder at its start is the image decoder: nothing changes
    assert summary[ABLATION_ROWS[3]]["size"] == [64, 64] and summary[ABLATION_ROWS[1]]["size"] == [16, 16]
    table = (tmp_path / "ablation.md").read_text().splitlines()
    assert len(table) == 2 + len(ABLATION_ROWS) and table[2].startswith("| image model, frame by frame | 16x16 |")
    assert json.loads((tmp_path / "ablation.json").read_text())["settings"]["num_prompts"] == 2
    assert len(list(tmp_path.glob("ablation-*.gif"))) == len(ABLATION_ROWS)


def test_evaluate_ablation_command_without_decoder_or_upsampler(chain, tmp_path, capsys):
    from videoldm.cli import main

    tmp, data, image, temporal = chain
    assert main(["evaluate-ablation", str(temporal), "--data", data["path"], "--kind", "shapes", "--num", "2",
                 "--frames", "3", "--steps", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "ablation.json").read_text())
    assert set(rows) == {ABLATION_ROWS[0], ABLATION_ROWS[1], "settings"}
    assert "| + temporal layers | 16x16 |" in capsys.readouterr().out
