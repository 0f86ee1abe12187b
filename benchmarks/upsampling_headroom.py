"""What an upsampler leaves on the table: against bicubic, a linear least-squares filter and the truth.

For each data folder, on the first ``--clips`` clips (``--frames`` frames, whole frames, 4x block-average
downsampling as in training): PSNR of bicubic, of a linear filter (5x5 low-resolution pixels -> the 4x4
block's residual to bicubic, fitted by least squares on ``--fit`` clips), and of the upsampler sampled in
``--steps`` steps; and how the upsampler's residual (its output minus bicubic) correlates with the true one.
A linear filter that beats bicubic shows there is a gain to learn; a residual uncorrelated with the truth
shows the model has not learned it.

    python benchmarks/upsampling_headroom.py runs/driving/upsampler-image/final --fit data/camera-256 \
        --data data/camera-256-heldout data/driving-256-heldout --levels 0 5 20 50 150
"""
import argparse

import torch
import torch.nn.functional as F

from videoldm.data import VideoFolderDataset
from videoldm.inference.upsampling import NoiseAugmentation, Upsampler, condition_image


def load(path: str, clips: int, frames: int) -> torch.Tensor:
    ds = VideoFolderDataset(path, num_frames=frames, fps=None, start=0, crop="center")
    return torch.stack([ds[i][0].transpose(0, 1) for i in range(min(clips, len(ds)))])  # (B, T, 3, H, W)


def linear_system(frames: torch.Tensor, scale: int, k: int = 5, level: int | None = None):
    """Rows: a k x k low-resolution neighbourhood (+1), noise-augmented to ``level`` as the upsampler's
    input is; targets: the scale x scale block's residual to the bicubic upsampling of the clean frame."""
    low = F.avg_pool2d(frames, scale)
    bicubic = condition_image(low, "pixel", scale)
    noisy = low
    if level is not None:  # level 0 too: its noise is small (std 0.01), not none
        g = torch.Generator().manual_seed(level)
        noisy = NoiseAugmentation()(low, torch.full((len(low),), level), torch.randn(low.shape, generator=g))
    N, C, h, w = low.shape
    rows = F.unfold(noisy, k, padding=k // 2).view(N, C * k * k, h * w).transpose(1, 2).reshape(-1, C * k * k)
    targets = F.pixel_unshuffle(frames - bicubic, scale).view(N, C * scale * scale, h * w).transpose(1, 2)
    return torch.cat([rows, torch.ones(len(rows), 1)], 1), targets.reshape(-1, C * scale * scale), bicubic


def psnr(x: torch.Tensor, truth: torch.Tensor) -> float:
    return (10 * torch.log10(4 / (x - truth).pow(2).mean())).item()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an upsampler-image or upsampler-video export (pixel space)")
    p.add_argument("--fit", nargs="+", required=True, help="data folders to fit the linear filter on")
    p.add_argument("--fit-clips", type=int, default=40)
    p.add_argument("--data", nargs="+", required=True, help="held-out data folders")
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--frames", type=int, default=2)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--levels", type=int, nargs="*", default=[],
                   help="also: the linear filter fitted and applied on inputs noise-augmented to these levels")
    args = p.parse_args()
    torch.manual_seed(0)
    up = Upsampler.from_pretrained(args.model)
    if up.space != "pixel":
        raise SystemExit("a pixel-space upsampler is needed (the linear filter works on pixels)")
    s = up.scale
    fit = torch.cat([load(d, args.fit_clips, 2).flatten(0, 1) for d in args.fit])
    A, Y, _ = linear_system(fit, s)
    W = torch.linalg.lstsq(A.double(), Y.double()).solution.float()
    print(f"linear filter fitted on {len(fit)} frames of {', '.join(args.fit)}")
    print(f"{'data':32s} {'bicubic':>9s} {'linear':>9s} {'model':>9s}  corr(model residual, true residual)")
    for d in args.data:
        video = load(d, args.clips, args.frames)
        B, T, C, H, Wd = video.shape
        frames = video.flatten(0, 1)
        A, _, bicubic = linear_system(frames, s)
        residual = (A @ W).view(B * T, H // s * (Wd // s), C * s * s).transpose(1, 2).reshape(B * T, C * s * s, H // s, Wd // s)
        linear = (bicubic + F.pixel_shuffle(residual, s)).clamp(-1, 1)
        low = F.avg_pool2d(frames, s).view(B, T, C, H // s, Wd // s)
        model = up(low, num_inference_steps=args.steps, seed=0, progress=False).frames.flatten(0, 1)
        corr = torch.corrcoef(torch.stack([(model - bicubic).flatten(), (frames - bicubic).flatten()]))[0, 1]
        print(f"{d:32s} {psnr(bicubic, frames):7.2f}dB {psnr(linear, frames):7.2f}dB {psnr(model, frames):7.2f}dB  "
              f"{corr.item():.3f}")
    for level in args.levels:  # how much detail survives the noise augmentation at each level
        A, Y, _ = linear_system(fit, s, level=level)
        W = torch.linalg.lstsq(A.double(), Y.double()).solution.float()
        for d in args.data:
            frames = load(d, args.clips, args.frames).flatten(0, 1)
            N, C, H, Wd = frames.shape
            A, _, bicubic = linear_system(frames, s, level=level)
            residual = (A @ W).view(N, H // s * (Wd // s), C * s * s).transpose(1, 2).reshape(N, C * s * s, H // s, Wd // s)
            linear = (bicubic + F.pixel_shuffle(residual, s)).clamp(-1, 1)
            print(f"level {level:3d}  {d:32s} bicubic {psnr(bicubic, frames):.2f} dB, linear filter {psnr(linear, frames):.2f} dB")


if __name__ == "__main__":
    main()
