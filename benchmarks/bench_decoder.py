"""Peak memory and time of decoding T = 16, 64, 256 latent frames, beside the peers, in one process.

    image        the image AutoencoderKL decoder, all frames in one batch (what a plain pipeline does)
    videoldm     TemporalDecoder, the whole clip at once
    chunked      TemporalDecoder.iter_decode: chunks of --chunk frames overlapping by --overlap, cross-faded
    svd          diffusers' AutoencoderKLTemporalDecoder at the same widths and depth, decoded the way
                 the SVD pipeline does it: independent chunks of decode_chunk_size = --chunk frames

Every decoder's frames are handed on as they come and kept as uint8 (what a video writer does), so the
figure is the decoder's own working memory plus what it must hold at once. Memory is the peak of live
tensor storages during the decode (counted by a dispatch mode, independent of the allocator); times are
medians after a warm-up. Random weights: memory and time do not depend on them.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=536870912 \\
        python benchmarks/bench_decoder.py --size 64x64 --frames 16 64 256
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder

from bench_unet import ALLOCATOR, PeakTensorMemory  # noqa: E402  (run from benchmarks/ or with it on the path)
from videoldm.models.temporal_decoder import TemporalDecoder

WIDTHS = [32, 64, 64]  # the shipped small autoencoder's widths (configs/shapes/autoencoder.yaml)


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()


def decoders(chunk: int, overlap: int):
    torch.manual_seed(0)
    common = dict(block_out_channels=WIDTHS, down_block_types=["DownEncoderBlock2D"] * len(WIDTHS),
                  layers_per_block=1, latent_channels=4)
    vae = AutoencoderKL(**common, up_block_types=["UpDecoderBlock2D"] * len(WIDTHS), norm_num_groups=32).eval()
    temporal = TemporalDecoder.from_autoencoder(vae).eval()
    svd = AutoencoderKLTemporalDecoder(**common).eval()

    def image(z):
        B, C, T, h, w = z.shape
        yield vae.decode(z.transpose(1, 2).flatten(0, 1)).sample.view(B, T, 3, h * 4, w * 4).transpose(1, 2)

    def whole(z):
        yield temporal(z).sample

    def chunked(z):
        yield from temporal.iter_decode(z, chunk_size=chunk, overlap=overlap)

    def svd_chunks(z):
        B, C, T, h, w = z.shape
        frames = z.transpose(1, 2).flatten(0, 1)
        for i in range(0, T, chunk):
            part = frames[i:i + chunk]
            out = svd.decode(part, num_frames=part.shape[0]).sample
            yield out.view(B, part.shape[0], *out.shape[1:]).transpose(1, 2)

    params = {"image": sum(p.numel() for p in vae.decoder.parameters()),
              "svd": sum(p.numel() for p in svd.decoder.parameters())}
    params["videoldm"] = params["chunked"] = params["image"] + sum(p.numel() for p in temporal.temporal_layers.parameters())
    return {"image": image, "videoldm": whole, "chunked": chunked, "svd": svd_chunks}, params


def run(decode, z, out: np.ndarray) -> None:
    t = 0
    for piece in decode(z):
        n = piece.shape[2]
        out[:, t:t + n] = to_uint8(piece)
        t += n
    assert t == out.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="64x64", help="frame HxW in pixels (latents are 4x smaller)")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--overlap", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-whole-above", type=int, default=256,
                        help="skip the one-batch decoders above this many frames (memory)")
    args = parser.parse_args()
    import os

    missing = [k for k, v in ALLOCATOR.items() if os.environ.get(k) != v]
    if missing:
        print(f"warning: allocator variables not set ({', '.join(missing)}): times will vary")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    H, W = (int(v) for v in args.size.split("x"))
    fns, params = decoders(args.chunk, args.overlap)
    print(f"decoder widths {WIDTHS}, frames {H}x{W}, latents 4x{H // 4}x{W // 4}, chunk {args.chunk}, "
          f"overlap {args.overlap}; params: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in params.items()))
    print(f"{'decoder':<10}{'T':>5}{'peak MiB':>10}{'x T=first':>10}{'ms/frame':>10}{'output MiB (uint8)':>20}")
    for name, fn in fns.items():
        first = None
        for T in args.frames:
            if name in ("image", "videoldm") and T > args.skip_whole_above:
                continue
            z = torch.randn(1, 4, T, H // 4, W // 4)
            out = np.empty((1, T, H, W, 3), np.uint8)
            with torch.no_grad():
                run(fn, z, out)  # warm-up
                with PeakTensorMemory() as mem:
                    run(fn, z, out)
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    run(fn, z, out)
                    times.append(time.perf_counter() - start)
            peak = mem.peak / 2**20
            first = first or peak
            print(f"{name:<10}{T:>5}{peak:>10.1f}{peak / first:>10.2f}{statistics.median(times) / T * 1e3:>10.1f}"
                  f"{out.nbytes / 2**20:>20.1f}")


if __name__ == "__main__":
    main()
