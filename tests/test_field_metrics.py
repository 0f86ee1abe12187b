"""The field's metrics (videoldm.evaluation.field): FVD, FID, CLIP similarity and the weight-free scores.

No machine here can download the published networks, so FVD and FID run on an I3D and an Inception of the
real architectures with random weights, written the way the real files are (TorchScript; a state dict) and
loaded back through the same loaders a user's file goes through. Inputs are tiny (32-64 px) and the
networks take a smaller input size than the protocol's 224/299, where the test says so.
"""
import io
import json
import socket

import av
import cv2
import numpy as np
import pytest
import torch
from torch import nn

from videoldm.cli import main
from videoldm.data.io import read_video
from videoldm.data.io import encode_mp4, write_mp4
from videoldm.data.synthetic import make_generator
from videoldm.evaluation.field import (FeatureStats, FIDInceptionV3, I3DFeatures, InceptionFeatures, InceptionI3d,
                                       MissingWeightsError, dynamic_degree, evaluate_videos, export_torchscript,
                                       format_markdown, frechet_distance, load_i3d, load_inception, psnr, ssim,
                                       temporal_flickering, warping_error)

N = 6  # videos per set: few, so the tests stay fast; the distances are still of full feature covariances


def he_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights that keep activations at scale through the depth (PyTorch's default init shrinks
    them ~1e-7 by the last Inception block); batch norm stays the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / m.weight[0].numel()) ** 0.5)
    return model.eval()


def blur(v, sigma):
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in v])


def noise(v, std, seed=1):
    return np.clip(v + np.random.default_rng(seed).normal(0, std, v.shape), 0, 255).astype(np.uint8)


def shuffle(v, window, seed=2):
    """Frames permuted within consecutive windows of ``window`` frames (16: the whole clip)."""
    rng, order = np.random.default_rng(seed), np.arange(len(v))
    for s in range(0, len(v), window):
        order[s:s + window] = rng.permutation(order[s:s + window])
    return v[order]


