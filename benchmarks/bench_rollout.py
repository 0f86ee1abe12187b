"""Long rollouts in constant memory: peak memory and time of a short and a long render, and their joins.

Each length renders in its own child process (`videoldm.inference.rollout`: prediction model, optional interpolation
model, decoded clip by clip and appended to the mp4). Memory is the process's peak resident set, in total,
and the render's own peak: the peak counter is restarted once the models are loaded (Linux), since loading's
transients otherwise set the peak and vary between processes. The parent then reads both videos back and reports
the frame change at clip boundaries against inside clips, and the acceleration of tracked objects at
boundaries against elsewhere: cars (driving), or the shapes the caption names (shapes, with --prompt).

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=536870912 \\
        python benchmarks/bench_rollout.py runs/driving/prediction/final \\
            --interpolator runs/driving/interpolation/final --seconds 30 120 --out /tmp/rollouts
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def rss_mib(field: str, default: float | None = None) -> float | None:
    """A field of /proc/self/status (VmRSS: resident now; VmHWM: the peak since the last reset), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return default


def reset_peak_rss() -> bool:
    """Linux: restart the peak-RSS counter (VmHWM) from the current RSS; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(args) -> dict:
    import torch

    from videoldm.inference.pipeline import VideoLDMPipeline
    from videoldm.inference.rollout import rollout

    torch.set_num_threads(args.threads)
    pipe = VideoLDMPipeline.from_pretrained(args.model, temporal_decoder=args.decoder)
    interpolator = VideoLDMPipeline.from_pretrained(args.interpolator) if args.interpolator else None
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gc.collect()
    render_peak = reset_peak_rss()  # so the render's own peak is read, not loading's transients
    before_render = rss_mib("VmRSS", loaded / 1024)
    fps = pipe.fps or 8.0  # keyframe rate; interpolation keeps the duration
    clips = max(1, 1 + math.ceil((args.seconds[0] * fps - args.frames) / (args.frames - args.context)))
    prompt = {"daytime": args.daytime, "crowdedness": args.crowdedness} if pipe.conditioning == "attributes" else args.prompt
    trace = []  # the render's peak RSS so far, after each clip: a longer render's first clips are a shorter one
    start = time.perf_counter()
    result = rollout(pipe, prompt, clips, args.video, num_frames=args.frames, context_frames=args.context,
                     guidance_scale=args.guidance, num_inference_steps=args.steps, seed=args.seed,
                     interpolator=interpolator, interpolation_steps=args.interpolation_steps, progress=False,
                     on_clip_end=lambda k, frames: trace.append(rss_mib("VmHWM") if render_peak else None))
    result["wall_s"] = time.perf_counter() - start
    result["render_peak_after_clip_mib"] = trace
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result.update(peak_mib=peak / 1024, growth_mib=(peak - loaded) / 1024, prompt=prompt,
                  before_render_mib=before_render, render_peak_mib=rss_mib("VmHWM") if render_peak else None)
    if result["render_peak_mib"] is not None:
        result["render_growth_mib"] = result["render_peak_mib"] - before_render
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an exported prediction-stage folder")
    p.add_argument("--interpolator", help="an exported interpolation-stage folder")
    p.add_argument("--decoder", help="an exported decoder-stage folder (default: the image decoder)")
    p.add_argument("--seconds", type=float, nargs="+", default=[30, 120])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--context", type=int, default=2)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--interpolation-steps", type=int, default=10)
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--daytime", default="day")
    p.add_argument("--crowdedness", default="medium")
    p.add_argument("--prompt", default=None, help="text models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--out", default="/tmp/rollouts", help="folder for the videos and results.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--video", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    from videoldm.data.io import read_video
    from videoldm.evaluation.long_videos import rollout_joins

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seconds in args.seconds:
        video = out / f"rollout-{seconds:g}s.mp4"
        cmd = [sys.executable, __file__, args.model, "--child", "--video", str(video), "--seconds", str(seconds)]
        for name in ("interpolator", "decoder", "prompt"):
            if getattr(args, name):
                cmd += [f"--{name}", getattr(args, name)]
        for name in ("frames", "context", "steps", "interpolation_steps", "guidance", "daytime", "crowdedness",
                     "seed", "threads"):
            cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"rollout of {seconds:g} s failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["joins"] = rollout_joins(read_video(video), result["clip_starts"], result["prompt"])
        rows.append(result)
        print(f"{seconds:g} s: {result['frames']} frames at {result['fps']:g} fps, {result['clips']} clips, "
              f"{result['wall_s']:.0f} s, peak {result['peak_mib']:.0f} MiB", flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"\n{'video s':>8}{'frames':>8}{'fps':>6}{'clips':>7}{'wall s':>8}{'peak MiB':>10}{'at start':>10}"
          f"{'render peak':>13}{'growth':>8}{'change joins/inside':>21}{'track accel joins/inside':>26}")
    for r in rows:
        j, render = r["joins"], r.get("render_peak_mib")
        print(f"{r['seconds']:>8.1f}{r['frames']:>8}{r['fps']:>6g}{r['clips']:>7}{r['wall_s']:>8.0f}{r['peak_mib']:>10.0f}"
              f"{r['before_render_mib']:>10.0f}{render if render is not None else float('nan'):>13.0f}"
              f"{r.get('render_growth_mib', float('nan')):>8.0f}"
              f"{j['change_ratio']:>21.2f}{j['track_acceleration_ratio']:>26.2f}")
    if len(rows) > 1:
        print(f"peak memory (whole process), longest / shortest: {rows[-1]['peak_mib'] / rows[0]['peak_mib']:.3f}")
        if rows[0].get("render_peak_mib") and rows[-1].get("render_peak_mib"):
            print(f"peak memory of the render (after loading), longest / shortest: "
                  f"{rows[-1]['render_peak_mib'] / rows[0]['render_peak_mib']:.3f}")
    # within one process: the longest render's peak once it had rendered as many clips as each shorter one
    trace = rows[-1].get("render_peak_after_clip_mib") or []
    if trace and trace[-1] is not None:
        for r in rows[:-1]:
            at = trace[r["clips"] - 1]
            print(f"longest render's peak after {r['clips']} clips ({r['seconds']:.0f} s) / at its end "
                  f"({rows[-1]['seconds']:.0f} s): {at:.0f} / {trace[-1]:.0f} MiB = {trace[-1] / at:.3f}")


if __name__ == "__main__":
    main()
