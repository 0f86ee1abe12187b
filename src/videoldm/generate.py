"""The main job: a driving clip and a text-to-video clip from the shipped models, or from your own weights.

The shipped models live under one folder (``videoldm/shipped`` by default; ``make models`` trains them):

    driving/prediction     keyframes (attribute-conditioned: daytime, crowdedness), continued clip to clip
    driving/interpolation  x4 frame rate, applied once or twice
    driving/decoder        the temporal decoder
    driving/upsampler-video  4x pixel-space video upsampler
    shapes/temporal        text-to-video (its own small text encoder and word-level tokenizer)

Each stage is optional where the request does not need it. ``--base``/``--temporal`` replace the
text-to-video model by an image model of yours (a diffusers Stable Diffusion folder) with a temporal-layer
folder trained for its architecture.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from .outputs import VideoOutput

SHIPPED = Path(__file__).resolve().parent / "shipped"
DEFAULT_PROMPT = "a red circle moving left on a dark background"
DAYTIMES, CROWDEDNESS = ("day", "night"), ("low", "medium", "high")


def model_folder(models: str | Path, name: str) -> Path:
    folder = Path(models) / name
    if not (folder / "videoldm.json").is_file():
        raise FileNotFoundError(f"the model {name} is not in {models}: train the shipped models with `make models` "
                                "(see README), or point --models at a folder holding them")
    return folder


def check_prompt(pipeline, prompt: str) -> None:
    """A clear error for words the model's tokenizer does not know (they would be silently ignored)."""
    tokenizer = getattr(pipeline.conditioner, "tokenizer", None)
    if tokenizer is None or not hasattr(tokenizer, "get_vocab"):
        return
    vocab = tokenizer.get_vocab()
    unk = getattr(tokenizer, "unk_token", None)
    if unk is None or unk not in vocab:
        return  # a subword tokenizer (CLIP's): every word is known
    words = re.findall(r"\w+|[^\w\s]+", prompt.lower())
    unknown = [w for w in words if w not in vocab]
    if unknown:
        known = sorted(w for w in vocab if w.isalpha() and not w.startswith("<"))
        raise ValueError(f"the text-to-video model does not know {', '.join(map(repr, unknown))}; it knows: "
                         f"{', '.join(known)} (e.g. '{DEFAULT_PROMPT}')")


def check_request(seconds: float, steps: int, base: str | None = None, temporal: str | None = None,
                  temporal_text: str | None = None) -> None:
    """Fails before any model is loaded on a request that cannot make a video."""
    if temporal is not None and base is None:
        raise ValueError("--temporal goes with --base: the image model those temporal layers were trained for")
    if temporal_text is not None and base is None:
        raise ValueError("--temporal-text goes with --base: the text encoder the temporal layers were trained with")
    if not seconds > 0:
        raise ValueError(f"--seconds must be above 0, got {seconds:g}")
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")


def check_memory(frames: int, height: int, width: int) -> None:
    """The finished video is held in memory (as float32) before it is written: refuse one that cannot fit,
    before hours of sampling, and point to the command that streams to disk."""
    need = frames * 3 * height * width * 4
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    if have and need > have / 2:
        raise ValueError(f"{frames} frames of {height}x{width} take {need / 2 ** 30:.1f} GiB as float32, more than "
                         f"half of this machine's {have / 2 ** 30:.0f} GiB: ask for fewer seconds, or render long "
                         "videos with `videoldm rollout` (frames go to the mp4 as they come; --state resumes)")


def interpolation_passes(fps: float | None, base_fps: float, factor: int, available: bool) -> int:
    """How many x``factor`` interpolation passes turn ``base_fps`` into ``fps``; an error lists what works."""
    if fps is None or fps == base_fps:
        return 0
    options = [base_fps * factor ** n for n in range(3 if available else 1)]
    for n, rate in enumerate(options):
        if math.isclose(fps, rate):
            return n
    raise ValueError(f"--fps {fps:g} is not available; this model makes {', '.join(f'{r:g}' for r in options)} fps")


