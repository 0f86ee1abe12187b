"""Does a text-to-video model do what the prompt says? Issue 29's acceptance measurement, and the defaults table.

For each held-out caption combination of `shapes` (colour, form, direction never seen together in training),
samples `--seeds` videos of "a COLOUR SHAPE moving DIRECTION on a BACKGROUND background" (backgrounds
alternate dark and light) and tracks them with the ground-truth-calibrated tracker: per video, does the shape
move the named way (`direction_match`), show the colour and form asked for (`caption_match`), jump
(`jumps`; see `videoldm.evaluation.metrics.motion`). Each sampling setting (`--steps`, `--guidance`,
`--sampler`, every combination) is one row, with its seconds per video on this machine.

    python benchmarks/prompt_obedience.py runs/shapes/temporal/final --seeds 16
    python benchmarks/prompt_obedience.py runs/shapes/temporal/final --seeds 4 --steps 10 25 --guidance 1.5 3 5 --sampler ddim dpm++

Set the glibc allocator variables of the Makefile for stable timings.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch


def prompts_for(seeds: int) -> list[tuple[tuple[str, str, str], list[str]]]:
    """Per held-out combination, `seeds` prompts, backgrounds alternating dark and light."""
    from videoldm.data.synthetic.shapes import HELD_OUT

    out = []
    for colour, form, way in sorted(HELD_OUT):
        article = "an" if colour[0] in "aeiou" else "a"
        out.append(((colour, form, way), [f"{article} {colour} {form} moving {way} on a {('dark', 'light')[i % 2]} background"
                                          for i in range(seeds)]))
    return out


def measure(pipe, seeds: int, steps: int, guidance: float, sampler: str, frames: int, seed: int, batch: int) -> dict:
    from videoldm.evaluation.metrics.coherence_report import coherence_report

    rows, seconds, videos = [], 0.0, 0
    for combo, prompts in prompts_for(seeds):
        for start in range(0, len(prompts), batch):
            chunk = prompts[start:start + batch]
            tic = time.perf_counter()
            video = pipe(chunk, num_frames=frames, num_inference_steps=steps, guidance_scale=guidance,
                         sampler=sampler, seed=seed + start, progress=False, output_type="np").frames
            seconds += time.perf_counter() - tic
            videos += len(chunk)
            report = coherence_report(video, "shapes", chunk)
            for prompt, row in zip(chunk, report["per_video"]):
                rows.append({"combo": list(combo), "prompt": prompt, "direction_match": row["direction_match"],
                             "caption_match": row["caption_match"], "jumps": row["jumps"],
                             "found_fraction": row["found_fraction"]})
    mean = lambda key, sel=rows: float(np.mean([r[key] for r in sel]))  # noqa: E731
    per_combo = {" ".join(c): {k: mean(k, [r for r in rows if r["combo"] == list(c)])
                              for k in ("direction_match", "caption_match", "jumps")}
                 for c, _ in prompts_for(1)}
    return {"steps": steps, "guidance": guidance, "sampler": sampler, "videos": videos,
            "seconds_per_video": seconds / videos, "direction_match": mean("direction_match"),
            "caption_match": mean("caption_match"), "jump_fraction": mean("jumps"),
            "found_fraction": mean("found_fraction"), "per_combo": per_combo, "per_video": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a text-to-video export (temporal or prediction stage, …/final)")
    p.add_argument("--seeds", type=int, default=16, help="videos per held-out combination (default 16)")
    p.add_argument("--steps", type=int, nargs="+", default=[25])
    p.add_argument("--guidance", type=float, nargs="+", default=[3.0])
    p.add_argument("--sampler", nargs="+", default=["ddim"])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=8, help="videos sampled at once")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", help="JSON file for every row and video")
    args = p.parse_args()

    from videoldm.inference.pipeline import VideoLDMPipeline

    torch.set_num_threads(args.threads)
    pipe = VideoLDMPipeline.from_pretrained(args.model)
    print(f"{args.model}: 6 held-out combinations x {args.seeds} videos, {args.frames} frames, {args.threads} threads")
    print("| sampler | steps | guidance | direction followed | colour and form | jumps | s / video |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for sampler, steps, guidance in itertools.product(args.sampler, args.steps, args.guidance):
        r = measure(pipe, args.seeds, steps, guidance, sampler, args.frames, args.seed, args.batch)
        results.append(r)
        print(f"| {sampler} | {steps} | {guidance:g} | {r['direction_match']:.2f} | {r['caption_match']:.2f} | "
              f"{r['jump_fraction']:.2f} | {r['seconds_per_video']:.1f} |", flush=True)
    for r in results:
        print(f"\n{r['sampler']} {r['steps']} steps, guidance {r['guidance']:g}, per combination "
              "(direction / colour and form / jumps):")
        for combo, v in r["per_combo"].items():
            print(f"  {combo:24s} {v['direction_match']:.2f} / {v['caption_match']:.2f} / {v['jumps']:.2f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"model": args.model, "rows": results}, indent=1))


if __name__ == "__main__":
    main()