def brightness_jitter(v, amount=20, seed=3):
    return np.clip(v.astype(np.float32) + np.random.default_rng(seed).uniform(-amount, amount, (len(v), 1, 1, 1)),
                   0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def camera_videos():
    """Photographs under a moving camera (the `camera` data), 16 frames of 64x64: real textures, real motion."""
    generator = make_generator("camera", frames=16, size=(64, 64), seed=0)
    return [generator.sample(i).frames for i in range(N)]


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    torch.manual_seed(0)
    return export_torchscript(he_init(InceptionI3d()), tmp_path_factory.mktemp("weights") / "i3d_torchscript.pt")


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(he_init(FIDInceptionV3()).state_dict(), path)
    return path


def distances(extractor, reference, sets):
    """Fréchet distance of each set in ``sets`` to ``reference``, features computed in one batched pass."""
    for v in reference + [v for s in sets for v in s]:
        extractor.add(v)
    features = extractor.array()
    per_set = len(features) // (len(sets) + 1)
    stats = [FeatureStats.of(features[i:i + per_set]) for i in range(0, len(features), per_set)]
    return [frechet_distance(stats[0], s) for s in stats[1:]]


# --- the Fréchet distance -------------------------------------------------------------------------------------

def test_frechet_distance_matches_the_closed_form_and_scipy():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    # diagonal covariances: d² = |mu1 - mu2|² + sum (sqrt(a) - sqrt(b))²
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    d = frechet_distance(FeatureStats(m1, np.diag(a), 0), FeatureStats(m2, np.diag(b), 0))
    assert d == pytest.approx(((m1 - m2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum(), rel=1e-10)
    # full covariances: the textbook formula with scipy's sqrtm of the product
    x, y = rng.normal(size=(40, 8)), rng.normal(size=(40, 8)) @ rng.normal(size=(8, 8))
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    reference = ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy_linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(FeatureStats.of(x), FeatureStats.of(y)) == pytest.approx(reference, rel=1e-8)


def test_frechet_distance_of_samples_approaches_that_of_their_gaussians():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (20000, 3))
    y = rng.normal(1, 2, (20000, 3))                                         # truth: 3 * 1 + 3 * (2 - 1)² = 6
    assert frechet_distance(FeatureStats.of(x), FeatureStats.of(y)) == pytest.approx(6.0, rel=0.03)


def test_a_set_is_at_distance_zero_from_itself_even_with_fewer_samples_than_dimensions():
    x = np.random.default_rng(2).normal(size=(10, 400))                      # rank-9 covariance of 400 dims
    assert frechet_distance(FeatureStats.of(x), FeatureStats.of(x)) < 1e-8


def test_statistics_save_load_and_refuse_other_features(tmp_path):
    x = np.random.default_rng(3).normal(size=(12, 4))
    stats = FeatureStats.of(x, "i3d 16f")
    back = FeatureStats.load(stats.save(tmp_path / "ref.npz"))
    assert back.count == 12 and back.feature == "i3d 16f" and np.array_equal(back.sigma, stats.sigma)
    with pytest.raises(ValueError, match="different features"):
        frechet_distance(back, FeatureStats.of(x, "inception"))
    with pytest.raises(ValueError, match="N >= 2"):
        FeatureStats.of(x[:1])


# --- FVD: the I3D ---------------------------------------------------------------------------------------------

def test_i3d_torchscript_takes_stylegan_v_call_and_the_published_shapes(i3d_file):
    detector = load_i3d(i3d_file)
    x = torch.rand(1, 3, 16, 32, 32) * 2 - 1
    with torch.no_grad():
        features = detector(x, rescale=False, resize=False, return_features=True)
        probs = detector(x, rescale=False, resize=False, return_features=False)
        rescaled = detector((x + 1) * 127.5, rescale=True, resize=False, return_features=True)
    assert features.shape == (1, 400) and probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(rescaled, features, atol=1e-4)
    names = dict(InceptionI3d().named_parameters())                          # Inception-v1 inflated, 400 classes
    assert sum(p.numel() for p in names.values()) == 12_697_264
    assert names["Mixed_5c.b1b.conv3d.weight"].shape == (384, 192, 3, 3, 3)


def test_fvd_is_zero_for_a_set_itself_and_grows_with_blur_noise_and_shuffling(i3d_file, camera_videos):
    """I3D at 32x32 here (the protocol resizes to 224): the ordering is what is tested."""
    extractor = I3DFeatures(load_i3d(i3d_file), batch_size=64, size=32)
    vs = camera_videos
    d = distances(extractor, vs, [vs, [blur(v, 1) for v in vs], [blur(v, 3) for v in vs],
                                  [noise(v, 16) for v in vs], [noise(v, 64) for v in vs],
                                  [shuffle(v, 4) for v in vs], [shuffle(v, 16) for v in vs]])
    itself, blur1, blur3, noise16, noise64, shuffle4, shuffle16 = d
    assert itself < 1e-6 * blur1
    assert 0 < blur1 < blur3 and 0 < noise16 < noise64
    assert itself < 1e-6 * shuffle4 and shuffle4 < shuffle16                  # FVD sees frame order


def test_fvd_clips_shorter_than_the_protocol_are_refused(i3d_file):
    with pytest.raises(ValueError, match="clips of 16 frames"):
        I3DFeatures(load_i3d(i3d_file), size=32).add(np.zeros((8, 32, 32, 3), np.uint8))


# --- FID: the Inception ---------------------------------------------------------------------------------------

def test_inception_state_dict_has_pytorch_fid_names_and_loads_strictly(inception_file, tmp_path):
    model = load_inception(inception_file, size=75)
    state = model.state_dict()
    assert state["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    assert state["fc.weight"].shape == (1008, 2048) and state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    bad = {k.replace("Mixed_7c", "Mixed_7d"): v for k, v in state.items()}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not FID's Inception"):
        load_inception(tmp_path / "bad.pth")


def test_fid_is_zero_for_a_set_itself_grows_with_blur_and_noise_and_ignores_frame_order(inception_file, camera_videos):
    """Inception at 75x75 (the least it takes; FID resizes to 299); frames 0 and 8 of each video."""
    extractor = InceptionFeatures(load_inception(inception_file, size=75), batch_size=96)
    vs = [v[::8] for v in camera_videos]
    d = distances(extractor, vs, [vs, [blur(v, 1) for v in vs], [blur(v, 3) for v in vs],
                                  [noise(v, 16) for v in vs], [noise(v, 64) for v in vs], [v[::-1] for v in vs]])
    itself, blur1, blur3, noise16, noise64, shuffled = d
    assert itself < 1e-6 * blur1
    assert 0 < blur1 < blur3 and 0 < noise16 < noise64
    assert shuffled < 1e-6 * blur1                                            # the same frames: FID cannot tell


# --- evaluate_videos end to end, missing weights ---------------------------------------------------------------

def test_evaluate_videos_on_tensors_with_cached_reference_statistics(i3d_file, camera_videos, tmp_path):
    vs = camera_videos[:4]
    shuffled = [shuffle(v, 16) for v in vs]
    options = dict(i3d=i3d_file, i3d_size=32, batch_size=16, progress=False)
    first = evaluate_videos(shuffled, vs, metrics="fvd,flicker,psnr", save_stats=tmp_path / "stats", **options)
    again = evaluate_videos(shuffled, reference_stats=tmp_path / "stats", metrics="fvd", **options)
    assert first["metrics"]["fvd"] == pytest.approx(again["metrics"]["fvd"], rel=1e-9) and first["metrics"]["fvd"] > 0
    assert first["counts"]["fvd_samples"] == [4, 4] and len(first["per_video"]) == 4
    assert first["metrics"]["psnr"] < 40 and 0 < first["metrics"]["flicker"] < 1
    # torch tensors (B, C, T, H, W) in [-1, 1], the models' output, give the same flicker as the uint8 frames
    tensor = torch.from_numpy(np.stack(vs)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    assert evaluate_videos(tensor, progress=False)["metrics"]["flicker"] == pytest.approx(
        evaluate_videos(vs, progress=False)["metrics"]["flicker"], abs=1e-6)
    table = format_markdown(first)
    assert "| fvd |" in table and "2048" in table                        # says the protocol takes 2048 clips
    with pytest.raises(ValueError, match="fvd needs a reference set"):
        evaluate_videos(vs, metrics="fvd", i3d=i3d_file, progress=False)


def test_missing_weights_name_each_file_and_download_nothing(tmp_path, monkeypatch, camera_videos):
    def no_network(*args, **kwargs):
        raise AssertionError("a metric tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.delenv("VIDEOLDM_WEIGHTS", raising=False)
    with pytest.raises(MissingWeightsError) as err:
        evaluate_videos(camera_videos, camera_videos, prompts=["a photo"] * N, metrics="fvd,fid,clipsim",
                        weights_dir=tmp_path, progress=False)
    message = str(err.value)
    for name in ("i3d_torchscript.pt", "pt_inception-2015-12-05-6726825d.pth", "clip-vit-base-patch32"):
        assert name in message
    assert "fvd needs" in message and "fid needs" in message and "pytorch-fid" in message
    assert list(tmp_path.iterdir()) == []                                    # nothing written, nothing fetched


# --- the weight-free metrics ----------------------------------------------------------------------------------

def test_flicker_and_warping_error_of_a_frozen_video_are_perfect():
    still = np.repeat(make_generator("camera", frames=2, size=(48, 48), seed=0).sample(0).frames[:1], 4, 0)
    assert temporal_flickering(still)["flicker"] == 1.0
    assert warping_error(still)["warping_error"] == pytest.approx(0, abs=1e-10)
    assert dynamic_degree(still)["dynamic_degree"] == 0.0


def test_reconstruction_metrics_ssim_matches_scikit_image_and_psnr_is_exact():
    metrics = pytest.importorskip("skimage.metrics")
    v = make_generator("camera", frames=3, size=(32, 40), seed=0).sample(0).frames
    w = noise(v, 10)
    reference = np.mean([metrics.structural_similarity(v[t], w[t], channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                                       use_sample_covariance=True, data_range=255) for t in range(3)])
    assert ssim(w, v)[0] == pytest.approx(reference, abs=1e-9)
    mse = ((w.astype(float) - v) ** 2).mean() / 255 ** 2
    assert psnr(w, v)[0] == pytest.approx(10 * np.log10(1 / mse), abs=1e-9)
    with pytest.raises(ValueError, match="same size"):
        psnr(w[:2], v)


def _first_frames(path, count, width=None):
    """The first ``count`` frames of a video, resized to ``width`` (area) keeping the aspect."""
    v = read_video(path, max_frames=count)
    if width:
        h = round(v.shape[1] * width / v.shape[2] / 2) * 2
        v = np.stack([cv2.resize(f, (width, h), interpolation=cv2.INTER_AREA) for f in v])
    return v


def _reencoded(v, crf):
    buf = io.BytesIO()
    encode_mp4(buf, v, 25, crf=crf)
    buf.seek(0)
    with av.open(buf) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("name, width", [("carphone_pristine.mp4", None), ("bigbuckbunny.mp4", 320),
                                         ("vtest.avi", 256)])
def test_real_footage_is_steadier_than_its_jittered_noisy_and_shuffled_copies(footage, name, width, capsys):
    v = _first_frames(footage[name], 16, width)
    scores = {}
    for label, video in {"original": v, "jitter": brightness_jitter(v), "noise": noise(v, 8),
                         "shuffled": shuffle(v, 16), "crf 40": _reencoded(v, 40)}.items():
        scores[label] = (temporal_flickering(video)["flicker"], warping_error(video)["warping_error"])
    for label in ("jitter", "noise", "shuffled"):
        assert scores["original"][0] > scores[label][0], (label, scores)      # flicker score: higher is steadier
        assert scores["original"][1] < scores[label][1], (label, scores)      # warping error: lower is steadier
    with capsys.disabled():  # what low-quality re-encoding does is reported, not asserted (it smooths and breaks)
        print(f"\n{name}: " + ", ".join(f"{k} flicker {f:.4f} warp {w:.2e}" for k, (f, w) in scores.items()))


def test_dynamic_degree_tells_a_moving_clip_from_a_still_one(footage):
    v = _first_frames(footage["bikes.mp4"], 16, 320)
    moving, still = dynamic_degree(v), dynamic_degree(np.repeat(v[:1], 16, 0))
    assert moving["dynamic_degree"] == 1.0 and still["dynamic_degree"] == 0.0 and moving["motion"] > 6


def test_vmaf_prefers_the_pristine_carphone_to_its_distorted_encoding(footage):
    pytest.importorskip("vmaf_torch")
    from videoldm.evaluation.field import vmaf

    pristine, distorted = (_first_frames(footage[n], 6) for n in ("carphone_pristine.mp4", "carphone_distorted.mp4"))
    same, worse = vmaf([pristine, distorted], [pristine, pristine])
    assert same > 95 and worse < same - 10


# --- the command ----------------------------------------------------------------------------------------------

def test_evaluate_videos_command_writes_json_and_markdown(tmp_path, i3d_file, camera_videos, capsys):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    for i, v in enumerate(camera_videos[:3]):
        write_mp4(ref / f"clip{i}.mp4", v, 8)
        write_mp4(gen / f"clip{i}.mp4", blur(v, 1.5), 8)
    out = tmp_path / "report"
    code = main(["evaluate-videos", str(gen), "--reference", str(ref), "--metrics", "flicker,warping,psnr,ssim",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["metrics"]) == {"flicker", "warping_error", "psnr", "ssim"}
    assert [r["name"] for r in report["per_video"]] == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
    assert report["counts"] == {"generated": 3, "reference": 3}
    assert "| psnr |" in (out / "metrics.md").read_text()
    code = main(["evaluate-videos", str(gen), "--reference", str(ref), "--metrics", "fvd", "--weights-dir",
                 str(tmp_path / "none")])
    assert code == 2 and "i3d_torchscript.pt" in capsys.readouterr().err
    code = main(["evaluate-videos", str(gen), "--metrics", "flicker", "--max-videos", "2", "--no-progress",
                 "--out", str(out)])
    assert code == 0 and len(json.loads((out / "metrics.json").read_text())["per_video"]) == 2


# --- CLIP similarity ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A CLIP folder in transformers' layout (CLIPModel at toy width, random weights; CLIP's real tokenizer)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    from sd_pipeline import write_clip_tokenizer

    folder = tmp_path_factory.mktemp("clip") / "clip-vit-base-patch32"
    write_clip_tokenizer(folder.parent / "tokenizer")
    tokenizer = CLIPTokenizer(str(folder.parent / "tokenizer" / "vocab.json"),
                              str(folder.parent / "tokenizer" / "merges.txt"), model_max_length=77)
    torch.manual_seed(0)
    config = CLIPConfig(text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                         bos_token_id=49406, eos_token_id=49407, pad_token_id=1),
                        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=32, patch_size=8), projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_clip_similarity_matches_transformers_own_preprocessing_and_scales(clip_folder, camera_videos):
    from PIL import Image
    from transformers import CLIPImageProcessor

    from videoldm.evaluation.field import ClipScorer

    scorer = ClipScorer(clip_folder)
    video = camera_videos[0][:4]
    mine = scorer.image_embeddings(video)
    pixels = CLIPImageProcessor.from_pretrained(clip_folder)([Image.fromarray(f) for f in video], return_tensors="pt")
    with torch.no_grad():
        out = scorer.model.get_image_features(pixel_values=pixels["pixel_values"])
    theirs = torch.nn.functional.normalize(out if isinstance(out, torch.Tensor) else out.pooler_output, dim=-1)
    assert (mine * theirs).sum(-1).min() > 0.99                               # same frames in, same embeddings out
    scorer.add(video, "a red circle moving left")
    scorer.add(np.repeat(video[:1], 4, 0), "a photograph")
    result = scorer.result()
    first, frozen = result["per_video"]
    assert -1 <= first["clipsim"] <= 1 and first["clip_score"] >= 100 * max(first["clipsim"], 0) - 1e-4
    assert frozen["clip_consistency"] == pytest.approx(1.0, abs=1e-5) and first["clip_consistency"] < 1
    assert result["clipsim"] == pytest.approx((first["clipsim"] + frozen["clipsim"]) / 2)


def test_clipsim_through_evaluate_videos_needs_a_prompt_for_every_video(clip_folder, camera_videos):
    report = evaluate_videos(camera_videos[:2], prompts=["a photo", "a road"], metrics="clipsim", clip=clip_folder,
                             progress=False)
    assert set(report["metrics"]) == {"clipsim", "clip_score", "clip_consistency"}
    one = evaluate_videos(camera_videos[:2], prompts=["a photo", "a road"], metrics="clipsim", clip=clip_folder,
                          max_videos=1, progress=False)                     # the kept video keeps its own prompt
    kept = [row["clipsim"] for row in report["per_video"] if row["name"] == one["per_video"][0]["name"]]
    assert one["metrics"]["clipsim"] == pytest.approx(kept[0], abs=1e-6)
    with pytest.raises(ValueError, match="prompt for every video"):
        evaluate_videos(camera_videos[:2], metrics="clipsim", clip=clip_folder, progress=False)
