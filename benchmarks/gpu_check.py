"""The GPU check: what only a GPU can show, in one command that finishes within 8 minutes on one H100.

1. A training step (forward and backward) of the SD 1.5-architecture VideoUNet at 16x40x64 latents (320x512
   frames) in bf16, beside the image UNet on the same 16 frames, diffusers' AnimateDiff (UNetMotionModel) and
   SVD (UNetSpatioTemporalConditionModel) UNets at the same widths: median time, multiply-adds counted by torch
   (forward and backward), the TFLOP/s achieved against the card's dense bf16 peak, and peak memory. Random
   weights; the temporal layers (and the other models' temporal parts) trained, the spatial layers frozen.
2. The pipeline end to end on the GPU: the shipped text-to-video model and driving stack, a few steps, in bf16.

    python benchmarks/gpu_check.py                # on the GPU machine: prints a Markdown table, --json for more
    python benchmarks/gpu_check.py --dry-run      # anywhere: the same code on the tiny architecture, on the CPU
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("bench_unet", HERE / "bench_unet.py")
bench_unet = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_unet)

# dense bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s
BF16_PEAK = {"H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0,
             "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def card_peak(name: str) -> float | None:
    for key in sorted(BF16_PEAK, key=len, reverse=True):  # the longest name that matches: "H100 PCIe" before "H100"
        if key.lower() in name.lower():
            return BF16_PEAK[key]
    return None


def build(name: str, cfg: dict, frames: int):
    from diffusers import UNet2DConditionModel

    from videoldm import VideoUNet

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(cfg)
    if name == "image":
        return unet
    if name == "videoldm":
        return VideoUNet.from_unet2d(unet)
    if name == "animatediff":
        return bench_unet.animatediff(unet)
    return bench_unet.svd_like(cfg, frames)


def train_step_figures(name: str, cfg: dict, args, device, dtype) -> dict:
    """Median time of forward + backward (+ the optimizer's update of what is trained), its multiply-adds, memory."""
    model = build(name, cfg, args.frames).to(device, dtype)
    trained = [p for n, p in model.named_parameters() if name == "image" or bench_unet.is_temporal(name, n)]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trained:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(trained, lr=1e-5)
    h, w = args.latent
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, cfg["in_channels"], args.frames, h, w, generator=g).to(device, dtype)
    t = torch.randint(0, 1000, (args.batch,), generator=g).to(device)
    ehs = torch.randn(args.batch, 77, cfg["cross_attention_dim"], generator=g).to(device, dtype)
    call = bench_unet.forward_calls(x, t, ehs)[name]

    def step():
        out = call(model)
        out = out.sample if hasattr(out, "sample") else out[0]
        out.float().square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (and the optimizer's state)
    with bench_unet.count_macs() as counter:
        step()
    macs = counter.get_total_flops() / 2
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    figures = {"model": name, "trained_params": sum(p.numel() for p in trained),
               "params": sum(p.numel() for p in model.parameters()), "step_s": seconds, "gmacs": macs / 1e9,
               "tflops": 2 * macs / seconds / 1e12,
               "peak_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else None}
    return figures  # the model and its optimizer state go with this frame


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def pipeline_figures(device, dtype, steps: int, seconds: float, warmup: bool = True) -> list[dict]:
    """The shipped models end to end on ``device`` (load, sample, decode), as `videoldm generate` runs them."""
    from videoldm.inference.shipped import SHIPPED, Request, _driving_video, _text_video

    rows = []
    for name, make, request in (
            ("text-to-video (shapes)", _text_video, Request(prompt="a red circle moving left on a dark background",
                                                             steps=steps, seconds=seconds)),
            ("driving stack + x4 interpolation", _driving_video, Request(daytime="night", steps=steps,
                                                                        seconds=seconds, fps=32.0))):
        if warmup:  # kernels, caches
            make(SHIPPED, request, False, device, dtype)
        synchronize(device)
        start = time.perf_counter()
        video = make(SHIPPED, request, False, device, dtype)
        synchronize(device)
        frames = video.frames
        rows.append({"pipeline": name, "steps": steps, "frames": int(frames.shape[1]),
                     "size": list(frames.shape[-2:]), "seconds": time.perf_counter() - start,
                     "finite": bool(torch.isfinite(frames).all())})
    return rows


def main() -> None:
    from videoldm.commands.options import size_arg
    from videoldm.models.loading import resolve_unet_config

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="tiny architecture, small latent, CPU, float32")
    p.add_argument("--base", default="sd15")
    p.add_argument("--latent", type=size_arg, default=(40, 64))
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--pipeline-steps", type=int, default=10)
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    if args.dry_run:
        args.base, args.latent, args.frames, args.repeats, args.pipeline_steps = "tiny", (8, 8), 4, 1, 1
        device, dtype = torch.device("cpu"), torch.float32
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA GPU here: run on the GPU machine, or --dry-run to check the script on the CPU")
        device, dtype = torch.device("cuda"), torch.bfloat16
        torch.backends.cuda.matmul.allow_tf32 = True
    card = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU (dry run)"
    peak = card_peak(card) if device.type == "cuda" else None
    cfg = resolve_unet_config(args.base)
    rows = []
    for name in ("image", "videoldm", "animatediff", "svd"):
        rows.append(train_step_figures(name, cfg, args, device, dtype))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    pipelines = pipeline_figures(device, dtype, args.pipeline_steps, 0.5 if args.dry_run else 2.0, not args.dry_run)

    image = rows[0]
    print(f"\n{card}; torch {torch.__version__}; {args.base} at {args.frames}x{args.latent[0]}x{args.latent[1]} latents, "
          f"batch {args.batch}, {str(dtype).replace('torch.', '')}; median of {args.repeats} steps after warm-up\n")
    print("| model | trained params | step s | x image | GMAC (fwd+bwd) | TFLOP/s | % of bf16 peak | peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        share = f"{100 * r['tflops'] / peak:.1f}" if peak else "-"
        memory = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-"
        print(f"| {r['model']} | {r['trained_params'] / 1e6:.1f}M | {r['step_s']:.3f} | {r['step_s'] / image['step_s']:.2f} "
              f"| {r['gmacs']:.3g} | {r['tflops']:.3g} | {share} | {memory} |")
    print("\n| pipeline | steps | frames | size | seconds | finite |")
    print("|---|---|---|---|---|---|")
    for r in pipelines:
        print(f"| {r['pipeline']} | {r['steps']} | {r['frames']} | {r['size'][0]}x{r['size'][1]} | {r['seconds']:.2f} "
              f"| {r['finite']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"card": card, "peak_tflops": peak, "train_steps": rows,
                                               "pipelines": pipelines, "args": vars(args)}, indent=2, default=str))


if __name__ == "__main__":
    main()
