"""The main job on a tiny shipped tree: `videoldm generate`, and `ship` that builds the tree."""
import json
import os

import pytest

from conftest import TINY_AE, TINY_UNET, run_stage
from test_upsampling import PIXEL_UNET


@pytest.fixture(scope="module")
def shipped(chain, tmp_path_factory):
    from videoldm.data.synthetic import make_generator
    from videoldm.data.synthetic.base import write_dataset
    from videoldm.training.shipping import ship

    tmp = tmp_path_factory.mktemp("shipped")
    write_dataset(make_generator("driving", frames=5, size=(16, 32), fps=8, seed=0), tmp / "drive", num=4)
    data = {"path": str(tmp / "drive"), "num_frames": 5, "fps": 8, "size": [16, 32], "batch_size": 2}
    ae = run_stage(tmp, "ae", "autoencoder", {**data, "frames_per_clip": 2}, {"config": TINY_AE}).train()
    image = run_stage(tmp, "image", "image", {**data, "frames_per_clip": 2},
                      {"autoencoder": str(ae), "unet": TINY_UNET, "conditioning": "attributes"}).train()
    runs = {"driving/autoencoder": ae, "driving/image": image,
            "driving/prediction": run_stage(tmp, "prediction", "prediction", data, {"image_model": str(image)}).train(),
            "driving/interpolation": run_stage(tmp, "interpolation", "interpolation", data,
                                               {"image_model": str(image), "keyframe_every": 2}).train(),
            "driving/decoder": run_stage(tmp, "decoder", "decoder", data, {
                "autoencoder": str(ae), "discriminator": {"channels": 8, "num_layers": 1}}).train()}
    up = run_stage(tmp, "up-image", "upsampler-image", {**data, "frames_per_clip": 1},
                   {"unet": PIXEL_UNET, "patch_size": 16}).train()
    runs["driving/upsampler-image"] = up
    runs["driving/upsampler-video"] = run_stage(tmp, "up-video", "upsampler-video", data,
                                                {"image_model": str(up), "patch_size": 16}).train()
    ctmp, _, text_image, text_temporal = chain
    runs.update({"shapes/image": text_image, "shapes/temporal": text_temporal})
    return ship(runs, tmp / "tree", metrics={"shapes/temporal": "jerk ratio 0.27"}), runs


def test_ship_makes_a_self_contained_tree_with_model_cards(shipped, tmp_path):
    from videoldm.training.shipping import ship

    tree, runs = shipped
    index = json.loads((tree / "driving" / "prediction" / "videoldm.json").read_text())
    assert index["image_model"] == "../image"
    assert json.loads((tree / "driving" / "decoder" / "videoldm.json").read_text())["autoencoder"] == "../autoencoder"
    # the image model's copy of the shipped autoencoder is stored once; a VAE of its own (shapes) stays
    assert json.loads((tree / "driving" / "image" / "videoldm.json").read_text())["vae"] == "../autoencoder/vae"
    assert not (tree / "driving" / "image" / "vae").exists()
    assert json.loads((tree / "shapes" / "image" / "videoldm.json").read_text())["vae"] == "vae"
    card = (tree / "shapes" / "temporal" / "MODEL_CARD.md").read_text()
    assert "Steps: 2" in card and "jerk ratio 0.27" in card and "Recipe" in card
    with pytest.raises(ValueError, match="not among the shipped models"):
        ship({"driving/prediction": runs["driving/prediction"]}, tmp_path / "partial")


def test_shipped_weights_are_half_precision_and_generate_as_the_float32_export_does(shipped, tmp_path):
    """float16 files at half the bytes; the models load as float32 and sample what the full-precision tree does,
    to within float16's rounding of the weights."""
    import numpy as np
    from safetensors.torch import load_file

    from videoldm.inference.shipped import text_video
    from videoldm.training.shipping import ship, tree_size

    tree, runs = shipped
    names = ["shapes/image", "shapes/temporal"]
    full = ship({n: runs[n] for n in names}, tmp_path / "full", half=False)
    weights = tree / "shapes" / "image" / "unet" / "diffusion_pytorch_model.safetensors"
    assert {str(t.dtype) for t in load_file(weights).values()} == {"torch.float16"}
    assert "stored as float16" in (tree / "shapes" / "image" / "MODEL_CARD.md").read_text()
    size = {n: tree_size(tree / n) for n in names}
    assert all(0.45 < size[n] / tree_size(full / n) < 0.6 for n in names)
    videos = [text_video(models, "a red circle", seconds=0.5, steps=3, seed=1, progress=False)
              for models in (tree, full)]
    half_frames, full_frames = (v.frames.float().numpy() for v in videos)  # in [-1, 1]
    assert half_frames.shape == full_frames.shape
    assert np.abs(half_frames - full_frames).mean() < 0.02


