"""`videoldm data`: make procedural datasets, prepare real footage, look inside video folders and shards, pack
folders into shards."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from .options import bounded, positive, size_arg

EPILOG = """examples:
  videoldm data synth --kind driving --num 200 --frames 16 --size 128x256 --fps 8 --out data/driving
  videoldm data synth --kind shapes --num 500 --size 64x64 --out data/shapes            # train split
  videoldm data synth --kind shapes --num 50 --size 64x64 --split heldout --out data/shapes-heldout
  videoldm data synth --kind camera --num 100 --frames 32 --fps 24 --out data/camera
  videoldm data inspect data/driving                  # a folder of videos / frame folders
  videoldm data inspect "shards/train-{000000..000099}.tar" --frames 16 --fps 8
  videoldm data shard data/driving --out shards/driving --per-shard 100
  videoldm data prepare ~/.cache/videoldm-footage/bbb.mp4 --size 64x112 --fps 8 --out data/bunny

Read the results in Python with videoldm.data.VideoFolderDataset(folder, num_frames, fps, size) or
videoldm.data.ShardDataset(shards, ...); see docs/data.md."""

SYNTH_HELP = """Write N procedural clips as H.264 mp4 files plus manifest.jsonl (path, caption, attributes,
ground truth, fps, frames), deterministic from --seed: the same command gives the same clips.
Interrupted, the same command again keeps the clips already written and makes the rest.

kinds:
  driving  highway from the ego car (1:2 aspect, e.g. 128x256): lanes streaming at the ego speed, cars
           with per-frame boxes; attributes daytime (day/night), crowdedness (low/medium/high), ego_speed
  shapes   one or two coloured shapes moving in straight lines, captions like "a red circle moving left on a
           dark background" that every frame obeys (clips too long to cross without bouncing say "moving
           left, then right"), per-frame centroids; --split heldout gives the combinations train never has
  camera   smooth pans and zooms over scikit-image's sample photos; per-frame crop windows"""


PREPARE_HELP = """Decode real footage once into training folders: OUT/train/ and OUT/heldout/, each with one mp4 per
shot (the shot-cut detector runs on the source, so no piece spans a cut) and a manifest.jsonl that
`videoldm train` and VideoFolderDataset read (captions empty, or the one --caption), plus
OUT/prepare.json (settings, pieces, frames and seconds per split, pieces dropped).

  size     each frame is resized to cover HxW with its aspect ratio kept, then center-cropped: 1280x720
           footage at 64x112 is scaled to 64x114 and loses 1 column on each side (16:9 is 64x113.8)
  fps      frames are picked by presentation time (the frame shown at start + k / fps), so 24, 25 or
           29.97 fps sources all give true F fps motion
  split    the first --split-at of each source's duration trains, the rest is held out; a shot that
           straddles that point becomes one piece on each side (no frame is in both)
  short    shot pieces shorter than --min-frames frames (no clip fits) are dropped and counted
  quality  libx264 at --crf (default near-lossless) with full-resolution colour (4:4:4)

Refuses a non-empty OUT unless --overwrite. Memory: one shot at the output size."""


