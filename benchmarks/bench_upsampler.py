"""Tiled 4x video upsampling: memory set by the tile size, not the output size, and no visible seams.

For each output size, in its own child process: a procedural driving clip rendered at that size (the truth)
is downsampled 4x (block averages) and upsampled back by the video upsampler in overlapping tiles. Reported:
time; peak memory (the largest total of live tensors, counted by a dispatch mode, and the process's peak
resident set), both in total and beyond the output itself (the result, which grows with the size by
definition); and the error against the truth in the pixels where tiles overlap (the blend zones, where a
seam would be) against all other pixels.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=536870912 \\
        python benchmarks/bench_upsampler.py runs/driving/upsampler-video/final --sizes 512x1024 1024x2048 \\
            --frames 8 --tile 256 --overlap 32 --steps 10
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def child(args) -> dict:
    import numpy as np
    import torch

    from bench_unet import PeakTensorMemory
    from videoldm.data.synthetic import make_generator
    from videoldm.inference.upsampling import downsample
    from videoldm.inference.upsampling import Upsampler
    from videoldm.models.frames import window_starts

    torch.set_num_threads(args.threads)
    H, W = args.size
    upsampler = Upsampler.from_pretrained(args.model)
    clip = make_generator("driving", frames=args.frames, size=(H, W), fps=8, seed=args.seed).sample(0).frames
    truth = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # (1, 3, T, H, W)
    low = downsample(truth, upsampler.scale).transpose(1, 2).contiguous()
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with PeakTensorMemory() as memory:
        out = upsampler(low, num_inference_steps=args.steps, tile_size=args.tile, tile_overlap=args.overlap,
                        frames_per_chunk=args.frames, sampler=args.sampler, progress=False).frames
    wall = time.perf_counter() - start
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - loaded) / 1024
    error = (out.transpose(1, 2) - truth).abs().mean(dim=(0, 1, 2)).numpy()  # (H, W)
    cover = np.zeros((H, W), int)
    for y in window_starts(H, min(args.tile, H), args.overlap):
        for x in window_starts(W, min(args.tile, W), args.overlap):
            cover[y:y + args.tile, x:x + args.tile] += 1
    seams = cover > 1
    output_mib = out.numel() * 4 / 2**20
    whole = {}
    if H * W <= args.whole_max:  # the same clip without tiles: is a seam band harder for tiles, or for anyone?
        ref = upsampler(low, num_inference_steps=args.steps, frames_per_chunk=args.frames, sampler=args.sampler,
                        progress=False).frames
        ref_error = (ref.transpose(1, 2) - truth).abs().mean(dim=(0, 1, 2)).numpy()
        whole = {"whole_seam_error": float(ref_error[seams].mean()), "whole_other_error": float(ref_error[~seams].mean()),
                 "seam_vs_whole": float(error[seams].mean() / ref_error[seams].mean()),
                 "tiled_minus_whole_at_seams": float((out - ref).abs().mean(dim=(0, 1, 2)).numpy()[seams].mean())}
    return {"size": [H, W], "frames": args.frames, "tiles": int(len(window_starts(H, min(args.tile, H), args.overlap))
                                                                * len(window_starts(W, min(args.tile, W), args.overlap))),
            "wall_s": wall, "peak_tensor_mib": memory.peak / 2**20, "output_mib": output_mib,
            "working_mib": memory.peak / 2**20 - output_mib, "rss_growth_mib": rss,
            "seam_error": float(error[seams].mean()), "other_error": float(error[~seams].mean()),
            "seam_ratio": float(error[seams].mean() / error[~seams].mean()),
            "psnr": float(10 * np.log10(4.0 / ((out.transpose(1, 2) - truth) ** 2).mean().item())), **whole}


def main() -> None:
    from videoldm.commands.options import size_arg as parse_size

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an upsampler export (upsampler-video, or upsampler-image)")
    p.add_argument("--sizes", type=parse_size, nargs="+", default=[(512, 1024), (1024, 2048)],
                   help="output sizes HxW (the inputs are 4x smaller)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--whole-max", type=int, default=512 * 1024,
                   help="also upsample outputs of at most this many pixels without tiles, for reference")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--size", type=parse_size, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    rows = []
    for H, W in args.sizes:
        cmd = [sys.executable, __file__, args.model, "--child", "--size", f"{H}x{W}"]
        for name in ("frames", "tile", "overlap", "steps", "sampler", "seed", "threads", "whole_max"):
            cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{H}x{W} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.frames} frames, tile {args.tile}, overlap {args.overlap}, {args.steps} {args.sampler} steps, "
          f"{args.threads} threads")
    print(f"{'output':>11}{'tiles':>7}{'time s':>8}{'peak MiB':>10}{'output MiB':>12}{'working MiB':>13}"
          f"{'RSS growth':>12}{'PSNR':>7}{'seam err':>10}{'elsewhere':>11}{'ratio':>7}")
    for r in rows:
        print(f"{r['size'][0]:>5}x{r['size'][1]:<5}{r['tiles']:>7}{r['wall_s']:>8.0f}{r['peak_tensor_mib']:>10.0f}"
              f"{r['output_mib']:>12.0f}{r['working_mib']:>13.0f}{r['rss_growth_mib']:>12.0f}{r['psnr']:>7.2f}"
              f"{r['seam_error']:>10.4f}{r['other_error']:>11.4f}{r['seam_ratio']:>7.2f}")
    for r in rows:
        if "seam_vs_whole" in r:
            print(f"{r['size'][0]}x{r['size'][1]} without tiles: error {r['whole_seam_error']:.4f} in the seam bands, "
                  f"{r['whole_other_error']:.4f} elsewhere; tiled / untiled in the seam bands {r['seam_vs_whole']:.2f}, "
                  f"mean |tiled - untiled| there {r['tiled_minus_whole_at_seams']:.4f}")


if __name__ == "__main__":
    main()
