"""`videoldm evaluate-videos`: the field's metrics (FVD, FID, CLIP similarity, VBench-style scores) on folders."""
from __future__ import annotations

import json
from pathlib import Path

from .options import folder_first, positive

EPILOG = """\
metrics (comma-separated; what each needs):
  fvd               reference set + i3d_torchscript.pt      Fréchet distance of I3D features, 16-frame clips at 224
  fid               reference set + pt_inception-...pth     Fréchet distance of Inception features of frames at 299
  clipsim           prompts + a CLIP folder                 CLIP cosine frame-prompt (also clip_score = 100 max(cos, 0))
  clip_consistency  a CLIP folder                           CLIP cosine of consecutive frames
  flicker           -                                       VBench temporal flickering, 1 = frozen
  warping           -                                       optical-flow warping error (occlusion-masked MSE)
  dynamic_degree    -                                       VBench: fraction of videos with large motion
  psnr, ssim, vmaf  same-named reference videos             reconstruction quality (vmaf: pip install videoldm[vmaf])

weights: nothing is downloaded. Put i3d_torchscript.pt (StyleGAN-V's FVD detector),
pt_inception-2015-12-05-6726825d.pth (pytorch-fid's) and a CLIP folder (clip-vit-base-patch32, or any via
--clip) in a folder given by --weights-dir or $VIDEOLDM_WEIGHTS; a missing one is named with where to get it.

FVD as papers report it (FVD-2048): 2048 generated and 2048 real 16-frame clips. Fewer give higher, noisier
numbers; the report says how many were used. For a data set of more videos, --max-videos 2048 --fvd-clips
random takes 2048 of them and a random 16-frame window of each. Cache the reference side once with
--save-stats and reuse it with --reference-stats.

examples:
  videoldm evaluate-videos samples/ --metrics flicker,warping,dynamic_degree
  videoldm evaluate-videos samples/ --reference ucf101-clips/ --metrics fvd,fid --weights-dir ~/weights \\
      --save-stats stats/ucf101 --out report/
  videoldm evaluate-videos samples/ --reference-stats stats/ucf101 --metrics fvd --weights-dir ~/weights
  videoldm evaluate-videos samples/ --prompts prompts.txt --metrics clipsim,clip_consistency --clip ~/clip-vit-b32
  videoldm evaluate-videos decoded/ --reference originals/ --metrics psnr,ssim,vmaf
"""


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate-videos", help="FVD, FID, CLIP similarity and VBench-style scores of a folder of videos",
        description="Measure a folder of generated videos (every video file under it, in name order) with the "
                    "field's metrics, against a folder of reference videos where a metric needs one; print a "
                    "Markdown table and write metrics.json and metrics.md to --out.",
        epilog=EPILOG)
    p.add_argument("generated", help="folder of generated videos (mp4, webm, avi, gif, ... or frame folders)")
    p.add_argument("--reference", help="folder of real videos: FVD/FID's other set; psnr/ssim/vmaf pair by file name")
    p.add_argument("--reference-stats",
                   help="folder with fvd.npz / fid.npz saved by --save-stats (instead of --reference)")
    p.add_argument("--save-stats", help="folder to save the reference set's FVD/FID statistics in")
    p.add_argument("--prompts", help="prompts for clipsim: a .txt (one line per video, in name order) or a .jsonl/.csv "
                                     "manifest (file + caption); default: the folder's manifest or sidecar .txt")
    p.add_argument("--metrics", default="flicker,warping,dynamic_degree",
                   help="comma-separated, see below (default flicker,warping,dynamic_degree: need no weights)")
    p.add_argument("--weights-dir", help="folder holding the networks' files (default $VIDEOLDM_WEIGHTS)")
    p.add_argument("--i3d", help="path of the FVD detector (default: WEIGHTS_DIR/i3d_torchscript.pt)")
    p.add_argument("--inception", help="path of FID's Inception (default: WEIGHTS_DIR/pt_inception-2015-12-05-6726825d.pth)")
    p.add_argument("--clip", help="a CLIP folder in transformers' layout (default: WEIGHTS_DIR/clip-vit-base-patch32)")
    p.add_argument("--fvd-frames", type=positive(int), default=16, help="frames per FVD clip (default 16, the protocol's)")
    p.add_argument("--fvd-clips", choices=["first", "random"], default="first",
                   help="which window of each video FVD takes: its first frames, or a random window (default first)")
    p.add_argument("--max-videos", type=positive(int),
                   help="a seeded random subset of this many videos of each folder (FVD-2048: 2048; default all)")
    p.add_argument("--fid-frames", type=positive(int), help="frames per video for FID, evenly spaced (default all)")
    p.add_argument("--flow", choices=["dis", "farneback"], default="dis", help="OpenCV optical flow (default dis)")
    p.add_argument("--batch-size", type=positive(int), default=16, help="clips (FVD) or frames (FID, CLIP) per batch")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int, default=0, help="seed of --fvd-clips random and --max-videos")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--out", help="folder for metrics.json and metrics.md")
    p.set_defaults(func=run)


@folder_first
def run(args) -> int:
    from videoldm.evaluation.field import evaluate_videos, format_markdown
    from videoldm.inference.devices import resolve_device

    report = evaluate_videos(
        args.generated, args.reference, prompts=args.prompts, metrics=args.metrics, weights_dir=args.weights_dir,
        i3d=args.i3d, inception=args.inception, clip=args.clip, reference_stats=args.reference_stats,
        save_stats=args.save_stats, device=resolve_device(args.device), batch_size=args.batch_size,
        fvd_frames=args.fvd_frames, fvd_clips=args.fvd_clips, fid_frames=args.fid_frames, flow=args.flow,
        seed=args.seed, progress=not args.no_progress, max_videos=args.max_videos)
    table = format_markdown(report, title=f"{args.generated}" + (f" vs {args.reference}" if args.reference else ""))
    print(table)
    if args.out:
        (Path(args.out) / "metrics.json").write_text(json.dumps(report, indent=1))
        (Path(args.out) / "metrics.md").write_text(table)
        print(f"wrote {args.out}/metrics.json and metrics.md")
    return 0