def _fraction(text: str) -> float:
    """argparse type for --split-at: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got '{text}'")
    return value


def add_command(subparsers) -> None:
    from videoldm.data.prepare import PREPARE_CRF
    from videoldm.data.synthetic.base import DATASET_CRF
    from videoldm.data.synthetic.driving import CROWDEDNESS, DAYTIMES

    p = subparsers.add_parser(
        "data", help="make procedural video datasets, prepare real footage, inspect video folders and shards",
        description="Video data tools: `synth` writes procedural datasets with ground truth, `prepare` cuts real "
                    "footage into one-shot training pieces, `inspect` reports "
                    "what a folder or shard set holds (and what cannot be read), `shard` packs a folder into "
                    "WebDataset-style tar shards.",
        epilog=EPILOG)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")

    s = sub.add_parser("synth", help="write a procedural dataset (driving, shapes, camera) as mp4 + manifest.jsonl",
                       description=SYNTH_HELP, epilog=EPILOG)
    s.add_argument("--kind", required=True, choices=["driving", "shapes", "camera"], help="which dataset")
    s.add_argument("--num", type=positive(int), required=True, help="number of clips")
    s.add_argument("--frames", type=positive(int), default=16, help="frames per clip (default 16)")
    s.add_argument("--size", type=size_arg, default=None,
                   help="HxW, even numbers (default 128x256 for driving and camera, 64x64 for shapes)")
    s.add_argument("--fps", type=positive(float), default=8.0, help="frame rate of the written files (default 8)")
    s.add_argument("--out", required=True, type=Path, help="output folder (created)")
    s.add_argument("--seed", type=int, default=0, help="dataset seed (default 0); clip i depends on (seed, i) only")
    s.add_argument("--start-index", type=bounded(int, 0), default=0, help="first clip index, to extend a dataset (default 0)")
    s.add_argument("--crf", type=bounded(int, 0, 51), default=DATASET_CRF,
                   help=f"libx264 quality, lower is better (default {DATASET_CRF}: >= 35 dB PSNR on every kind; "
                        "libx264's own default is 23)")
    s.add_argument("--previews", type=bounded(int, 0), default=0, metavar="K", help="also write GIFs of the first K clips")
    s.add_argument("--split", choices=["train", "heldout"], default="train",
                   help="shapes: which combinations; camera: which photos (heldout: a photo train never shows)")
    s.add_argument("--style", choices=["plain", "checker"], default="plain",
                   help="shapes: background texture (checker: a style for personalization; default plain)")
    s.add_argument("--daytime", choices=DAYTIMES, help="driving: force day or night (default: random)")
    s.add_argument("--crowdedness", choices=list(CROWDEDNESS), help="driving: force traffic density")
    s.add_argument("--force", action="store_true", help="overwrite an existing manifest.jsonl in --out")
    s.set_defaults(func=run_synth)

    i = sub.add_parser("inspect", help="counts, durations, fps and resolution histograms, unreadable files",
                       description="Probe every video (or frame folder) under a folder, or every sample of a shard "
                                   "set, and report counts, total and per-file durations, frame-rate and resolution "
                                   "histograms, caption coverage, shots (cuts detected per file), the files that "
                                   "cannot be read and why, and the files not read at all (not videos, not in the "
                                   "manifest). With --frames (and --fps) also how many are too short for such clips.",
                       epilog=EPILOG)
    i.add_argument("path", help="a folder, a .tar shard, a glob or a brace range of shards")
    i.add_argument("--frames", type=positive(int), help="clip length to check files against")
    i.add_argument("--fps", type=positive(float), help="clip frame rate to check against (default: native)")
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    i.add_argument("--limit", type=int, default=20,
                   help="how many files to list per kind (readable, unreadable, not read; default 20)")
    i.add_argument("--no-shots", dest="shots", action="store_false",
                   help="skip shot-cut detection (it decodes every frame once; results are kept in the "
                        "folder's .videoldm/probes.jsonl, so a second inspect or training run reuses them)")
    i.set_defaults(func=run_inspect)

    h = sub.add_parser("shard", help="pack a folder of videos into WebDataset-style tar shards",
                       description="Each video becomes KEY.<ext> + KEY.json (caption, attributes, ground truth) in "
                                   "tar files of --per-shard samples, readable by videoldm.data.ShardDataset.",
                       epilog=EPILOG)
    h.add_argument("src", type=Path, help="folder of videos (with sidecars or a manifest)")
    h.add_argument("--out", required=True, type=Path, help="output folder for shard-000000.tar, ...")
    h.add_argument("--per-shard", type=positive(int), default=100, help="samples per shard (default 100)")
    h.set_defaults(func=run_shard)

    r = sub.add_parser("prepare", help="real footage (a film) -> train/ and heldout/ folders of one-shot mp4 pieces",
                       description=PREPARE_HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("src", nargs="+", type=Path, metavar="SRC", help="video file(s) to prepare")
    r.add_argument("--size", type=size_arg, required=True,
                   help="HxW of the pieces: resized to cover it (aspect kept), then center-cropped")
    r.add_argument("--fps", type=positive(float), required=True, help="frame rate of the pieces (resampled by time)")
    r.add_argument("--split-at", type=_fraction, default=0.9,
                   help="fraction of each source's duration that trains; the rest is held out (default 0.9)")
    r.add_argument("--min-frames", type=positive(int), default=16,
                   help="drop shot pieces shorter than this many frames at --fps: the clip length (default 16)")
    r.add_argument("--crf", type=bounded(int, 0, 51), default=PREPARE_CRF,
                   help=f"libx264 quality, 0 is lossless (default {PREPARE_CRF}: near-lossless)")
    r.add_argument("--caption", default="",
                   help="one caption for every piece (default none): a text-conditioned stack on one film learns "
                        "it as a constant token, e.g. \"big buck bunny\" (the Video LDM temporal layers attend "
                        "to text tokens, so the bunny recipes use one)")
    r.add_argument("--out", required=True, type=Path, help="output folder (created; must be empty)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace the train/, heldout/ and prepare.json of an earlier prepare in --out")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=run_prepare)


def run_synth(args) -> int:
    from videoldm.data.synthetic import make_generator, write_dataset

    size = args.size or ((64, 64) if args.kind == "shapes" else (128, 256))
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"--size must be even for H.264, got {size[0]}x{size[1]}")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out exists and is not a folder: {args.out}")
    if (args.out / "manifest.jsonl").exists() and not args.force:
        raise ValueError(f"{args.out / 'manifest.jsonl'} exists; pass --force to overwrite or choose another --out")
    kw = {}
    if args.kind in ("shapes", "camera"):
        kw["split"] = args.split
    if args.kind == "shapes":
        kw["style"] = args.style
    elif args.style != "plain":
        raise ValueError("--style is a shapes option")
    if args.kind == "driving":
        kw.update(daytime=args.daytime, crowdedness=args.crowdedness)
    gen = make_generator(args.kind, frames=args.frames, size=size, fps=args.fps, seed=args.seed, **kw)

    def progress(n, total, elapsed):
        if n == total or n % max(1, total // 10) == 0:
            print(f"  {n}/{total} clips, {elapsed:.1f}s", file=sys.stderr)

    t0 = time.perf_counter()
    manifest = write_dataset(gen, args.out, args.num, start_index=args.start_index, gif_previews=args.previews,
                             crf=args.crf, progress=progress, log=lambda message: print(message, file=sys.stderr))
    dt = time.perf_counter() - t0
    print(f"wrote {args.num} {args.kind} clips ({args.frames} frames, {size[0]}x{size[1]}, {args.fps:g} fps) "
          f"to {args.out} in {dt:.1f}s ({args.num / dt:.1f} clips/s); manifest: {manifest}")
    return 0


def _inspect_records(path: str, shots: bool = True, not_read: list | None = None):
    """(name, VideoInfo or error string, has_caption) for every clip under path; files of a folder that
    are not read at all go to `not_read` as (name, reason)."""
    from videoldm.data.decode import DecodeError, probe
    from videoldm.data.frames import probe_frames

    p = Path(path)
    if p.is_dir() and not any(p.rglob("*.tar")):
        from videoldm.data.probe_cache import ProbeCache
        from videoldm.data.video_folder import scan

        entries, skipped = scan(p)
        if not_read is not None:
            not_read.extend((str(f), reason) for f, reason in skipped)
        if not entries:
            raise ValueError(f"no video files or frame folders under {p}"
                             + (f"; {len(skipped)} other files, e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else ""))
        cache = ProbeCache(p) if shots else None
        for e in entries:
            try:
                if e["kind"] == "frames":
                    info = probe_frames(e["path"], float(e["extra"].get("fps", 30.0)))
                elif not e["path"].is_file():
                    raise DecodeError("file not found (listed in the manifest)")
                else:
                    info = cache.probe(e["path"]) if cache else probe(e["path"])
                yield str(e["path"]), info, bool(e["caption"])
            except DecodeError as err:
                yield str(e["path"]), str(err), bool(e["caption"])
        return
    from videoldm.data.shards import VIDEO_KEYS, expand_shards, iter_tar_samples

    shards = expand_shards(path)
    if not shards or not all(Path(s).is_file() for s in shards):
        missing = next((s for s in shards if not Path(s).is_file()), path)
        raise FileNotFoundError(f"not a folder or shard: {missing}")
    for shard in shards:
        try:
            for key, fields in iter_tar_samples(shard):
                name = f"{shard}#{key}"
                has_cap = any(k in fields for k in ("txt", "caption", "text")) or (
                    "json" in fields and b'"caption"' in fields["json"])
                vk = next((k for k in VIDEO_KEYS if k in fields), None)
                if vk is None:
                    yield name, "no video field", has_cap
                    continue
                try:
                    yield name, probe(fields[vk]), has_cap
                except DecodeError as err:
                    yield name, str(err), has_cap
        except Exception as err:  # a truncated or corrupt tar: report it, keep going
            yield shard, f"unreadable shard: {err}", False


def _describe(info) -> str:
    """One line about a readable file: size, rate, length, codec, rotation, shots."""
    text = (f"{info.width}x{info.height} {info.fps:.3g} fps {info.duration:.2f}s {info.num_frames} frames "
            f"{info.codec}")
    if info.rotation:
        text += f", turned {info.rotation} deg for display"
    if info.shots_detected:
        text += f", {len(info.cuts) + 1} shot{'s' if info.cuts else ''}"
        if info.cut_frames:
            text += f" (cuts at frames {', '.join(map(str, info.cut_frames))})"
    return text


def run_inspect(args) -> int:
    from videoldm.data.clips import ClipSpec

    spec = ClipSpec(num_frames=args.frames, fps=args.fps, start="first") if args.frames else None
    ok, bad, short, captioned, not_read = [], [], [], 0, []
    for name, info, has_cap in _inspect_records(args.path, shots=args.shots, not_read=not_read):
        captioned += has_cap
        if isinstance(info, str):
            bad.append((name, info))
            continue
        ok.append((name, info))
        if spec is not None and spec.check(info):
            short.append((name, spec.check(info)))
    infos = [i for _, i in ok]
    durations = [i.duration for i in infos]
    detected = [i for i in infos if i.shots_detected]
    report = {
        "path": str(args.path),
        "clips": len(ok) + len(bad),
        "readable": len(ok),
        "unreadable": len(bad),
        "not_read": len(not_read),
        "captioned": captioned,
        "total_duration_s": round(sum(durations), 2),
        "duration_s": {"min": round(min(durations), 3), "median": round(statistics.median(durations), 3),
                       "max": round(max(durations), 3)} if durations else None,
        "total_frames": sum(i.num_frames for i in infos),
        "fps": dict(Counter(f"{i.fps:.3g}" for i in infos).most_common()),
        "resolution": dict(Counter(f"{i.height}x{i.width}" for i in infos).most_common()),
        "codec": dict(Counter(i.codec for i in infos).most_common()),
        "shots": {"files_measured": len(detected), "shots": sum(len(i.cuts) + 1 for i in detected),
                  "files_with_cuts": sum(bool(i.cuts) for i in detected)},
        "files": [{"path": n, "readable": True, **{k: v for k, v in i.to_dict().items()},
                   "shots": len(i.cuts) + 1 if i.shots_detected else None} for n, i in ok],
        "unreadable_files": [{"path": n, "reason": r} for n, r in bad[: args.limit]],
        "not_read_files": [{"path": n, "reason": r} for n, r in not_read[: args.limit]],
    }
    if spec is not None:
        report["too_short"] = len(short)
        report["too_short_files"] = [{"path": n, "reason": r} for n, r in short[: args.limit]]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['path']}: {report['clips']} clips, {len(ok)} readable, {len(bad)} unreadable, "
          f"{captioned} with captions; {len(not_read)} other files not read")
    if durations:
        d = report["duration_s"]
        print(f"duration: {report['total_duration_s']:.1f}s total, per clip min {d['min']:.2f}s / median "
              f"{d['median']:.2f}s / max {d['max']:.2f}s; {report['total_frames']} frames")
    for key in ("fps", "resolution", "codec"):
        print(f"{key}: " + ", ".join(f"{k} ({v})" for k, v in report[key].items()))
    if detected:
        sh = report["shots"]
        print(f"shots: {sh['shots']} in {sh['files_measured']} files, {sh['files_with_cuts']} with cuts "
              "(clips are sampled inside one shot)")
    if spec is not None:
        print(f"too short for {args.frames} frames at {args.fps or 'native'} fps: {len(short)}")
        for n, r in short[: args.limit]:
            print(f"  {n}: {r}")
    sections = [("readable", [(n, _describe(i)) for n, i in ok]), ("unreadable", bad),
                ("not read", not_read)]
    for title, rows in sections:
        if rows:
            print(f"{title}:")
            for n, r in rows[: args.limit]:
                print(f"  {n}: {r}")
            if len(rows) > args.limit:
                print(f"  ... and {len(rows) - args.limit} more (--limit)")
    return 0


def run_shard(args) -> int:
    from videoldm.data.shards import folder_to_shards

    if not args.src.is_dir():
        raise FileNotFoundError(f"source folder not found: {args.src}")
    paths = folder_to_shards(args.src, args.out, per_shard=args.per_shard)
    print(f"wrote {len(paths)} shard(s) to {args.out}: {paths[0].name} .. {paths[-1].name}")
    return 0


def run_prepare(args) -> int:
    from videoldm.data.decode import DecodeError
    from videoldm.data.prepare import prepare_footage

    try:
        report = prepare_footage(args.src, args.out, args.size, args.fps, split_at=args.split_at,
                                 min_frames=args.min_frames, crf=args.crf, caption=args.caption,
                                 overwrite=args.overwrite,
                                 progress=not args.quiet, log=lambda message: print(message, file=sys.stderr))
    except DecodeError as err:
        raise ValueError(str(err)) from None  # an unreadable source: one line naming it, exit status 2
    for split, c in report["splits"].items():
        print(f"{split}: {c['pieces']} pieces, {c['frames']} frames, {c['seconds']:.1f}s "
              f"({c['dropped_pieces']} pieces under {args.min_frames} frames dropped, {c['dropped_seconds']:.1f}s) "
              f"-> {args.out / split}")
    print(f"{args.size[0]}x{args.size[1]} at {args.fps:g} fps in {report['seconds_taken']:.1f}s; "
          f"report: {args.out / 'prepare.json'}")
    return 0