def driving_video(models: str | Path, daytime: str = "day", crowdedness: str = "medium", seconds: float = 2.0,
                  fps: float | None = None, steps: int = 25, guidance: float = 3.0, seed: int = 0,
                  upsample: bool = False, progress: bool = True, upsample_steps: int | None = None) -> VideoOutput:
    """A driving clip: keyframes (continued clip to clip for longer videos), interpolation to ``fps``, the
    temporal decoder, and optionally the 4x video upsampler (``upsample_steps``: None, the upsampler's own
    default; ``steps`` is for the diffusion models that generate the frames)."""
    from .pipeline import VideoLDMPipeline
    from .stack import VideoLDMStack

    check_request(seconds, steps)
    if upsample_steps is not None and upsample_steps < 1:
        raise ValueError(f"--upsample-steps must be at least 1, got {upsample_steps}")
    if daytime not in DAYTIMES or crowdedness not in CROWDEDNESS:
        raise ValueError(f"the driving model takes --daytime {'/'.join(DAYTIMES)} and --crowdedness "
                         f"{'/'.join(CROWDEDNESS)}; got {daytime!r}, {crowdedness!r}")
    root = Path(models) / "driving"
    decoder = root / "decoder" if (root / "decoder" / "videoldm.json").is_file() else None
    keyframes = VideoLDMPipeline.from_pretrained(model_folder(models, "driving/prediction"), temporal_decoder=decoder)
    has_interpolator = (root / "interpolation" / "videoldm.json").is_file()
    k = json.loads((root / "interpolation" / "videoldm.json").read_text()).get("keyframe_every", 4) \
        if has_interpolator else 4
    base_fps = keyframes.fps or 8.0
    passes = interpolation_passes(fps, base_fps, k, has_interpolator)
    interpolator = VideoLDMPipeline.from_pretrained(root / "interpolation") if passes else None
    num_frames = keyframes.info.get("num_frames") or 16
    total = max(2, round(seconds * base_fps))
    clips = 1 if total <= num_frames else 1 + math.ceil((total - num_frames) / (num_frames - 2))
    frames = min(num_frames, total) if clips == 1 else num_frames + (clips - 1) * (num_frames - 2)
    for _ in range(passes):
        frames = (frames - 1) * k + 1
    f = 2 ** (len(keyframes.vae.config.block_out_channels) - 1)
    latent = keyframes.latent_size or (keyframes.image_unet.config.sample_size,) * 2
    h, w = (side * f * (4 if upsample else 1) for side in latent)  # the shipped upsampler is 4x
    check_memory(frames, h, w)
    stack = VideoLDMStack(keyframes, interpolator)
    video = stack({"daytime": daytime, "crowdedness": crowdedness}, num_frames=min(num_frames, total) if clips == 1
                  else num_frames, num_clips=clips, interpolations=passes, num_inference_steps=steps,
                  guidance_scale=guidance, seed=seed, progress=progress)
    if upsample:
        video = upsample_video(model_folder(models, "driving/upsampler-video"), video, upsample_steps, seed, progress)
    return video


def upsample_video(folder: Path, video: VideoOutput, steps: int | None, seed: int, progress: bool) -> VideoOutput:
    from .upsampling import Upsampler

    upsampler = Upsampler.from_pretrained(folder)
    out = upsampler(video.frames, num_inference_steps=steps, seed=seed, tile_size=256, progress=progress)
    return VideoOutput(frames=out.frames, fps=video.fps)


