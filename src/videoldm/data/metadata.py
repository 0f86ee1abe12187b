"""Captions and attributes for clips: sidecar files next to each video, or one manifest for a folder.

Why both: scraped datasets come as `clip.mp4` + `clip.txt`/`clip.json`; curated ones (and our
procedural datasets) as one CSV/JSONL manifest with a row per clip. Precedence: manifest row, then
sidecar .json, then sidecar .txt.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .io import read_jsonl

__all__ = ["MANIFEST_NAMES", "find_manifest", "read_manifest", "read_sidecar", "normalize_record"]

MANIFEST_NAMES = ("manifest.jsonl", "metadata.jsonl", "manifest.csv", "metadata.csv")
_PATH_KEYS = ("path", "file_name", "video", "file")
_CAPTION_KEYS = ("caption", "text", "prompt")
_RESERVED = {"attributes", "ground_truth", "fps", "frames", "size", "duration", "seed", "index"}


def find_manifest(root: Path) -> Path | None:
    for name in MANIFEST_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def _parse_scalar(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def normalize_record(rec: dict, *, where: str = "") -> dict:
    """A manifest row or sidecar as {path?, caption, attributes, extra}.

    Unknown columns become attributes (CSV columns such as `daytime,crowdedness`), so a plain table
    works without nesting. `extra` keeps reserved fields (ground_truth, fps, frames, ...) untouched.
    """
    rec = dict(rec)
    out: dict = {"caption": "", "attributes": {}, "extra": {}}
    for key in _PATH_KEYS:
        if key in rec:
            out["path"] = str(rec.pop(key))
            break
    for key in _CAPTION_KEYS:
        if key in rec:
            out["caption"] = str(rec.pop(key) or "")
            break
    attrs = rec.pop("attributes", None) or {}
    if isinstance(attrs, str):  # a JSON object in a CSV cell
        try:
            attrs = json.loads(attrs)
        except json.JSONDecodeError:
            raise ValueError(f"{where}: `attributes` is not a JSON object: {attrs[:60]!r}") from None
    if not isinstance(attrs, dict):
        raise ValueError(f"{where}: `attributes` must be an object, got {type(attrs).__name__}")
    for key in list(rec):
        if key in _RESERVED:
            out["extra"][key] = rec.pop(key)
    for key, value in rec.items():
        attrs.setdefault(key, _parse_scalar(value) if isinstance(value, str) else value)
    out["attributes"] = attrs
    return out


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a CSV or JSONL manifest, normalized; each must name its file (path/file_name/video)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    elif path.suffix.lower() in (".jsonl", ".json"):
        rows = read_jsonl(path)
    else:
        raise ValueError(f"manifest must be .csv or .jsonl: {path}")
    out = []
    for n, row in enumerate(rows, 1):
        rec = normalize_record(row, where=f"{path}:{n}")
        if "path" not in rec:
            raise ValueError(f"{path}:{n}: row has no file column (one of {', '.join(_PATH_KEYS)})")
        out.append(rec)
    return out


def read_sidecar(media: Path) -> dict:
    """Caption/attributes from `name.json` or `name.txt` next to a video (or frame folder)."""
    stem = media.with_suffix("") if media.is_file() else media
    js, txt = stem.with_suffix(".json"), stem.with_suffix(".txt")
    if media.is_dir():
        js, txt = Path(str(media) + ".json"), Path(str(media) + ".txt")
        if not js.is_file() and (media / "meta.json").is_file():
            js = media / "meta.json"
        if not txt.is_file() and (media / "caption.txt").is_file():
            txt = media / "caption.txt"
    rec: dict = {"caption": "", "attributes": {}, "extra": {}}
    if js.is_file():
        try:
            data = json.loads(js.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{js}: not valid JSON ({err.msg})") from None
        if isinstance(data, dict):
            rec = normalize_record(data, where=str(js))
            rec.pop("path", None)
    if not rec["caption"] and txt.is_file():
        rec["caption"] = txt.read_text(encoding="utf-8").strip()
    return rec