def test_generate_writes_both_videos_and_explains_what_it_cannot_do(shipped, tmp_path, capsys):
    from videoldm.cli import main
    from videoldm.data.io import read_video

    tree, _ = shipped
    common = ["--models", str(tree), "--steps", "2", "--seconds", "1"]
    assert main(["generate", *common, "--out", str(tmp_path / "a")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["driving.gif", "driving.mp4", "text.gif", "text.mp4"]
    assert read_video(tmp_path / "a" / "driving.mp4").shape == (8, 16, 32, 3)  # 1 s at 8 fps, two clips
    assert read_video(tmp_path / "a" / "text.mp4").shape[0] == 8
    # x2 frame rate by the interpolation model (k = 2 here), then the 4x upsampler
    assert main(["generate", *common, "--daytime", "night", "--fps", "16", "--upsample",
                 "--out", str(tmp_path / "b")]) == 0
    assert read_video(tmp_path / "b" / "driving.mp4").shape == (15, 64, 128, 3)
    assert not (tmp_path / "b" / "text.mp4").exists()
    assert main(["generate", *common, "--daytime", "day", "--fps", "20", "--out", str(tmp_path / "c")]) == 2
    assert main(["generate", *common, "--prompt", "a purple unicorn", "--out", str(tmp_path / "c")]) == 2
    assert main(["generate", *common, "--prompt", "a red circle", "--seconds", "9", "--out", str(tmp_path / "c")]) == 2
    assert main(["generate", "--models", str(tmp_path / "nothing"), "--out", str(tmp_path / "c")]) == 2
    assert main(["generate", *common, "--daytime", "day", "--size", "32x64", "--out", str(tmp_path / "c")]) == 2
    # a video that could not be held in memory is refused before sampling, pointing to the streaming command
    too_long = ["--models", str(tree), "--daytime", "day", "--seconds", "1e9", "--out", str(tmp_path / "c")]
    assert main(["generate", *too_long]) == 2
    assert "videoldm rollout" in capsys.readouterr().err


def test_the_generate_path_checks_the_request_once_and_converts_the_frames_once(shipped, tmp_path, monkeypatch):
    """One check of the request (before any model loads), one conversion of each video to pixels for both files."""
    import videoldm.inference.outputs as outputs
    from videoldm.cli import main
    from videoldm.inference.shipped import Request

    tree, _ = shipped
    counts = {"checks": 0, "conversions": 0}
    check, convert = Request.__post_init__, outputs.to_uint8

    def counted_check(self):
        counts["checks"] += 1
        check(self)

    def counted_convert(frames):
        counts["conversions"] += 1
        return convert(frames)

    monkeypatch.setattr(Request, "__post_init__", counted_check)
    monkeypatch.setattr(outputs, "to_uint8", counted_convert)
    assert main(["generate", "--models", str(tree), "--steps", "1", "--seconds", "0.5", "--out", str(tmp_path)]) == 0
    assert counts == {"checks": 1, "conversions": 2}  # two videos (driving, text), each written as mp4 and GIF


def test_requests_that_cannot_make_a_video_fail_first_with_a_message(tmp_path, capsys):
    """Checked before any model is loaded (the models folder here does not even exist) and before sampling."""
    from videoldm.cli import main
    from videoldm.inference.sampling import sample

    nothing = ["--models", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]
    for args, message in [(["--seconds", "0"], "--seconds must be above 0"),
                          (["--seconds", "-1"], "--seconds must be above 0"),
                          (["--steps", "0"], "--steps must be at least 1"),
                          (["--temporal", str(tmp_path)], "--temporal goes with --base"),
                          (["--model", "driving", "--prompt", "a red circle"], "--model driving does not take --prompt"),
                          (["--model", "shapes", "--upsample"], "--model shapes does not take --upsample"),
                          (["--model", "bunny", "--size", "64x64"], "--model bunny does not take --size")]:
        assert main(["generate", *nothing, *args]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    occupied = tmp_path / "a-file"
    occupied.write_text("keep me")
    assert main(["generate", "--models", str(tmp_path / "nothing"), "--out", str(occupied)]) == 2
    assert f"--out {occupied}: cannot make this output folder" in capsys.readouterr().err
    assert occupied.read_text() == "keep me"
    # the evaluations write their folder at the end of their work: they make it first, or stop at once
    for command in ("evaluate", "evaluate-ablation", "evaluate-decoder", "evaluate-prediction",
                    "evaluate-interpolation", "evaluate-upsampler"):
        assert main([command, str(tmp_path / "no-model"), "--data", str(tmp_path / "no-data"),
                     "--out", str(occupied / "results")]) == 2
        assert f"--out {occupied / 'results'}: cannot make this output folder" in capsys.readouterr().err
        with pytest.raises(SystemExit):  # argparse: a usage line and exit code 2
            main([command, str(tmp_path / "no-model"), "--data", str(tmp_path / "no-data"), "--num", "0"])
        assert "argument --num: must be positive" in capsys.readouterr().err
    with pytest.raises(ValueError, match="num_inference_steps must be a whole number >= 1"):
        sample(lambda *a, **k: None, None, (1, 4, 8, 8), num_inference_steps=0)


def test_ctrl_c_ends_a_command_with_one_line_and_the_shells_code(tmp_path, monkeypatch, capsys):
    import videoldm.inference.shipped as shipped
    from videoldm.cli import main

    def pressed_ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(shipped, "_driving_video", pressed_ctrl_c)
    assert main(["generate", "--daytime", "day", "--out", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err.strip() == "videoldm generate: interrupted"


def test_version_is_one_number_in_the_package_the_project_file_and_the_command(capsys):
    import re
    from pathlib import Path

    import videoldm
    from videoldm.cli import main

    project = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', project, re.M).group(1) == videoldm.__version__
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"videoldm {videoldm.__version__}"


def test_unknown_words_are_named_with_the_vocabulary(shipped):
    from videoldm.inference.shipped import check_prompt
    from videoldm.inference.pipeline import VideoLDMPipeline

    tree, _ = shipped
    pipe = VideoLDMPipeline.from_pretrained(tree / "shapes" / "temporal")
    check_prompt(pipe, "a red circle moving left on a dark background")
    with pytest.raises(ValueError, match="'unicorn'.*it knows: .*circle"):
        check_prompt(pipe, "a red unicorn")


def test_generate_with_your_own_stable_diffusion_folder_and_temporal_layers(tmp_path):
    """--base: a diffusers Stable Diffusion folder (tiny, random, saved here) + a temporal-layer folder."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from videoldm import VideoUNet
    from videoldm.cli import main
    from videoldm.models.conditioning import make_text_encoder, train_tokenizer
    from videoldm.data.io import read_video

    torch.manual_seed(0)
    tokenizer = train_tokenizer(["a dog running on a beach"], max_length=8)
    unet = UNet2DConditionModel(**{**TINY_UNET, "sample_size": 8, "cross_attention_dim": 16})
    vae = AutoencoderKL(**TINY_AE)
    StableDiffusionPipeline(vae=vae, text_encoder=make_text_encoder(tokenizer, 16, 1, 2, 8), tokenizer=tokenizer,
                            unet=unet, scheduler=DDIMScheduler(), safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(tmp_path / "sd")
    VideoUNet.from_unet2d(unet).save_temporal_layers(tmp_path / "temporal")
    assert main(["generate", "--base", str(tmp_path / "sd"), "--temporal", str(tmp_path / "temporal"),
                 "--prompt", "a dog running on a beach", "--steps", "2", "--seconds", "0.5",
                 "--out", str(tmp_path / "out")]) == 0
    assert read_video(tmp_path / "out" / "text.mp4").shape == (4, 16, 16, 3)
    assert main(["generate", "--base", str(tmp_path / "sd"), "--prompt", "a dog", "--out", str(tmp_path / "x")]) == 2



def test_personalized_video_feeds_the_temporal_layers_their_own_text_encoder(tmp_path, capsys):
    """The paper's DreamBooth set-up: the spatial layers read the fine-tuned text encoder, the temporal
    layers the one they were trained with (--temporal-text), under guidance too."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from videoldm import VideoUNet
    from videoldm.cli import main
    from videoldm.models.conditioning import make_text_encoder, train_tokenizer
    from videoldm.inference.shipped import load_base

    torch.manual_seed(0)
    tokenizer = train_tokenizer(["a sks dog running on a beach"], max_length=8)
    unet = UNet2DConditionModel(**{**TINY_UNET, "sample_size": 8, "cross_attention_dim": 16})
    vae = AutoencoderKL(**TINY_AE)
    for name in ("sd", "dreambooth"):  # the same UNet; the DreamBooth folder has another text encoder
        StableDiffusionPipeline(vae=vae, text_encoder=make_text_encoder(tokenizer, 16, 1, 2, 8), tokenizer=tokenizer,
                                unet=unet, scheduler=DDIMScheduler(), safety_checker=None, feature_extractor=None,
                                requires_safety_checker=False).save_pretrained(tmp_path / name)
    video_unet = VideoUNet.from_unet2d(unet)
    with torch.no_grad():  # trained-looking temporal layers: zero-initialised outputs would hide the tokens
        for p in video_unet.trainable_parameters():
            p.normal_(0, 0.2)
    video_unet.save_temporal_layers(tmp_path / "temporal")

    def video(pipe):
        return pipe("a sks dog running on a beach", num_frames=3, num_inference_steps=2, seed=0, progress=False).frames

    own = load_base(str(tmp_path / "dreambooth"), str(tmp_path / "temporal"))
    personal = load_base(str(tmp_path / "dreambooth"), str(tmp_path / "temporal"), str(tmp_path / "sd"))
    same = load_base(str(tmp_path / "sd"), str(tmp_path / "temporal"), str(tmp_path / "sd"))
    assert torch.equal(video(same), video(load_base(str(tmp_path / "sd"), str(tmp_path / "temporal"))))
    assert not torch.allclose(video(personal), video(own))

    seen = []
    forward = personal.unet.forward
    personal.unet.forward = lambda *a, **k: seen.append(k["temporal_encoder_hidden_states"]) or forward(*a, **k)
    video(personal)
    expected = torch.cat([personal.temporal_conditioner.encode([""]), personal.temporal_conditioner.encode(
        ["a sks dog running on a beach"])])
    assert torch.equal(seen[0], expected)  # (unconditional, conditional) halves of the guided batch

    assert main(["generate", "--base", str(tmp_path / "dreambooth"), "--temporal", str(tmp_path / "temporal"),
                 "--temporal-text", str(tmp_path / "sd"), "--prompt", "a sks dog running on a beach", "--steps", "2",
                 "--seconds", "0.5", "--out", str(tmp_path / "out")]) == 0
    # refused before any model is loaded (here none exists)
    assert main(["generate", "--models", str(tmp_path / "none"), "--temporal-text", str(tmp_path / "sd"),
                 "--out", str(tmp_path / "x")]) == 2
    assert "--temporal-text goes with --base" in capsys.readouterr().err


def test_ship_command_collects_the_recipes_runs(chain, tmp_path):
    import shutil

    from videoldm.cli import main

    from videoldm.training.shipping import SHIPPED_RUNS

    ctmp, _, image, temporal = chain
    for name, src in (("shapes/image", image), ("shapes/temporal", temporal)):
        shutil.copytree(src, tmp_path / SHIPPED_RUNS[name])
    index_file = tmp_path / SHIPPED_RUNS["shapes/temporal"] / "videoldm.json"
    index = json.loads(index_file.read_text())  # as the recipe wrote it: the image run, relative to this export
    index["image_model"] = os.path.relpath(tmp_path / SHIPPED_RUNS["shapes/image"], index_file.parent)
    index_file.write_text(json.dumps(index))
    (tmp_path / "configs").mkdir()  # the measured lines for the cards, as the project keeps them
    (tmp_path / "configs" / "shipped-metrics.yaml").write_text("shapes/temporal: jerk 0.21x the image model's\n")
    assert main(["ship", "--runs", str(tmp_path), "--only", "shapes/image", "shapes/temporal",
                 "--out", str(tmp_path / "shipped")]) == 0
    index = json.loads((tmp_path / "shipped" / "shapes" / "temporal" / "videoldm.json").read_text())
    assert index["image_model"] == "../image" and (tmp_path / "shipped" / "shapes" / "image" / "MODEL_CARD.md").is_file()
    card = (tmp_path / "shipped" / "shapes" / "temporal" / "MODEL_CARD.md").read_text()
    assert "- Measured: jerk 0.21x the image model's" in card
    assert main(["ship", "--runs", str(tmp_path), "--only", "shapes/image", "--metrics", str(tmp_path / "no.yaml"),
                 "--out", str(tmp_path / "shipped")]) == 2
    assert main(["ship", "--runs", str(tmp_path), "--only", "driving/unicorn"]) == 2


def test_model_card_lists_every_recipe_that_trained_the_weights(tmp_path):
    """An upsampler trained further by a second recipe names both, in order; a frozen base of another
    stage is not part of its training."""
    from videoldm.training.shipping import model_card, recipe_chain

    def run(name, stage, steps, model):
        folder = tmp_path / "runs" / name
        (folder / "final").mkdir(parents=True)
        config = {"stage": stage, "source": f"configs/{name}.yaml", "model": model, "data": {"batch_size": 2}}
        (folder / "config.json").write_text(json.dumps(config))
        rows = "".join(f"{i + 1},0.5,4.0\n" for i in range(steps))  # 0.5 s per step
        (folder / "log.csv").write_text("step,loss,samples_per_s\n" + rows)
        return folder

    first = run("up-a", "upsampler-image", 120, {})
    second = run("up-b", "upsampler-image", 60, {"image_model": "runs/up-a/final"})
    video = run("up-video", "upsampler-video", 30, {"image_model": "runs/up-b/final"})
    assert recipe_chain(second, tmp_path) == [first, second]
    assert recipe_chain(video, tmp_path) == [video]
    card = model_card("driving/upsampler-image", second / "final", {"stage": "upsampler-image"}, None, tmp_path)
    assert "videoldm train configs/up-a.yaml && videoldm train configs/up-b.yaml" in card
    assert "180 steps and 1.5 min in all" in card
    assert "1. `configs/up-a.yaml`: 120 steps, 1.0 min" in card
    assert "&&" not in model_card("driving/upsampler-video", video / "final", {"stage": "upsampler-video"}, None, tmp_path)


def test_make_models_trains_every_shipped_run_after_the_runs_it_needs():
    """The Makefile's `models` target, read as a recipe list: each shipped run is some recipe's output, and
    every run a recipe builds on (image model, autoencoder, weights it continues) is trained before it."""
    import re
    from pathlib import Path

    import yaml

    from videoldm.training.shipping import SHIPPED_RUNS

    root = Path(__file__).resolve().parents[1]
    recipes = re.findall(r"\$\(V\) train (\S+\.yaml)", (root / "Makefile").read_text().split("\nmodels:")[1])
    trained: set[str] = set()
    for recipe in recipes:
        config = yaml.safe_load((root / recipe).read_text())
        model = config.get("model", {})
        unet = model.get("unet") if isinstance(model.get("unet"), dict) else {}
        needs = [model.get(k) for k in ("image_model", "autoencoder", "pretrained", "init_temporal")]
        for need in filter(None, needs + [unet.get("pretrained")]):
            assert str(Path(need).parent) in trained, f"{recipe} needs {need}, not trained before it"
        trained.add(config["run"]["output_dir"])
    for name, run in SHIPPED_RUNS.items():
        assert str(Path(run).parent) in trained, f"{name} ships {run}, which `make models` does not train"


def test_image_to_video_and_continuing_a_clip_start_from_the_given_frames(shipped, tmp_path):
    import torch
    from PIL import Image

    from videoldm.cli import main
    from videoldm.data.io import read_video

    tree, _ = shipped
    common = ["--models", str(tree), "--steps", "2", "--seconds", "1"]
    real = sorted((tree.parent / "drive").glob("*.mp4"))[0]
    frames = read_video(real)
    Image.fromarray(frames[0]).resize((64, 32)).save(tmp_path / "still.png")  # twice the model's 16x32: resized
    assert main(["generate", *common, "--image", str(tmp_path / "still.png"), "--out", str(tmp_path / "i")]) == 0
    video = read_video(tmp_path / "i" / "image.mp4")
    assert video.shape == (8, 16, 32, 3)  # 1 s at 8 fps, the still first
    # the video starts with the still exactly, in latent space (then decoded like every frame)
    from videoldm.inference.pipeline import VideoLDMPipeline
    from videoldm.inference.shipped import given_frames
    from videoldm.inference.stack import VideoLDMStack

    keyframes = VideoLDMPipeline.from_pretrained(tree / "driving" / "prediction")
    start = keyframes.encode(given_frames(tmp_path / "still.png", (16, 32), still=True))
    latents = VideoLDMStack(keyframes)({"daytime": "day"}, num_frames=5, num_clips=2, start=start, interpolations=0,
                                       num_inference_steps=2, progress=False, output_type="latent").frames
    assert latents.shape[2] == 5 + 3 and torch.equal(latents[:, :, :1], start)
    assert main(["generate", *common, "--continue", str(real), "--out", str(tmp_path / "c")]) == 0
    assert read_video(tmp_path / "c" / "continued.mp4").shape == (8 - 2, 16, 32, 3)  # the given two left out
    assert main(["generate", *common, "--continue", str(real), "--join", "--out", str(tmp_path / "j")]) == 0
    assert read_video(tmp_path / "j" / "continued.mp4").shape[0] == len(frames) + 6
    # bad input: a clip shorter than the context, a file that is not an image, a text model not shipped
    from videoldm.inference.outputs import write_video
    write_video(tmp_path / "one.mp4", frames[:1], 8)
    assert main(["generate", *common, "--continue", str(tmp_path / "one.mp4"), "--out", str(tmp_path / "x")]) == 2
    (tmp_path / "not.png").write_text("text")
    assert main(["generate", *common, "--image", str(tmp_path / "not.png"), "--out", str(tmp_path / "x")]) == 2
    assert main(["generate", *common, "--image", str(tmp_path / "still.png"), "--prompt", "a red circle",
                 "--out", str(tmp_path / "x")]) == 2
    assert main(["generate", *common, "--join", "--out", str(tmp_path / "x")]) == 2


def test_a_shipped_text_prediction_model_makes_the_text_videos_clip_to_clip(chain, context_models, tmp_path):
    """With shapes/prediction in the tree, text-to-video is that model: the first clip from the prompt alone
    (S = 0), longer videos continued from the last two frames, the same frames as the stack makes them; a still
    or a clip to continue take a prompt."""
    import numpy as np
    import torch
    from PIL import Image

    from videoldm.cli import main
    from videoldm.data.io import read_video
    from videoldm.inference.pipeline import VideoLDMPipeline
    from videoldm.inference.shipped import Request, _text_video
    from videoldm.inference.stack import VideoLDMStack
    from videoldm.training.shipping import ship

    _, _, image, _ = chain
    prediction, _ = context_models
    tree = ship({"shapes/image": image, "shapes/prediction": prediction}, tmp_path / "tree")
    video = _text_video(tree, Request(prompt="a red circle", seconds=1.5, steps=2, seed=3), progress=False)
    assert video.frames.shape[1] == 12  # 1.5 s at 8 fps: 4 clips of 5 frames (14), cut to what was asked
    pipe = VideoLDMPipeline.from_pretrained(tree / "shapes" / "prediction")
    expected = VideoLDMStack(pipe)("a red circle", num_frames=5, num_clips=4, interpolations=0, num_inference_steps=2,
                                   seed=3, progress=False).frames[:, :12]
    assert torch.equal(video.frames, expected)
    out = tmp_path / "out"
    assert main(["generate", "--models", str(tree), "--prompt", "a red circle", "--steps", "2", "--seconds", "0.5",
                 "--out", str(out)]) == 0
    first = read_video(out / "text.mp4")
    assert first.shape[0] == 4
    Image.fromarray(first[0]).save(tmp_path / "still.png")
    assert main(["generate", "--models", str(tree), "--prompt", "a red circle", "--image", str(tmp_path / "still.png"),
                 "--steps", "2", "--seconds", "1", "--out", str(out)]) == 0
    animated = read_video(out / "image.mp4")
    assert animated.shape[0] == 8 and np.abs(animated[0].astype(int) - first[0].astype(int)).mean() < 40


def test_model_bunny_makes_a_clip_of_the_film_model_with_its_temporal_decoder(tmp_path, capsys):
    """`--model bunny`: the real-footage family (one caption, as `data prepare --caption` writes it): the clip of
    its prediction model (S = 0, then continued) decoded by its temporal decoder, and only that video; --image
    and --continue use it too."""
    import torch
    from PIL import Image

    from videoldm.cli import main
    from videoldm.data.io import read_video
    from videoldm.data.synthetic import make_generator
    from videoldm.data.synthetic.base import write_dataset
    from videoldm.inference.pipeline import VideoLDMPipeline
    from videoldm.inference.shipped import Request, _text_clips, generate
    from videoldm.inference.stack import VideoLDMStack
    from videoldm.training.shipping import ship

    write_dataset(make_generator("shapes", frames=5, size=(16, 16), fps=8, seed=0), tmp_path / "film", num=4)
    manifest = tmp_path / "film" / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({**r, "caption": "big buck bunny"}) + "\n" for r in rows))
    data = {"path": str(tmp_path / "film"), "num_frames": 5, "fps": None, "size": [16, 16], "batch_size": 2}
    ae = run_stage(tmp_path, "ae", "autoencoder", {**data, "frames_per_clip": 2}, {"config": TINY_AE}).train()
    image = run_stage(tmp_path, "image", "image", {**data, "frames_per_clip": 2}, {
        "autoencoder": str(ae), "unet": TINY_UNET, "conditioning": "text",
        "text_encoder": {"hidden_size": 16, "layers": 1, "heads": 2, "max_length": 6}}).train()
    runs = {"bunny/autoencoder": ae, "bunny/image": image,
            "bunny/prediction": run_stage(tmp_path, "p", "prediction", data, {"image_model": str(image)}).train(),
            "bunny/decoder": run_stage(tmp_path, "d", "decoder", data, {
                "autoencoder": str(ae), "discriminator": {"channels": 8, "num_layers": 1}}).train()}
    (tmp_path / "prepare.json").write_text("{}")  # as `data prepare` leaves beside the film's train/ folder
    tree = ship(runs, tmp_path / "tree")
    card = (tree / "bunny" / "prediction" / "MODEL_CARD.md").read_text()
    assert "real footage cut at its shots by `videoldm data prepare`" in card and "Blender Foundation" in card
    out = tmp_path / "out"
    assert main(["generate", "--models", str(tree), "--model", "bunny", "--steps", "2", "--seconds", "1",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bunny.gif", "bunny.mp4"]
    assert read_video(out / "bunny.mp4").shape[0] == 8
    request = Request(model="bunny", seconds=1, steps=2, seed=1)
    video = generate(tree, request, tmp_path / "again", progress=False)
    pipe = VideoLDMPipeline.from_pretrained(tree / "bunny" / "prediction", temporal_decoder=tree / "bunny" / "decoder")
    assert pipe.decoder is not None
    expected = VideoLDMStack(pipe)("big buck bunny", num_frames=5, num_clips=2, interpolations=0,
                                   num_inference_steps=2, seed=1, progress=False).frames  # 1 s: 5 + 3 frames
    assert read_video(video[0]).shape[0] == 8
    made = _text_clips(tree, request, False, "bunny/prediction", torch.device("cpu"), torch.float32)
    image_decoded = VideoLDMStack(VideoLDMPipeline.from_pretrained(tree / "bunny" / "prediction"))(
        "big buck bunny", num_frames=5, num_clips=2, interpolations=0, num_inference_steps=2, seed=1,
        progress=False).frames
    assert torch.equal(made.frames, expected)  # the stack's frames through the temporal decoder ...
    assert not torch.allclose(made.frames, image_decoded, atol=1e-2)  # ... not the image decoder's
    Image.fromarray(read_video(out / "bunny.mp4")[0]).save(tmp_path / "still.png")
    assert main(["generate", "--models", str(tree), "--model", "bunny", "--image", str(tmp_path / "still.png"),
                 "--steps", "2", "--seconds", "1", "--out", str(out)]) == 0
    assert read_video(out / "image.mp4").shape[0] == 8
    assert main(["generate", "--models", str(tree), "--model", "bunny", "--continue", str(out / "bunny.mp4"),
                 "--steps", "2", "--seconds", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    for args, message in [(["--daytime", "night"], "--model bunny does not take --daytime"),
                          (["--prompt", "a red circle"], "does not know 'a', 'red', 'circle'")]:
        assert main(["generate", "--models", str(tree), "--model", "bunny", "--steps", "1", *args,
                     "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