def text_video(models: str | Path | None, prompt: str = DEFAULT_PROMPT, seconds: float = 2.0, fps: float | None = None,
               steps: int = 25, guidance: float = 3.0, seed: int = 0, base: str | None = None,
               temporal: str | None = None, size: tuple[int, int] | None = None, progress: bool = True,
               temporal_text: str | None = None) -> VideoOutput:
    """A text-to-video clip from the shipped `shapes` model, or from ``base`` + ``temporal`` (``temporal_text``:
    the Stable Diffusion folder whose text encoder the temporal layers were trained with, when ``base`` has
    a fine-tuned one, as a DreamBooth model does)."""
    from .pipeline import VideoLDMPipeline

    check_request(seconds, steps, base, temporal, temporal_text)
    if base is not None:
        pipe = load_base(base, temporal, temporal_text)
    else:
        pipe = VideoLDMPipeline.from_pretrained(model_folder(models, "shapes/temporal"))
    check_prompt(pipe, prompt)
    base_fps = pipe.fps or 8.0
    interpolation_passes(fps, base_fps, 4, False)
    trained = pipe.info.get("num_frames") or 16
    frames = max(1, round(seconds * base_fps))
    if frames > 4 * trained:
        raise ValueError(f"{seconds:g} s is {frames} frames; this model makes up to {4 * trained} frames "
                         f"({4 * trained / base_fps:g} s) in one clip")
    latent = None
    if size is not None:
        f = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        trained_size = pipe.latent_size
        latent = pipe.latent_size_for(size)
        if trained_size and (latent[0] > 4 * trained_size[0] or latent[1] > 4 * trained_size[1]):
            raise ValueError(f"--size {size[0]}x{size[1]} is more than 4x the trained "
                             f"{trained_size[0] * f}x{trained_size[1] * f}")
    return pipe([prompt], num_frames=frames, latent_size=latent, num_inference_steps=steps, guidance_scale=guidance,
                seed=seed, progress=progress)


def load_base(base: str, temporal: str | None, temporal_text: str | None = None):
    """A text-to-video pipeline from a diffusers Stable Diffusion folder (unet, vae, text encoder, tokenizer,
    scheduler) and a temporal-layer folder made for that UNet's architecture; ``temporal_text``: a Stable
    Diffusion folder whose tokenizer and text encoder feed the temporal layers instead of ``base``'s."""
    from diffusers import AutoencoderKL, DDPMScheduler
    from transformers import AutoTokenizer, CLIPTextModel

    from .models.loading import load_image_unet
    from .models.video_unet import VideoUNet
    from .pipeline import VideoLDMPipeline
    from .conditioning import PromptEncoder

    if temporal is None:
        raise ValueError("--base needs --temporal: a temporal-layer folder trained for that image model")
    root = Path(base)
    if not (root / "unet").is_dir() or not (root / "vae").is_dir():
        raise ValueError(f"--base {base}: expected a diffusers Stable Diffusion folder (unet/, vae/, text_encoder/, "
                         "tokenizer/, scheduler/)")
    def prompt_encoder(folder: Path) -> PromptEncoder:
        if not (folder / "tokenizer").is_dir() or not (folder / "text_encoder").is_dir():
            raise ValueError(f"{folder}: expected a Stable Diffusion folder with tokenizer/ and text_encoder/")
        return PromptEncoder(AutoTokenizer.from_pretrained(folder / "tokenizer"),
                             CLIPTextModel.from_pretrained(folder / "text_encoder"))

    unet = VideoUNet.from_unet2d(load_image_unet(root), temporal_layers=temporal).eval()
    vae = AutoencoderKL.from_pretrained(root / "vae").eval()
    text = prompt_encoder(root)
    scheduler = DDPMScheduler.from_pretrained(root / "scheduler")
    size = unet.unet.config.sample_size
    pipe = VideoLDMPipeline(unet, vae, scheduler.config, text, "text", (size, size), 8.0)
    pipe.info = {"num_frames": 16}
    if temporal_text is not None:
        pipe.temporal_conditioner = prompt_encoder(Path(temporal_text))
    return pipe


def write_outputs(video: VideoOutput, out: Path, name: str) -> list[Path]:
    """``name``.mp4 and ``name``.gif in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    return [video.export(out / f"{name}.mp4"), video.export(out / f"{name}.gif")]


__all__ = ["SHIPPED", "DEFAULT_PROMPT", "driving_video", "text_video", "load_base", "check_prompt",
           "check_request", "interpolation_passes", "write_outputs"]
