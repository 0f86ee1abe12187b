"""Training-step time and memory of the temporal stage: temporal layers only vs the whole UNet,
with and without gradient checkpointing.

Each configuration runs in its own child process (so one's memory does not hide another's); memory is
the growth of the process's peak resident set over the steps, beyond the model and optimizer built
before them. Times are medians over steps after warm-up.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=536870912 \\
        python benchmarks/bench_training.py --base tiny --latent 16x16 --frames 16 --batch 2
    # the full SD 1.5 architecture (random weights), temporal layers only, a small latent:
    ... python benchmarks/bench_training.py --base sd15 --latent 8x8 --frames 8 --batch 1 --steps 2 --warmup 1 --temporal-only

A temporal-only row also checks that the spatial weights are bit-identical after the steps.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def child(args) -> dict:
    import torch
    from diffusers import UNet2DConditionModel

    from videoldm import VideoUNet
    from videoldm.models.loading import resolve_unet_config

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = resolve_unet_config(args.base)
    video = VideoUNet.from_unet2d(UNet2DConditionModel.from_config(cfg))
    if args.whole:
        video.unet.requires_grad_(True)
    if args.checkpointing:
        video.enable_gradient_checkpointing()
    params = [p for p in video.parameters() if p.requires_grad]
    spatial_before = {k: v.clone() for k, v in video.unet.state_dict().items()} if not args.whole else None
    opt = torch.optim.AdamW(params, lr=1e-4)
    (h, w), B, T = args.latent, args.batch, args.frames
    x = torch.randn(B, cfg["in_channels"], T, h, w)
    ehs = torch.randn(B, 77, cfg["cross_attention_dim"])
    t = torch.randint(0, 1000, (B,))
    times = []
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = (video(x, t, ehs).sample.float() - x).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    unchanged = None if spatial_before is None else \
        all(torch.equal(v, spatial_before[k]) for k, v in video.unet.state_dict().items())
    return {"time": statistics.median(times), "trained": sum(p.numel() for p in params),
            "memory_mib": (peak - before) / 1024, "peak_mib": peak / 1024, "spatial_unchanged": unchanged}


def main() -> None:
    from videoldm.commands.options import size_arg as parse_size

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="tiny")
    p.add_argument("--latent", type=parse_size, default=(16, 16))
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                   help="bf16: autocast, as mixed_precision bf16 trains (fast only where the CPU computes bf16)")
    p.add_argument("--temporal-only", action="store_true",
                   help="skip the whole-UNet rows (at SD size its AdamW state alone is ~14 GB)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    rows = []
    for whole in (False,) if args.temporal_only else (False, True):
        for checkpointing in (False, True):
            cmd = [sys.executable, __file__, "--child", "--base", args.base, "--latent", f"{args.latent[0]}x{args.latent[1]}",
                   "--frames", str(args.frames), "--batch", str(args.batch), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--threads", str(args.threads), "--precision", args.precision]
            cmd += ["--whole"] * whole + ["--checkpointing"] * checkpointing
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            rows.append(({"trained": "whole UNet" if whole else "temporal only", "checkpointing": checkpointing},
                         json.loads(out)))
    base_time, base_mem = rows[0][1]["time"], rows[0][1]["memory_mib"]
    print(f"\nbase {args.base}, batch {args.batch} x {args.frames} frames, latent {args.latent[0]}x{args.latent[1]}, "
          f"{args.precision}, {args.threads} threads; median of {args.steps} steps after {args.warmup} warm-up")
    print(f"{'trained':<15}{'checkpointing':>14}{'trained params':>16}{'step s':>9}{'x':>7}{'peak growth MiB':>17}{'x':>7}"
          f"{'peak MiB':>10}{'spatial unchanged':>19}")
    for meta, r in rows:
        print(f"{meta['trained']:<15}{str(meta['checkpointing']):>14}{r['trained'] / 1e6:>15.2f}M{r['time']:>9.3f}"
              f"{r['time'] / base_time:>7.2f}{r['memory_mib']:>17.0f}{r['memory_mib'] / base_mem:>7.2f}"
              f"{r['peak_mib']:>10.0f}{str(r['spatial_unchanged']):>19}")


if __name__ == "__main__":
    main()
