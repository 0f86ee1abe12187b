"""All four stages at toy size, chained through their exports, then the pipeline and the evaluation."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_AE as AE, TINY_UNET as UNET
from videoldm.training.config import parse_config
from videoldm.training.trainer import Trainer

RUN = {"max_steps": 2, "checkpoint_every": 0, "sample_steps": 2, "num_samples": 2}


def stage(tmp_path, name, data, model, **run):
    cfg = parse_config({"stage": name, "data": data, "model": model,
                        "run": {**RUN, "output_dir": str(tmp_path / name), **run}})
    return Trainer(cfg).train()


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    from videoldm.data.synthetic import make_generator
    from videoldm.data.synthetic.base import write_dataset

    tmp = tmp_path_factory.mktemp("stages")
    write_dataset(make_generator("shapes", frames=4, size=(16, 16), fps=8, seed=0), tmp / "clips", num=4)
    data = {"path": str(tmp / "clips"), "num_frames": 4, "fps": None, "size": [16, 16], "batch_size": 2}
    ae = stage(tmp, "autoencoder", data, {"config": AE})
    image = stage(tmp, "image", {**data, "frames_per_clip": 2}, {
        "autoencoder": str(ae), "unet": UNET, "conditioning": "text",
        "text_encoder": {"hidden_size": 16, "layers": 1, "heads": 2, "max_length": 12}})
    temporal = stage(tmp, "temporal", data, {"image_model": str(image), "temporal": {"attention_window": 2}},
                     sample_every=1)
    decoder = stage(tmp, "decoder", data, {"autoencoder": str(ae), "disc_start": 1,
                                           "discriminator": {"channels": 8, "num_layers": 1}})
    return tmp, ae, image, temporal, decoder


def test_exports_hold_what_each_stage_trained(exports):
    tmp, ae, image, temporal, _ = exports
    assert json.loads((ae / "videoldm.json").read_text())["stage"] == "autoencoder"
    assert {p.name for p in image.iterdir()} >= {"unet", "scheduler", "vae", "conditioner", "videoldm.json"}
    # the temporal export references the image model and holds only the temporal layers
    assert {p.name for p in temporal.iterdir()} == {"temporal_layers", "videoldm.json"}
    assert sorted(p.name for p in (tmp / "temporal" / "samples").iterdir()) == [
        "video-samples-00000001.gif", "video-samples-00000002.gif"]
    from safetensors.torch import load_file

    saved = load_file(temporal / "temporal_layers" / "temporal_layers.safetensors")
    assert saved and all(not k.startswith("unet.") for k in saved)


def test_a_tree_of_exports_moves_as_a_whole(exports, tmp_path):
    """Exports refer to their image model and autoencoder relative to themselves: a copied tree loads
    the copy's parts, not the original's."""
    import shutil

    from videoldm.inference.pipeline import VideoLDMPipeline
    from videoldm.export import load_temporal_decoder

    tmp = exports[0]
    for name in ("autoencoder", "image", "temporal", "decoder"):
        shutil.copytree(tmp / name / "final", tmp_path / "moved" / name / "final")
    moved = tmp_path / "moved"
    index = json.loads((moved / "temporal" / "final" / "videoldm.json").read_text())
    assert not Path(index["image_model"]).is_absolute()
    assert (moved / "temporal" / "final" / index["image_model"]).resolve() == (moved / "image" / "final").resolve()
    pipe = VideoLDMPipeline.from_pretrained(moved / "temporal" / "final", temporal_decoder=moved / "decoder" / "final")
    assert pipe(["a red circle moving left on a dark background"], num_frames=2, num_inference_steps=1,
                progress=False).frames.shape == (1, 2, 3, 16, 16)
    assert load_temporal_decoder(moved / "decoder" / "final") is not None


def test_pipeline_samples_reproducibly_and_alpha_one_is_the_image_model(exports):
    from videoldm.inference.pipeline import VideoLDMPipeline

    _, _, image, temporal, _ = exports
    pipe = VideoLDMPipeline.from_pretrained(temporal)
    prompts = ["a red circle moving left on a dark background", "a blue square moving up on a light background"]
    a = pipe(prompts, num_frames=3, num_inference_steps=2, seed=7, progress=False).frames
    b = pipe(prompts, num_frames=3, num_inference_steps=2, seed=7, progress=False).frames
    assert a.shape == (2, 3, 3, 16, 16) and torch.equal(a, b)
    base = VideoLDMPipeline.from_pretrained(image)  # the image export samples frame by frame
    as_images = pipe(prompts, num_frames=3, num_inference_steps=2, seed=7, progress=False, frame_by_frame=True).frames
    assert torch.allclose(as_images, base(prompts, num_frames=3, num_inference_steps=2, seed=7, progress=False).frames,
                          atol=1e-5)


def test_pipeline_takes_one_prompt_bare_and_refuses_what_cannot_be_a_video(exports):
    import math

    from videoldm.inference.pipeline import VideoLDMPipeline

    pipe = VideoLDMPipeline.from_pretrained(exports[3])
    prompt = "a red circle moving left on a dark background"
    one = pipe(prompt, num_frames=2, num_inference_steps=2, seed=1, progress=False).frames
    assert torch.equal(one, pipe([prompt], num_frames=2, num_inference_steps=2, seed=1, progress=False).frames)
    for kwargs, message in [({"prompts": []}, "no prompts"), ({"num_frames": 0}, "num_frames must be"),
                            ({"num_frames": -3}, "num_frames must be"), ({"latent_size": (0, 8)}, "latent_size must"),
                            ({"guidance_scale": math.nan}, "guidance_scale must be a finite")]:
        with pytest.raises(ValueError, match=message):
            pipe(**{"prompts": [prompt], "num_frames": 2, "num_inference_steps": 2, "progress": False, **kwargs})


def test_evaluation_reports_both_models(exports, tmp_path):
    from videoldm.evaluation.coherence import evaluate_coherence
    from videoldm.inference.pipeline import VideoLDMPipeline

    pipe = VideoLDMPipeline.from_pretrained(exports[3])
    summary = evaluate_coherence(pipe, ["a red circle moving left on a dark background"], "shapes", tmp_path,
                                 num_frames=3, num_inference_steps=2)
    assert set(summary) >= {"video", "frame_by_frame", "jerk_ratio"}
    assert (tmp_path / "coherence.json").is_file() and (tmp_path / "video.gif").is_file()


def test_evaluate_samples_beyond_the_trained_size_and_length(exports, tmp_path, capsys):
    """`videoldm evaluate --size --frames`: 2x the trained 16x16 frames and more frames than trained."""
    from videoldm.cli import main

    data = exports[0] / "clips"
    out = tmp_path / "big"
    assert main(["evaluate", str(exports[3]), "--data", str(data), "--num", "1", "--frames", "7", "--steps", "2",
                 "--size", "32x32", "--out", str(out)]) == 0
    settings = json.loads((out / "coherence.json").read_text())["settings"]
    assert settings["size"] == [32, 32] and settings["num_frames"] == 7
    assert main(["evaluate", str(exports[3]), "--data", str(data), "--num", "1", "--size", "20x32"]) == 2
    assert "multiples of 16" in capsys.readouterr().err


def test_pipeline_with_the_temporal_decoder(exports):
    from videoldm.inference.pipeline import VideoLDMPipeline

    _, _, image, temporal, decoder = exports
    pipe = VideoLDMPipeline.from_pretrained(temporal, temporal_decoder=decoder)
    plain = VideoLDMPipeline.from_pretrained(temporal)
    prompts = ["a red circle moving left on a dark background"]
    kwargs = dict(num_frames=5, num_inference_steps=2, seed=3, progress=False)
    video = pipe(prompts, **kwargs).frames
    assert video.shape == (1, 5, 3, 16, 16) and (video - plain(prompts, **kwargs).frames).abs().max() > 0
    # frame by frame means the image decoder too: the image model's own output
    assert torch.allclose(pipe(prompts, frame_by_frame=True, **kwargs).frames,
                          VideoLDMPipeline.from_pretrained(image)(prompts, **kwargs).frames, atol=1e-5)
    with pytest.raises(ValueError, match="not a temporal decoder"):
        VideoLDMPipeline.from_pretrained(temporal, temporal_decoder=temporal)


def test_evaluate_decoder_command_reports_both_decoders_and_seams(exports, tmp_path, capsys):
    from videoldm.cli import main
    from videoldm.evaluation.decoder import seam_pairs

    # chunks start at 0, 12, 24 and 32 (the last moved back): cross-fades of 4, 4 and 8 frames
    assert seam_pairs(48, 16, 4) == [11, 12, 13, 14, 15, 23, 24, 25, 26, 27] + list(range(31, 40))
    assert seam_pairs(32, 16, 0) == [15] and seam_pairs(16, 16, 4) == []
    tmp, _, _, _, decoder = exports
    assert main(["evaluate-decoder", str(decoder), "--data", str(tmp / "clips"), "--num", "2", "--frames", "4",
                 "--chunk", "2", "--overlaps", "1", "0", "--out", str(tmp_path), "--dtype", "bfloat16"]) == 0
    summary = json.loads((tmp_path / "decoder.json").read_text())
    assert set(summary["chunked"]) == {"overlap_1", "overlap_0"}
    assert summary["image_decoder"]["temporal_error"] > 0 and (tmp_path / "decoder.gif").is_file()
    per_clip = summary["per_clip"]  # the clips' own figures average to the overall ones
    assert np.mean(per_clip["baseline_temporal_error"]) == pytest.approx(summary["image_decoder"]["temporal_error"])
    assert np.mean(per_clip["temporal_temporal_error"]) == pytest.approx(summary["temporal_decoder"]["temporal_error"])
    assert summary["clips_with_less_flicker"] == sum(
        t < b for t, b in zip(per_clip["temporal_temporal_error"], per_clip["baseline_temporal_error"]))
    for key in ("baseline_warping_error", "temporal_warping_error", "truth_warping_error"):
        assert len(per_clip[key]) == 2 and all(v >= 0 for v in per_clip[key])
    assert summary["image_decoder"]["warping_error"] == pytest.approx(np.mean(per_clip["baseline_warping_error"]))
    assert 0 <= summary["clips_better"] <= summary["clips_with_less_flicker"]  # better: also 10% less flicker
    for key in ("truth_frame_change", "baseline_frame_change", "temporal_frame_change"):
        assert len(per_clip[key]) == 2 and all(v > 0 for v in per_clip[key])  # the clips move
    out = capsys.readouterr().out
    assert "temporal_decoder" in out and f"on {summary['clips_with_less_flicker']} of 2 clips" in out
    # clips spread over each file (its first 4 frames, then later ones, never overlapping), named by file and start
    assert main(["evaluate-decoder", str(decoder), "--data", str(tmp / "clips"), "--num", "3", "--frames", "2",
                 "--clips-per-video", "2", "--chunk", "2", "--overlaps", "0", "--out", str(tmp_path / "spread")]) == 0
    names = json.loads((tmp_path / "spread" / "decoder.json").read_text())["per_clip"]["names"]
    assert len(names) == 3 and names[0].split("@")[0] == names[1].split("@")[0] != names[2].split("@")[0]
    assert names[0] != names[1]
    for bad in ("2", "-1"):  # an overlap must be shorter than a chunk: refused before any decoding
        assert main(["evaluate-decoder", str(decoder), "--data", str(tmp / "clips"), "--num", "2", "--frames", "4",
                     "--chunk", "2", "--overlaps", "1", bad, "--out", str(tmp_path / "bad")]) == 2
        assert "overlaps must be in 0..chunk_size-1" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "decoder.json").exists()


def test_a_whole_decoder_export_is_measured_against_the_untouched_image_decoder(exports, tmp_path):
    """With train_decoder the alpha = 1 row is the fine-tuned decoder; the original one gets its own row,
    equal to decoding with the autoencoder the run started from."""
    from videoldm.data import VideoFolderDataset
    from videoldm.evaluation.decoder import evaluate_decoder
    from videoldm.evaluation.metrics import psnr
    from videoldm.export import load_original_autoencoder, load_temporal_decoder
    from videoldm.export import load_autoencoder

    tmp, ae, _, _, decoder = exports
    assert load_original_autoencoder(decoder) is None  # temporal layers only: alpha = 1 is the original
    data = {"path": str(tmp / "clips"), "num_frames": 4, "fps": None, "size": [16, 16], "batch_size": 2}
    whole = stage(tmp_path, "decoder", data, {"autoencoder": str(ae), "train_decoder": True,
                                              "discriminator": {"channels": 8, "num_layers": 1}},
                  sample_every=0, **{"max_steps": 2})
    original = load_original_autoencoder(whole)
    tuned = load_temporal_decoder(whole)
    assert any(not torch.equal(a, b) for a, b in zip(original.decoder.parameters(), tuned.vae.decoder.parameters()))
    clips = torch.stack([VideoFolderDataset(tmp / "clips", num_frames=4, fps=None, start=0)[i][0] for i in range(2)])
    summary = evaluate_decoder(tuned, clips, chunk_size=2, overlaps=(0,), gifs=0, original=original)
    vae = load_autoencoder(str(ae)).eval()
    with torch.no_grad():
        z = vae.encode(clips.transpose(1, 2).flatten(0, 1)).latent_dist.mode()
        expected = vae.decode(z).sample.clamp(-1, 1).view(2, 4, 3, 16, 16).transpose(1, 2)
    assert summary["original_decoder"]["psnr"] == pytest.approx(psnr(expected, clips), abs=1e-3)
    assert summary["original_decoder"]["psnr"] != summary["image_decoder"]["psnr"]
    # the per-clip baseline is that row, clip by clip (clamped alike)
    assert np.mean(summary["per_clip"]["baseline_temporal_error"]) == \
        pytest.approx(summary["original_decoder"]["temporal_error"])


def test_an_autoencoder_goes_on_training_from_an_export(exports, tmp_path):
    from diffusers import AutoencoderKL

    tmp, ae = exports[0], exports[1]
    data = {"path": str(tmp / "clips"), "num_frames": 4, "fps": None, "size": [16, 16], "batch_size": 2}
    cfg = parse_config({"stage": "autoencoder", "data": data, "model": {"pretrained": str(ae)},
                        "run": {**RUN, "output_dir": str(tmp_path / "more")}})
    start = Trainer(cfg).stage.vae.state_dict()
    saved = AutoencoderKL.from_pretrained(ae / "vae").state_dict()
    assert all(torch.equal(start[k], saved[k]) for k in saved)
    with pytest.raises(ValueError, match="give one"):
        Trainer(parse_config({"stage": "autoencoder", "data": data, "model": {"pretrained": str(ae), "config": AE},
                              "run": {**RUN, "output_dir": str(tmp_path / "x")}}))


def test_temporal_layers_go_onto_an_image_model_fine_tuned_on_a_new_style(exports, tmp_path):
    """The paper's personalization: fine-tune the image model alone, keep the temporal layers unchanged."""
    from videoldm.inference.pipeline import VideoLDMPipeline

    tmp, ae, image, temporal, _ = exports
    data = {"path": str(tmp / "clips"), "num_frames": 4, "fps": None, "size": [16, 16], "batch_size": 2,
            "frames_per_clip": 2}
    styled = stage(tmp_path, "image", data, {"autoencoder": str(ae), "unet": {"pretrained": str(image)},
                                             "conditioning": "text"}, checkpoint_every=0)
    original = VideoLDMPipeline.from_pretrained(temporal)
    swapped = VideoLDMPipeline.from_pretrained(temporal, image_model=styled)
    new = VideoLDMPipeline.from_pretrained(styled)
    assert torch.equal(swapped.image_unet.conv_in.weight, new.image_unet.conv_in.weight)
    assert not torch.equal(swapped.image_unet.conv_in.weight, original.image_unet.conv_in.weight)
    assert swapped.conditioner.tokenizer.get_vocab() == original.conditioner.tokenizer.get_vocab()
    t_orig = dict(original.unet.temporal_layers.named_parameters())
    assert all(torch.equal(p, t_orig[k]) for k, p in swapped.unet.temporal_layers.named_parameters())
