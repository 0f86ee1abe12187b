"""The main job for a front end that serves others (``videoldm serve``): limits on what one visitor may ask for,
progress from every sampling step, and a cancel that stops the sampling at the next step.

It runs :func:`videoldm.inference.shipped.generate`, the function ``videoldm generate`` runs, so a page and the
command make the same videos and refuse bad input with the same messages. Nothing here knows of the web.
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..export import is_export, read_index
from .pipeline import VideoLDMPipeline
from .sampling import watching_steps
from .shipped import SHIPPED, Request, generate, vocabulary


class Cancelled(Exception):
    """A job stopped by :meth:`Job.cancel`; its message says after how many sampling steps."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, so that one visitor cannot hold the machine for hours."""

    max_seconds: float = 8.0
    max_steps: int = 50

    def check(self, request: Request) -> None:
        self.check_numbers(request.seconds, request.steps, request.upsample_steps)

    def check_numbers(self, seconds: float, steps: int, upsample_steps: int | None = None,
                      command: str = "videoldm generate") -> None:
        if seconds > self.max_seconds:
            raise ValueError(f"this server makes videos of up to {self.max_seconds:g} s; asked for "
                             f"{seconds:g} s (run `{command}` for longer ones)")
        for name, asked in (("steps", steps), ("upsample steps", upsample_steps)):
            if asked is not None and asked > self.max_steps:
                raise ValueError(f"this server samples up to {self.max_steps} {name}; asked for {asked} "
                                 f"(run `{command}` for more)")


