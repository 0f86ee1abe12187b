"""The main job: a driving clip and a text-to-video clip from the shipped models, or from your own weights.

The shipped models live under one folder (``videoldm/shipped`` by default; ``make models`` trains them):

    driving/prediction     keyframes (attribute-conditioned: daytime, crowdedness), continued clip to clip
    driving/interpolation  x4 frame rate, applied once or twice
    driving/decoder        the temporal decoder
    driving/upsampler-video  4x pixel-space video upsampler
    shapes/prediction      text-to-video (its own small text encoder and word-level tokenizer), given 0, 1 or 2
                           first frames: a prompt alone, a still (image-to-video), a clip to continue
    shapes/temporal        text-to-video, the paper's temporal stage on the same image model (used where
                           shapes/prediction is absent, and for --size)
    bunny/prediction       real footage: clips of Big Buck Bunny (one caption, "big buck bunny"), given 0, 1 or 2
                           first frames like shapes/prediction
    bunny/decoder          its temporal decoder

Each stage is optional where the request does not need it. ``base``/``temporal`` replace the text-to-video
model by an image model of yours (a diffusers Stable Diffusion folder) with a temporal-layer folder trained
for its architecture. A :class:`Request` is checked whole when it is made, before any model is loaded;
what depends on a model (its vocabulary, sizes, frame rates) is checked once that model is loaded.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..export import (is_export, load_stable_diffusion, load_stable_diffusion_file, load_text_encoder, read_index,
                      temporal_layers_folder)
from ..models.video_unet import VideoUNet
from ..data.io import read_video
from .outputs import VideoOutput, write_video
from .pipeline import VideoLDMPipeline, text_parts
from .stack import VideoLDMStack
from .upsampling import Upsampler

SHIPPED = Path(__file__).resolve().parent.parent / "shipped"
TEXT_MODEL = "shapes/prediction"  # text-to-video, image-to-video and continuation; else shapes/temporal makes text clips
DEFAULT_PROMPT = "a red circle moving left on a dark background"
MODELS = ("driving", "shapes", "bunny")  # --model: the shipped families, each a video of its own name
PREDICTION_PROMPTS = {TEXT_MODEL: DEFAULT_PROMPT, "bunny/prediction": "big buck bunny"}  # the caption it trained on


@dataclass(frozen=True)
class Request:
    """What to generate. Which videos: the one ``model`` names (:data:`MODELS`), else a text one when ``prompt``,
    ``base`` or ``size`` is given, a driving one when ``daytime``, ``crowdedness`` or ``upsample`` is, both when
    nothing says. ``fps`` is the driving video's when both are made. ``upsample_steps``: None, the upsampler's
    own default."""

    prompt: str | None = None
    daytime: str | None = None
    crowdedness: str | None = None
    seconds: float = 2.0
    fps: float | None = None
    steps: int = 25
    guidance: float = 3.0
    seed: int = 0
    upsample: bool = False
    upsample_steps: int | None = None
    size: tuple[int, int] | None = None
    base: str | None = None
    temporal: str | None = None
    temporal_text: str | None = None
    base_config: str | None = None
    image: str | None = None  # image-to-video: the still the video starts from
    continue_from: str | None = None  # a clip whose last two frames the video continues
    join: bool = False  # with continue_from: the clip and its continuation as one video
    model: str | None = None  # "driving", "shapes" or "bunny": that video only

    def __post_init__(self):
        if self.model is not None:
            self._check_model()
        if self.image is not None and self.continue_from is not None:
            raise ValueError("give --image or --continue, not both")
        if self.join and self.continue_from is None:
            raise ValueError("--join goes with --continue: the clip joined to its continuation")
        for name, path in (("--image", self.image), ("--continue", self.continue_from)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{name} {path}: no such file")
        if (self.image or self.continue_from) and (self.base or self.size or self.upsample):
            raise ValueError("--image and --continue use the shipped prediction models: without --base, --size or "
                             "--upsample")
        if self.temporal is not None and self.base is None:
            raise ValueError("--temporal goes with --base: the image model those temporal layers were trained for")
        if self.base is not None and self.temporal is None:
            raise ValueError("--base needs --temporal: a temporal-layer folder trained for that image model")
        if self.base_config is not None and self.base is None:
            raise ValueError("--base-config goes with --base: the configs of a single-file checkpoint")
        if self.temporal_text is not None and self.base is None:
            raise ValueError("--temporal-text goes with --base: the text encoder the temporal layers were trained with")
        if not self.seconds > 0:
            raise ValueError(f"--seconds must be above 0, got {self.seconds:g}")
        if self.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {self.steps}")
        if self.upsample_steps is not None and self.upsample_steps < 1:
            raise ValueError(f"--upsample-steps must be at least 1, got {self.upsample_steps}")
        if self.size is not None and self.wants_driving:
            raise ValueError("--size is for the text video; the driving models make their trained size "
                             "(--upsample gives it 4x larger)")

    def _check_model(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        driving = {"--daytime": self.daytime, "--crowdedness": self.crowdedness, "--upsample": self.upsample or None}
        text = {"--base": self.base, "--size": self.size}
        others = {"driving": {**text, "--prompt": self.prompt}, "shapes": driving, "bunny": {**driving, **text}}
        given = [flag for flag, value in others[self.model].items() if value is not None]
        if given:
            raise ValueError(f"--model {self.model} does not take {', '.join(given)}")

    @property
    def asks_text(self) -> bool:
        return self.prompt is not None or self.base is not None or self.size is not None

    @property
    def asks_driving(self) -> bool:
        return self.daytime is not None or self.crowdedness is not None or self.upsample

    @property
    def wants_text(self) -> bool:
        return self.model == "shapes" if self.model else self.asks_text or not self.asks_driving

    @property
    def wants_driving(self) -> bool:
        return self.model == "driving" if self.model else self.asks_driving or not self.asks_text

    @property
    def prediction_model(self) -> str:
        """The shipped prediction model behind --image and --continue."""
        if self.model == "bunny":
            return "bunny/prediction"
        return TEXT_MODEL if self.prompt is not None or self.model == "shapes" else "driving/prediction"


def generate(models: str | Path | None, request: Request, out: str | Path, progress: bool = True,
             device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> list[Path]:
    """The main job: ``driving.mp4``/``.gif`` and/or ``text.mp4``/``.gif`` in ``out``, as ``request`` asks,
    with the models on ``device`` in ``dtype``."""
    models = Path(models) if models is not None else SHIPPED
    placement = {"device": torch.device(device), "dtype": dtype}
    if request.image is not None or request.continue_from is not None:
        name = "image" if request.image is not None else "continued"
        return write_outputs(_given_video(models, request, progress, **placement), Path(out), name)
    written = []
    if request.model == "bunny":
        written += write_outputs(_text_clips(models, request, progress, "bunny/prediction", **placement), Path(out),
                                 "bunny")
    if request.wants_driving:
        written += write_outputs(_driving_video(models, request, progress, **placement), Path(out), "driving")
    if request.wants_text:
        written += write_outputs(_text_video(models, request, progress, **placement), Path(out), "text")
    return written


def driving_video(models: str | Path, daytime: str = "day", crowdedness: str = "medium", seconds: float = 2.0,
                  fps: float | None = None, steps: int = 25, guidance: float = 3.0, seed: int = 0,
                  upsample: bool = False, progress: bool = True, upsample_steps: int | None = None,
                  device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> VideoOutput:
    """A driving clip: keyframes (continued clip to clip for longer videos), interpolation to ``fps``, the
    temporal decoder, and optionally the 4x video upsampler (``upsample_steps``: None, the upsampler's own
    default; ``steps`` is for the diffusion models that generate the frames)."""
    request = Request(daytime=daytime, crowdedness=crowdedness, seconds=seconds, fps=fps, steps=steps,
                      guidance=guidance, seed=seed, upsample=upsample, upsample_steps=upsample_steps)
    return _driving_video(Path(models), request, progress, torch.device(device), dtype)


def text_video(models: str | Path | None, prompt: str = DEFAULT_PROMPT, seconds: float = 2.0, fps: float | None = None,
               steps: int = 25, guidance: float = 3.0, seed: int = 0, base: str | None = None,
               temporal: str | None = None, size: tuple[int, int] | None = None, progress: bool = True,
               temporal_text: str | None = None, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> VideoOutput:
    """A text-to-video clip from the shipped `shapes` model, or from ``base`` + ``temporal`` (``temporal_text``:
    the Stable Diffusion folder whose text encoder the temporal layers were trained with, when ``base`` has
    a fine-tuned one, as a DreamBooth model does)."""
    request = Request(prompt=prompt, seconds=seconds, fps=fps, steps=steps, guidance=guidance, seed=seed, base=base,
                      temporal=temporal, size=size, temporal_text=temporal_text)
    return _text_video(Path(models) if models is not None else SHIPPED, request, progress, torch.device(device), dtype)


# ------------------------------------------------------------------------------- the two videos
def _driving_video(models: Path, request: Request, progress: bool, device: torch.device = torch.device("cpu"),
                   dtype: torch.dtype = torch.float32) -> VideoOutput:
    root = models / "driving"
    decoder = root / "decoder" if is_export(root / "decoder") else None
    keyframes = VideoLDMPipeline.from_pretrained(model_folder(models, "driving/prediction"), temporal_decoder=decoder)
    attributes = {"daytime": request.daytime or "day", "crowdedness": request.crowdedness or "medium"}
    check_attributes(keyframes, attributes)
    has_interpolator = is_export(root / "interpolation")
    k = read_index(root / "interpolation").get("keyframe_every", 4) if has_interpolator else 4
    base_fps = keyframes.fps or 8.0
    passes = interpolation_passes(request.fps, base_fps, k, has_interpolator)
    interpolator = VideoLDMPipeline.from_pretrained(root / "interpolation") if passes else None
    num_frames = keyframes.info.get("num_frames") or 16
    total = max(2, round(request.seconds * base_fps))
    clips = clips_for(total, num_frames)
    frames = min(num_frames, total) if clips == 1 else num_frames + (clips - 1) * (num_frames - 2)
    for _ in range(passes):
        frames = (frames - 1) * k + 1
    latent = keyframes.latent_size or (keyframes.image_unet.config.sample_size,) * 2
    h, w = (side * keyframes.vae_scale_factor * (4 if request.upsample else 1) for side in latent)  # 4x upsampler
    check_memory(frames, h, w)
    stack = VideoLDMStack(keyframes, interpolator).to(device, dtype)
    video = stack(attributes, num_frames=min(num_frames, total) if clips == 1 else num_frames, num_clips=clips,
                  interpolations=passes, num_inference_steps=request.steps, guidance_scale=request.guidance,
                  seed=request.seed, progress=progress)
    if request.upsample:
        upsampler = Upsampler.from_pretrained(model_folder(models, "driving/upsampler-video")).to(device, dtype)
        out = upsampler(video.frames, num_inference_steps=request.upsample_steps, seed=request.seed, tile_size=256,
                        progress=progress)
        video = VideoOutput(frames=out.frames, fps=video.fps)
    return video


def _text_video(models: Path, request: Request, progress: bool, device: torch.device = torch.device("cpu"),
                dtype: torch.dtype = torch.float32) -> VideoOutput:
    if request.base is None and request.size is None and is_export(models / TEXT_MODEL):
        return _text_clips(models, request, progress, TEXT_MODEL, device, dtype)
    if request.base is not None:
        pipe = load_base(request.base, request.temporal, request.temporal_text, request.base_config)
    else:
        pipe = VideoLDMPipeline.from_pretrained(model_folder(models, "shapes/temporal"))
    pipe.to(device, dtype)
    prompt, base_fps = _text_prompt(pipe, request, DEFAULT_PROMPT)
    trained = pipe.info.get("num_frames") or 16
    frames = max(1, round(request.seconds * base_fps))
    if frames > 4 * trained:
        raise ValueError(f"{request.seconds:g} s is {frames} frames; this model makes up to {4 * trained} frames "
                         f"({4 * trained / base_fps:g} s) in one clip")
    latent = None
    if request.size is not None:
        size, f, trained_size = request.size, pipe.vae_scale_factor, pipe.latent_size
        latent = pipe.latent_size_for(size)
        if trained_size and (latent[0] > 4 * trained_size[0] or latent[1] > 4 * trained_size[1]):
            raise ValueError(f"--size {size[0]}x{size[1]} is more than 4x the trained "
                             f"{trained_size[0] * f}x{trained_size[1] * f}")
    return pipe([prompt], num_frames=frames, latent_size=latent, num_inference_steps=request.steps,
                guidance_scale=request.guidance, seed=request.seed, progress=progress)


def _text_clips(models: Path, request: Request, progress: bool, name: str, device: torch.device,
                dtype: torch.dtype) -> VideoOutput:
    """Text-to-video by a shipped prediction model (``name``; its family's temporal decoder where one ships): the
    first clip from the prompt alone (S = 0, as the paper's prediction models start a video), longer videos
    continued clip to clip from the last two frames."""
    decoder = models / name.split("/")[0] / "decoder"
    pipe = VideoLDMPipeline.from_pretrained(model_folder(models, name),
                                            temporal_decoder=decoder if is_export(decoder) else None)
    prompt, base_fps = _text_prompt(pipe, request, PREDICTION_PROMPTS[name])
    num_frames = pipe.info.get("num_frames") or 16
    total = max(2, round(request.seconds * base_fps))
    clips = clips_for(total, num_frames)
    stack = VideoLDMStack(pipe).to(device, dtype)
    video = stack(prompt, num_frames=min(num_frames, total) if clips == 1 else num_frames, num_clips=clips,
                  context_frames=CONTEXT_FRAMES, interpolations=0, num_inference_steps=request.steps,
                  guidance_scale=request.guidance, seed=request.seed, progress=progress)
    return VideoOutput(frames=video.frames[:, :total], fps=video.fps)  # the last clip may add a few frames more


def _text_prompt(pipe: VideoLDMPipeline, request: Request, default: str) -> tuple[str, float]:
    """The prompt (checked against the model's words) and the model's frame rate; a text clip has no other rate."""
    prompt = request.prompt or default
    check_prompt(pipe, prompt, default)
    base_fps = pipe.fps or 8.0
    interpolation_passes(request.fps if not request.wants_driving else None, base_fps, 4, False)
    return prompt, base_fps


def clips_for(total: int, num_frames: int) -> int:
    """Clips of ``num_frames`` that make ``total`` frames, each after the first adding ``num_frames - 2``."""
    return 1 if total <= num_frames else 1 + math.ceil((total - num_frames) / (num_frames - CONTEXT_FRAMES))


CONTEXT_FRAMES = 2  # the last frames a continuation is given, as the paper's prediction models take them


def _given_video(models: Path, request: Request, progress: bool, device: torch.device = torch.device("cpu"),
                 dtype: torch.dtype = torch.float32) -> VideoOutput:
    """Image-to-video (the still as the first clip's one context frame) or the continuation of a clip (its last
    two frames as context), by the prediction model: the driving one, with a prompt a text one
    (``shapes/prediction`` in ``models``), or the one ``request.model`` names; guidance on context and prompt
    together, as in training."""
    name = request.prediction_model
    text = name in PREDICTION_PROMPTS
    if not is_export(models / name):
        raise FileNotFoundError(f"{'image-to-video or --continue with --prompt' if text else '--image/--continue'} "
                                f"needs a prediction model at {models / name}: train "
                                f"configs/{name.split('/')[0]}/prediction.yaml and give --models")
    decoder = models / name.split("/")[0] / "decoder"
    keyframes = VideoLDMPipeline.from_pretrained(models / name, temporal_decoder=decoder if is_export(decoder) else None)
    if text:
        prompt = request.prompt or PREDICTION_PROMPTS[name]
        check_prompt(keyframes, prompt, PREDICTION_PROMPTS[name])
    else:
        prompt = {"daytime": request.daytime or "day", "crowdedness": request.crowdedness or "medium"}
        check_attributes(keyframes, prompt)
    root = models / name.split("/")[0]
    has_interpolator = is_export(root / "interpolation")
    k = read_index(root / "interpolation").get("keyframe_every", 4) if has_interpolator else 4
    base_fps = keyframes.fps or 8.0
    passes = interpolation_passes(request.fps, base_fps, k, has_interpolator)
    interpolator = VideoLDMPipeline.from_pretrained(root / "interpolation") if passes else None
    latent = keyframes.latent_size or (keyframes.image_unet.config.sample_size,) * 2
    size = tuple(side * keyframes.vae_scale_factor for side in latent)
    given = given_frames(request.image or request.continue_from, size, still=request.image is not None)
    num_frames = keyframes.info.get("num_frames") or 16
    total = max(2, round(request.seconds * base_fps))  # keyframes made, the given ones included
    clips = clips_for(total, num_frames)
    check_memory((num_frames + (clips - 1) * (num_frames - CONTEXT_FRAMES)) * k ** passes, *size)
    stack = VideoLDMStack(keyframes, interpolator).to(device, dtype)
    start = keyframes.encode(given.to(device, dtype))
    video = stack(prompt, num_frames=num_frames, num_clips=clips, interpolations=passes, start=start,
                  num_inference_steps=request.steps, guidance_scale=request.guidance, seed=request.seed,
                  progress=progress)
    if request.continue_from is None:
        return video
    first_new = (given.shape[1] - 1) * k ** passes + 1  # the given frames (and what interpolation put between them)
    new = video.frames[:, first_new:]
    if request.join:
        whole = given_frames(request.continue_from, size, still=False, last=None)
        new = torch.cat([whole, new], dim=1)
    return VideoOutput(frames=new, fps=video.fps)


def given_frames(path: str | Path, size: tuple[int, int], still: bool, last: int | None = CONTEXT_FRAMES) -> torch.Tensor:
    """An image (``still``) or the ``last`` frames of a video (None: all) as ``(1, T, 3, H, W)`` in [-1, 1], at the
    model's ``size`` (height, width): resized (bicubic) where the file has another size."""
    if still:
        try:
            with Image.open(path) as image:
                frames = np.asarray(image.convert("RGB"))[None]
        except (OSError, ValueError) as error:
            raise ValueError(f"--image {path}: not an image PIL can read ({error})") from None
    else:
        frames = read_video(path)
        if last is not None and len(frames) < last:
            raise ValueError(f"--continue {path}: {len(frames)} frame(s); a continuation is given the last {last}")
        frames = frames[-last:] if last is not None else frames
    if frames.shape[1:3] != tuple(size):
        frames = np.stack([np.asarray(Image.fromarray(f).resize(size[::-1], Image.BICUBIC)) for f in frames])
    return torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2)[None].float() / 127.5 - 1  # a writable copy


def load_base(base: str, temporal: str | None, temporal_text: str | None = None,
              base_config: str | None = None) -> VideoLDMPipeline:
    """A text-to-video pipeline from a diffusers Stable Diffusion folder (unet, vae, text encoder, tokenizer,
    scheduler), or an original single-file SD checkpoint with ``base_config`` (a diffusers SD folder of its
    configs), and a temporal-layer folder (or temporal export) made for that UNet's architecture;
    ``temporal_text``: a Stable Diffusion folder whose tokenizer and text encoder feed the temporal layers
    instead of ``base``'s."""
    if temporal is None:
        raise ValueError("--base needs --temporal: a temporal-layer folder trained for that image model")
    parts = load_stable_diffusion_file(base, base_config) if Path(base).is_file() else load_stable_diffusion(base)
    unet = VideoUNet.from_unet2d(parts["unet"], temporal_layers=temporal_layers_folder(temporal)).eval()
    trained = read_index(temporal) if is_export(temporal) else {}  # a temporal export says what it trained on
    size = trained.get("latent_size") or (unet.unet.config.sample_size,) * 2
    pipe = VideoLDMPipeline(unet, parts["vae"].eval(), parts["scheduler"], **text_parts(parts["conditioner"]),
                            latent_size=size, fps=trained.get("fps") or 8.0,
                            info={"num_frames": trained.get("num_frames") or 16})
    if temporal_text is not None:
        pipe.temporal_conditioner = load_text_encoder(temporal_text)
    return pipe


def write_outputs(video: VideoOutput, out: Path, name: str) -> list[Path]:
    """``name``.mp4 and ``name``.gif in ``out``, from one conversion of the frames."""
    out.mkdir(parents=True, exist_ok=True)
    frames = video.uint8()
    return [write_video(out / f"{name}.mp4", frames, video.fps), write_video(out / f"{name}.gif", frames, video.fps)]


# --------------------------------------------------------------------- checks against the models
def model_folder(models: str | Path, name: str) -> Path:
    folder = Path(models) / name
    if not is_export(folder):
        raise FileNotFoundError(f"the model {name} is not in {models}: train the shipped models with `make models` "
                                "(see README), or point --models at a folder holding them")
    return folder


def vocabulary(pipeline) -> list[str] | None:
    """The words a word-level tokenizer knows (the shipped text models'), sorted; None for a subword one
    (CLIP's), which knows every word."""
    tokenizer = getattr(pipeline.conditioner, "tokenizer", None)
    if tokenizer is None or not hasattr(tokenizer, "get_vocab"):
        return None
    vocab = tokenizer.get_vocab()
    unk = getattr(tokenizer, "unk_token", None)
    if unk is None or unk not in vocab:
        return None
    return sorted(w for w in vocab if w.isalpha() and not w.startswith("<"))


def check_prompt(pipeline, prompt: str, example: str = DEFAULT_PROMPT) -> None:
    """A clear error for words the model's tokenizer does not know (they would be silently ignored)."""
    known = vocabulary(pipeline)
    if known is None:
        return
    vocab = pipeline.conditioner.tokenizer.get_vocab()
    words = re.findall(r"\w+|[^\w\s]+", prompt.lower())
    unknown = [w for w in words if w not in vocab]
    if unknown:
        raise ValueError(f"the text-to-video model does not know {', '.join(map(repr, unknown))}; it knows: "
                         f"{', '.join(known)} (e.g. '{example}')")


def check_attributes(pipeline, attributes: dict) -> None:
    """A clear error for an attribute value the model was not trained on, naming the ones it was."""
    known = getattr(getattr(pipeline.conditioner, "config", None), "attributes", None) or {}
    for name, value in attributes.items():
        categories = known.get(name, {}).get("categories")
        if categories is not None and value not in categories:
            raise ValueError(f"the driving model takes --{name} {'/'.join(categories)}; got {value!r}")


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


__all__ = ["SHIPPED", "DEFAULT_PROMPT", "MODELS", "Request", "generate", "driving_video", "text_video", "load_base",
           "check_prompt", "vocabulary", "interpolation_passes", "write_outputs"]
