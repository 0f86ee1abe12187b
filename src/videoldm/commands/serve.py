"""`videoldm serve`: the main job as a web page (Gradio): type a prompt, pick options, watch the video.

The page runs the functions `videoldm generate` runs (through ``videoldm.inference.jobs``) and, for long
videos, `videoldm rollout`'s own parser and `run`: the same videos, the same messages for bad input.
Requests wait in one queue and run one at a time; a visitor may ask for up to --max-seconds and
--max-steps; cancel stops the sampling at the next step.
"""
import argparse
import json
import os  # (no `from __future__ import annotations`: Gradio reads the handlers' gr.Request annotations as classes)
import time
from pathlib import Path

from .options import add_device_options, device_and_dtype, positive

TABS = ("text", "driving", "image", "film")  # the tabs' names in element ids (text-prompt, driving-video, ...)


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="a web page for the main job (text-to-video, driving, real footage, image-to-video, continue, "
                      "long video)",
        description="A web page (Gradio) over `videoldm generate` and `videoldm rollout`: tabs for "
                    "text-to-video, driving, real footage (the Big Buck Bunny model), image-to-video / continue "
                    "and long video, with a progress bar, a "
                    "cancel button, and the video shown and downloadable as mp4 and GIF. Requests queue and run "
                    "one at a time. Listens on localhost unless --host says otherwise. Needs the serve extra: "
                    "pip install 'videoldm[serve]'.",
        epilog="examples:\n"
               "  videoldm serve                      # then open http://127.0.0.1:7860\n"
               "  videoldm serve --port 8000 --max-seconds 4 --max-steps 25\n"
               "  videoldm serve --host 0.0.0.0       # reachable from other machines: mind who can reach it")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--models", help="folder of the shipped models (default: the ones installed with videoldm)")
    p.add_argument("--max-seconds", type=positive(float), default=8.0,
                   help="longest video a visitor may ask for (default 8)")
    p.add_argument("--max-steps", type=positive(int), default=50,
                   help="most sampling steps a visitor may ask for (default 50)")
    p.add_argument("--out", help="folder for the videos made (default: a temporary folder)")
    add_device_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import importlib.util
    import tempfile

    from videoldm.inference.jobs import Limits, Runner

    if importlib.util.find_spec("gradio") is None:
        raise ValueError("the page needs gradio: pip install 'videoldm[serve]'")
    device, dtype = device_and_dtype(args)
    out = Path(args.out or tempfile.mkdtemp(prefix="videoldm-serve-"))
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(args.models, out, Limits(args.max_seconds, args.max_steps), device=device, dtype=dtype)
    app = build_app(runner)
    print(f"videoldm serve: http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    app.launch(server_name=args.host, server_port=args.port, allowed_paths=[str(out)], show_error=True, quiet=True)
    return 0


def progress_of(progress):
    """An ``on_step(step, steps)`` that moves the page's progress bar (a ``gradio.Progress``)."""
    loops = [0]  # sampling loops begun: keyframe clips, interpolation windows, upsampler tiles

    def on_step(step: int, steps: int) -> None:
        loops[0] += step == 0
        progress((step + 1, steps), desc=f"sampling loop {loops[0]}", unit="steps")
    return on_step


class RefusingParser(argparse.ArgumentParser):
    """A command's own parser whose usage errors are raised (ValueError, the message the command prints), not
    printed with an exit: the page shows them."""

    def error(self, message):
        raise ValueError(message)


def rollout_argv(runner, kind: str, prompts: str, daytime: str, crowdedness: str, interpolate: bool,
                 seconds: float, steps: int, guidance: float, seed: int, out: Path) -> list[str]:
    """The `videoldm rollout` command line of a long-video request, on the models of ``runner``."""
    from videoldm.inference.shipped import SHIPPED

    models = Path(runner.models) if runner.models is not None else SHIPPED
    root = models / ("shapes" if kind == "text" else "driving")
    argv = [str(root / "prediction")]
    if kind == "text":
        for prompt in (line.strip() for line in prompts.splitlines()):
            argv += ["--prompt", prompt] if prompt else []
    else:
        argv += ["--daytime", daytime, "--crowdedness", crowdedness, "--decoder", str(root / "decoder")]
    if interpolate:
        argv += ["--interpolator", str(root / "interpolation")]
    return argv + ["--seconds", f"{seconds:g}", "--steps", str(steps), "--guidance", f"{guidance:g}",
                   "--seed", str(seed), "--out", str(out), "--device", str(runner.device),
                   "--dtype", str(runner.dtype).removeprefix("torch.")]


def rollout_files(argv: list[str]) -> list[Path]:
    """Runs `videoldm rollout` (its parser and its `run`) with ``argv``; returns its mp4 and a GIF of it."""
    from videoldm.data.io import read_video
    from videoldm.inference.outputs import write_video

    from . import rollout

    parser = RefusingParser(prog="videoldm")
    rollout.add_command(parser.add_subparsers())
    args = parser.parse_args(["rollout", *argv])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    rollout.run(args)
    mp4 = Path(args.out)
    fps = json.loads(mp4.with_suffix(".json").read_text())["fps"]
    return [mp4, write_video(mp4.with_suffix(".gif"), read_video(mp4), fps)]


def build_app(runner):
    """The page (a ``gradio.Blocks``, not launched) over ``runner``: one tab per kind of video, each with its
    options, a generate and a cancel button, a status line, the video and its files."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool
    import gradio as gr

    from videoldm.inference.jobs import Cancelled, model_notes
    from videoldm.inference.shipped import DEFAULT_PROMPT, Request

    notes = model_notes(runner.models)
    limits = runner.limits
    max_seconds = limits.max_seconds if limits else 8.0
    max_steps = limits.max_steps if limits else 50

    def common_options(tab: str, steps: int = 25):
        with gr.Row():
            seconds = gr.Slider(0.25, max_seconds, value=min(2.0, max_seconds), step=0.25, label="seconds",
                                elem_id=f"{tab}-seconds")
            steps = gr.Slider(1, max_steps, value=min(steps, max_steps), step=1, label="steps",
                              elem_id=f"{tab}-steps")
        with gr.Row():
            guidance = gr.Number(3.0, label="guidance", elem_id=f"{tab}-guidance")
            seed = gr.Number(0, precision=0, label="seed", elem_id=f"{tab}-seed")
        return seconds, steps, guidance, seed

    def results(tab: str):
        with gr.Row():
            go = gr.Button("Generate", variant="primary", elem_id=f"{tab}-generate")
            cancel = gr.Button("Cancel", elem_id=f"{tab}-cancel")
        status = gr.Markdown(elem_id=f"{tab}-status")
        video = gr.Video(label="video", interactive=False, elem_id=f"{tab}-video")
        files = gr.File(label="mp4 and GIF", file_count="multiple", interactive=False, elem_id=f"{tab}-files")
        return go, cancel, status, video, files

    def serve(number: int, make_request, progress, work=None):
        """Status, video and files of job ``number`` (``make_request()``: a `generate` request; or ``work``, as
        ``Runner.run_work`` takes it): the files, or the reason there are none."""
        if number is None or runner.job(number) is None:
            return "error: this request is no longer known to the server; generate again", None, None
        start = time.perf_counter()
        try:
            if work is not None:
                written = runner.run_work(number, work)
            else:
                written = runner.run(number, make_request, on_step=progress_of(progress))
        except Cancelled as stop:
            return f"request {number}: {stop}", None, None
        except (ValueError, OSError) as err:  # what `videoldm generate` prints as its one-line error
            return f"request {number}: error: {err}", None, None
        mp4 = next(p for p in written if p.suffix == ".mp4")
        made = " and ".join(p.name for p in written)
        status = f"request {number}: made {made} in {time.perf_counter() - start:.1f} s"
        return status, str(mp4), [str(p) for p in written]

    def add(request: gr.Request):
        number = runner.add(request.session_hash)
        return number, f"request {number}: waiting for its turn"

    def cancel(request: gr.Request):
        count = runner.cancel(request.session_hash)
        return "cancelling: stops at the next sampling step" if count else "nothing to cancel"

    def wire(go, cancel_button, status, video, files, handler, inputs):
        number = gr.State()
        go.click(add, None, [number, status], queue=False).then(
            handler, [number, *inputs], [status, video, files], concurrency_limit=1, concurrency_id="generate")
        cancel_button.click(cancel, None, status, queue=False)

    with gr.Blocks(title="videoldm") as app:
        gr.Markdown("# videoldm\nVideo latent diffusion (Align your Latents) with the models that ship with "
                    f"videoldm. One video at a time; up to {max_seconds:g} s and {max_steps} steps a request.")
        with gr.Tab("Text to video", elem_id="tab-text"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(DEFAULT_PROMPT, label="prompt", elem_id="text-prompt")
                    size = gr.Textbox("", label="size HxW (empty: the trained size)", elem_id="text-size")
                    text_options = common_options("text")
                    gr.Markdown(notes["text"], elem_id="text-notes")
                with gr.Column():
                    text_results = results("text")

            def text(number, prompt, size, seconds, steps, guidance, seed, progress=gr.Progress()):
                def make_request():
                    from videoldm.data.clips import parse_size
                    return Request(prompt=prompt, size=parse_size(size) if size.strip() else None, seconds=seconds,
                                   steps=int(steps), guidance=guidance, seed=int(seed))
                return serve(number, make_request, progress)

            wire(*text_results, text, [prompt, size, *text_options])

        with gr.Tab("Driving", elem_id="tab-driving"):
            with gr.Row():
                with gr.Column():
                    daytime = gr.Radio(notes["daytimes"], value=notes["daytimes"][0], label="daytime",
                                       elem_id="driving-daytime")
                    crowdedness = gr.Radio(notes["crowdedness"], value="medium", label="crowdedness",
                                           elem_id="driving-crowdedness")
                    fps = gr.Dropdown(notes["driving_fps"], value=notes["driving_fps"][0], label="fps",
                                      elem_id="driving-fps")
                    upsample = gr.Checkbox(False, label="4x upsampler", elem_id="driving-upsample")
                    driving_options = common_options("driving")
                    gr.Markdown(notes["driving"], elem_id="driving-notes")
                with gr.Column():
                    driving_results = results("driving")

            def driving(number, daytime, crowdedness, fps, upsample, seconds, steps, guidance, seed,
                        progress=gr.Progress()):
                return serve(number, lambda: Request(
                    daytime=daytime, crowdedness=crowdedness, fps=float(fps), upsample=upsample, seconds=seconds,
                    steps=int(steps), guidance=guidance, seed=int(seed)), progress)

            wire(*driving_results, driving, [daytime, crowdedness, fps, upsample, *driving_options])

        with gr.Tab("Real footage", elem_id="tab-film"):
            with gr.Row():
                with gr.Column():
                    film_options = common_options("film")
                    gr.Markdown(notes["film"], elem_id="film-notes")
                with gr.Column():
                    film_results = results("film")

            def film(number, seconds, steps, guidance, seed, progress=gr.Progress()):
                return serve(number, lambda: Request(model="bunny", seconds=seconds, steps=int(steps),
                                                     guidance=guidance, seed=int(seed)), progress)

            wire(*film_results, film, list(film_options))

        with gr.Tab("Image to video / continue", elem_id="tab-image"):
            with gr.Row():
                with gr.Column():
                    still = gr.Image(type="filepath", label="a still to animate (image-to-video)",
                                     elem_id="image-still")
                    clip = gr.File(label="or a clip to continue (mp4)", file_types=[".mp4"], elem_id="image-clip")
                    join = gr.Checkbox(False, label="continue: the clip and its continuation as one video",
                                       elem_id="image-join")
                    given_daytime = gr.Radio(notes["daytimes"], value=notes["daytimes"][0], label="daytime",
                                             elem_id="image-daytime")
                    given_crowdedness = gr.Radio(notes["crowdedness"], value="medium", label="crowdedness",
                                                 elem_id="image-crowdedness")
                    image_options = common_options("image")
                    gr.Markdown("The driving prediction model continues the still (its first frame) or the clip's "
                                "last two frames; give the daytime and crowdedness they show. " + notes["driving"])
                with gr.Column():
                    image_results = results("image")

            def image(number, still, clip, join, daytime, crowdedness, seconds, steps, guidance, seed,
                      progress=gr.Progress()):
                def make_request():
                    if not still and not clip:
                        raise ValueError("give a still to animate or a clip to continue")
                    return Request(image=still or None, continue_from=clip or None, join=join, daytime=daytime,
                                   crowdedness=crowdedness, seconds=seconds, steps=int(steps), guidance=guidance,
                                   seed=int(seed))
                return serve(number, make_request, progress)

            wire(*image_results, image, [still, clip, join, given_daytime, given_crowdedness, *image_options])

        with gr.Tab("Long video", elem_id="tab-long"):
            with gr.Row():
                with gr.Column():
                    kind = gr.Radio(notes["long_kinds"], value=(notes["long_kinds"] or [None])[0],
                                    label="model (text: prompt travel, with a text prediction model in --models)",
                                    elem_id="long-kind")
                    prompts = gr.Textbox(DEFAULT_PROMPT, lines=3, label="text: prompts, one a line, each for an "
                                         "equal share of the video", elem_id="long-prompts")
                    long_daytime = gr.Radio(notes["daytimes"], value=notes["daytimes"][0], label="driving: daytime",
                                            elem_id="long-daytime")
                    long_crowdedness = gr.Radio(notes["crowdedness"], value="medium", label="driving: crowdedness",
                                                elem_id="long-crowdedness")
                    interpolate = gr.Checkbox(False, label="x4 frame rate (the interpolation model)",
                                              elem_id="long-interpolate")
                    long_options = common_options("long")
                    gr.Markdown("`videoldm rollout`: clips that continue the last two frames of the one before, "
                                "written to the mp4 as they come. " + notes["driving"])
                with gr.Column():
                    long_results = results("long")

            def long_video(number, kind, prompts, daytime, crowdedness, interpolate, seconds, steps, guidance, seed,
                           progress=gr.Progress()):
                def work(job, out):
                    if limits is not None:
                        limits.check_numbers(seconds, int(steps), command="videoldm rollout")
                    argv = rollout_argv(runner, kind, prompts, daytime, crowdedness, interpolate, seconds,
                                        int(steps), guidance, int(seed), out / "long.mp4")
                    return job.watch(lambda: rollout_files(argv), on_step=progress_of(progress))
                return serve(number, None, progress, work)

            wire(*long_results, long_video,
                 [kind, prompts, long_daytime, long_crowdedness, interpolate, *long_options])
    app.queue(default_concurrency_limit=1)
    return app