class Job:
    """One generation: ``run`` it (in a worker thread), ``cancel`` it from another. ``steps`` counts the
    sampling steps taken, over every loop of the job; ``steps_at_cancel`` those taken when it was cancelled."""

    def __init__(self):
        self.steps = 0
        self.steps_at_cancel: int | None = None
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stops the job at the end of the sampling step under way (one that has not started does not start)."""
        if self.steps_at_cancel is None:
            self.steps_at_cancel = self.steps
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self, models: str | Path | None, request: Request, out: str | Path, limits: Limits | None = None,
            on_step=None, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> list[Path]:
        """The files ``videoldm generate`` writes for ``request``, in ``out``. ``on_step(step, steps)``: after
        every sampling step (``steps`` in the loop under way). Raises :class:`Cancelled` when cancelled, and
        ValueError (the command's messages, or a limit's) for a request that cannot be served."""
        if limits is not None:
            limits.check(request)
        return self.watch(lambda: generate(models, request, out, progress=False, device=device, dtype=dtype), on_step)

    def watch(self, work, on_step=None):
        """``work()`` (any job made of :func:`sample` loops: a rollout too), counting its steps, reporting them to
        ``on_step(step, steps)`` and stopping it with :class:`Cancelled` at the first step after :meth:`cancel`."""
        def watch(step: int, steps: int, latents) -> None:
            self.steps += 1
            if on_step is not None:
                on_step(step, steps)
            if self._cancel.is_set():
                raise Cancelled(f"cancelled after {self.steps} sampling step{'s' if self.steps != 1 else ''}")

        if self._cancel.is_set():
            raise Cancelled("cancelled before it started")
        with watching_steps(watch):
            return work()


class Runner:
    """The jobs of a server: numbered as they arrive, run one at a time (a CPU's cores serve one generation;
    the front end's queue keeps them in order), each cancellable by the visitor (``owner``) who asked for
    it. ``log`` holds ``(number, started, finished, outcome)`` of every job, in the order they ran."""

    def __init__(self, models: str | Path | None, out: str | Path, limits: Limits | None = None,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.models, self.out, self.limits = models, Path(out), limits
        self.device, self.dtype = device, dtype
        self.jobs: dict[int, tuple[str, Job]] = {}  # unfinished jobs: number -> (owner, job)
        self.log: list[tuple[int, float, float, str]] = []
        self._numbers = itertools.count(1)
        self._one_at_a_time = threading.Lock()

    def add(self, owner: str) -> int:
        """A new job of ``owner``, numbered in arrival order; run it with :meth:`run`."""
        number = next(self._numbers)
        self.jobs[number] = (owner, Job())
        return number

    def job(self, number: int) -> Job | None:
        return self.jobs.get(number, (None, None))[1]

    def cancel(self, owner: str) -> int:
        """Cancels every unfinished job of ``owner`` (the one running stops at its next sampling step, a
        waiting one as it starts); returns how many."""
        mine = [job for who, job in list(self.jobs.values()) if who == owner]
        for job in mine:
            job.cancel()
        return len(mine)

    def run(self, number: int, make_request, on_step=None) -> list[Path]:
        """Runs job ``number`` as :meth:`Job.run` does, into ``out``/``number``, once the job before it has
        finished. ``make_request()`` builds its :class:`Request` (whose checks raise the command's messages)."""
        def work(job: Job, out: Path) -> list[Path]:
            return job.run(self.models, make_request(), out, self.limits, on_step=on_step, device=self.device,
                           dtype=self.dtype)
        return self.run_work(number, work)

    def run_work(self, number: int, work) -> list[Path]:
        """Runs ``work(job, out)`` (which returns the files it wrote in ``out``) as job ``number``, in its turn,
        with ``out`` = this runner's ``out``/``number``."""
        job = self.jobs[number][1]
        with self._one_at_a_time:
            started, outcome = time.perf_counter(), "error"
            try:
                written = work(job, self.out / str(number))
                outcome = "done"
                return written
            except Cancelled:
                outcome = "cancelled"
                raise
            finally:
                self.log.append((number, started, time.perf_counter(), outcome))
                del self.jobs[number]


def model_notes(models: str | Path | None) -> dict:
    """What the shipped models take, to show beside the prompt: ``text``, ``driving`` and ``film`` (markdown:
    vocabulary, frame size, frame rates, clip length), ``daytimes``, ``crowdedness`` and ``driving_fps`` (the
    choices)."""
    models = Path(models) if models is not None else SHIPPED
    notes = {"daytimes": ["day", "night"], "crowdedness": ["low", "medium", "high"], "driving_fps": [8.0]}
    text = models / "shapes" / "temporal"
    if is_export(text):
        pipe = VideoLDMPipeline.from_pretrained(text)
        h, w = (side * pipe.vae_scale_factor for side in pipe.latent_size or (pipe.image_unet.config.sample_size,) * 2)
        fps, frames = pipe.fps or 8.0, pipe.info.get("num_frames") or 16
        words = vocabulary(pipe)
        known = ", ".join(words) if words else "any (a subword tokenizer)"
        notes["text"] = (f"**The model knows these words:** {known}"
                         f"\n\n**Size:** {h}x{w} as trained; HxW in multiples of {8 * pipe.vae_scale_factor} up to "
                         f"{4 * h}x{4 * w}. **Frame rate:** {fps:g} fps; up to {4 * frames} frames "
                         f"({4 * frames / fps:g} s).")
    else:
        notes["text"] = f"No text-to-video model in {models} (shapes/temporal)."
    driving = models / "driving" / "prediction"
    if is_export(driving):
        pipe = VideoLDMPipeline.from_pretrained(driving)
        attributes = pipe.conditioner.config.attributes
        notes["daytimes"] = list(attributes["daytime"]["categories"])
        notes["crowdedness"] = list(attributes["crowdedness"]["categories"])
        h, w = (side * pipe.vae_scale_factor for side in pipe.latent_size)
        fps = pipe.fps or 8.0
        k = read_index(models / "driving" / "interpolation").get("keyframe_every", 4) \
            if is_export(models / "driving" / "interpolation") else None
        notes["driving_fps"] = [fps * k ** n for n in range(3)] if k else [fps]
        notes["driving"] = (f"**Size:** {h}x{w} ({4 * h}x{4 * w} with the upsampler). **Frame rate:** "
                            f"{', '.join(f'{r:g}' for r in notes['driving_fps'])} fps; clips of "
                            f"{pipe.info.get('num_frames') or 16} frames continue each other for longer videos.")
    else:
        notes["driving"] = f"No driving model in {models} (driving/prediction)."
    film = models / "bunny" / "prediction"
    if is_export(film):
        pipe = VideoLDMPipeline.from_pretrained(film)
        h, w = (side * pipe.vae_scale_factor for side in pipe.latent_size)
        notes["film"] = (f"Trained on the film *Big Buck Bunny* ((c) 2008 Blender Foundation, CC-BY 3.0), one "
                         f"caption. **Size:** {h}x{w}. **Frame rate:** {pipe.fps or 8.0:g} fps; clips of "
                         f"{pipe.info.get('num_frames') or 16} frames continue each other for longer videos, "
                         "decoded by its temporal decoder.")
    else:
        notes["film"] = f"No real-footage model in {models} (bunny/prediction)."
    # what `videoldm rollout` can render with these models: prompt travel needs a text prediction model
    notes["long_kinds"] = [kind for kind, folder in (("driving", driving), ("text", models / "shapes" / "prediction"))
                           if is_export(folder)]
    return notes


__all__ = ["Cancelled", "Job", "Limits", "Runner", "model_notes"]
