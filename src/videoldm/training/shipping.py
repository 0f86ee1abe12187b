"""Collecting trained exports into one self-contained tree (the shipped models), with a model card each.

An export refers to the models it builds on (a temporal export to its image model, a decoder to its
autoencoder) by a path relative to itself. :func:`ship` copies a set of exports under new names and
rewrites those references to point inside the new tree, so the tree can move as a whole; a reference to
a model that is not shipped is an error. Each copy gets a ``MODEL_CARD.md`` written from its run folder:
the recipe, the data, the steps, the training time and the final loss.

Weights ship in half precision (as Stable Diffusion's ``fp16`` variants do): half the bytes, and every
loader here (diffusers, transformers, the temporal-layer files) casts them back to the float32 models.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..export import MODEL_INDEX, is_export, read_index, write_index

REFERENCE_KEYS = ("image_model", "autoencoder")

# what ships, from which run of the project's recipes (`make models` trains them in this order)
SHIPPED_RUNS = {
    "driving/autoencoder": "runs/driving/autoencoder-roads/final",  # the driving diffusion models' latents
    "driving/decoder": "runs/driving/decoder-roads/final",
    "driving/image": "runs/driving/image/final",
    "driving/prediction": "runs/driving/prediction/final",
    "driving/interpolation": "runs/driving/interpolation/final",
    "driving/upsampler-image": "runs/driving/upsampler-image-lowlevels-more/final",  # the video upsampler's base
    "driving/upsampler-video": "runs/driving/upsampler-video/final",
    "shapes/image": "runs/shapes/image-more/final",  # shapes/image trained 8000 steps further
    "shapes/temporal": "runs/shapes/temporal/final",
    "shapes/prediction": "runs/shapes/prediction/final",  # the text-to-video model generate uses (S = 0, 1, 2)
    "bunny/autoencoder": "runs/bunny/autoencoder/final",  # real footage: Big Buck Bunny (CC-BY 3.0), `make bunny`
    "bunny/decoder": "runs/bunny/decoder/final",
    "bunny/image": "runs/bunny/image/final",
    "bunny/prediction": "runs/bunny/prediction/final",  # generate --model bunny (S = 0 first clip, then continued)
}

# the footage a shipped family was trained on, when it is somebody's work: the card carries the attribution
CREDITS = {"bunny": "Big Buck Bunny, (c) 2008 Blender Foundation, www.bigbuckbunny.org, licensed CC-BY 3.0 "
                    "(creativecommons.org/licenses/by/3.0); these weights are trained on it and ship with this "
                    "attribution"}


def ship(exports: dict[str, str | Path], out: str | Path, metrics: dict[str, str] | None = None,
         root: str | Path = ".", half: bool = True) -> Path:
    """``exports``: shipped name (e.g. ``"driving/prediction"``) -> exported folder (``runs/.../final``).

    ``metrics``: shipped name -> a line of measured results for its card. ``root``: where the recipes ran
    (their relative paths start there), to follow a run back to the runs it continued. ``half``: store
    the weights as float16. Returns ``out``.
    """
    out = Path(out)
    sources = {name: Path(src).resolve() for name, src in exports.items()}
    for name, src in sources.items():
        if not is_export(src):
            raise FileNotFoundError(f"{src}: not an export (no {MODEL_INDEX})")
    by_source = {src: name for name, src in sources.items()}
    for name, src in sources.items():
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(src, target)
        index = read_index(target)
        shared = shipped_copy_of_vae(src, index, sources)
        if shared is not None:  # the image model's own copy of a shipped autoencoder: refer to that one instead
            shutil.rmtree(target / index["vae"])
            index["vae"] = os.path.relpath(out / shared, target)
        if half:
            for weights in target.rglob("*.safetensors"):
                to_half(weights)
        for key in REFERENCE_KEYS:
            if key not in index:
                continue
            referenced = (src / index[key]).resolve()
            if referenced not in by_source:
                raise ValueError(f"{name} refers to {referenced} ({key}), which is not among the shipped models")
            index[key] = os.path.relpath(out / by_source[referenced], target)
        write_index(target, index)
        (target / "MODEL_CARD.md").write_text(model_card(name, src, index, (metrics or {}).get(name), Path(root), half))
    return out


def shipped_copy_of_vae(src: Path, index: dict, sources: dict[str, Path]) -> str | None:
    """Where a shipped autoencoder holds the same VAE weights as the export ``src`` (its path under the
    shipped tree, e.g. ``"driving/autoencoder/vae"``), or None. An image model's export carries a copy of the
    autoencoder it was trained on; shipping both would store the same megabytes twice."""
    if index.get("stage") == "autoencoder" or not index.get("vae"):
        return None
    weights = sorted((src / index["vae"]).glob("*.safetensors"))
    for name, other in sources.items():
        other_index = read_index(other)
        if other_index.get("stage") != "autoencoder" or other == src:
            continue
        candidates = sorted((other / other_index["vae"]).glob("*.safetensors"))
        if weights and [w.name for w in weights] == [c.name for c in candidates] and all(
                w.read_bytes() == c.read_bytes() for w, c in zip(weights, candidates)):
            return f"{name}/{other_index['vae']}"
    return None


def to_half(path: Path) -> None:
    """Rewrite a safetensors file with its float32 tensors as float16, refusing values float16 cannot hold."""
    tensors = load_file(path)
    for name, tensor in tensors.items():
        if tensor.dtype == torch.float32:
            if tensor.abs().max() > torch.finfo(torch.float16).max:
                raise ValueError(f"{path}: {name} holds values beyond float16's range; ship it with half=False")
            tensors[name] = tensor.half()
    save_file(tensors, path, metadata={"format": "pt"})


def tree_size(folder: str | Path) -> int:
    """Bytes of every file under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def run_summary(run_dir: Path) -> dict:
    """Steps, summed step time (seconds) and the mean loss of the last 50 steps, from a run's ``log.csv``."""
    log = run_dir / "log.csv"
    if not log.is_file():
        return {}
    with open(log) as f:
        rows = list(csv.DictReader(f))
    config = run_config(run_dir)
    batch = config.get("data", {}).get("batch_size", 1) * config.get("run", {}).get("grad_accum", 1)
    seconds = sum(batch / float(r["samples_per_s"]) for r in rows if r.get("samples_per_s"))
    last = [float(r["loss"]) for r in rows[-50:] if r.get("loss")]
    return {"steps": int(rows[-1]["step"]) if rows else 0, "seconds": seconds,
            "final_loss": sum(last) / len(last) if last else float("nan"), "config": config}


def run_config(run_dir: Path) -> dict:
    """The resolved recipe a run wrote to ``config.json`` ({} if none)."""
    path = run_dir / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def earlier_run(config: dict, root: Path) -> Path | None:
    """The run whose weights this run continued (None if it started fresh): ``pretrained`` (an autoencoder
    trained further), ``unet.pretrained`` (an image model trained further, or on a new style),
    ``init_temporal`` (temporal layers taken over), or ``image_model`` when it is a run of
    the same stage (an upsampler trained further); an ``image_model`` of another stage is a frozen base,
    named in ``videoldm.json`` instead. Relative paths are read from ``root``, where the recipes ran."""
    model = config.get("model", {})
    unet = model.get("unet") if isinstance(model.get("unet"), dict) else {}
    continued = [model.get("pretrained"), unet.get("pretrained"), model.get("init_temporal")]
    for path, same_stage_only in [(p, False) for p in continued] + [(model.get("image_model"), True)]:
        earlier = (root / path).parent if path else None  # an absolute path stays itself
        if earlier is None or not (earlier / "config.json").is_file():
            continue
        if not same_stage_only or run_config(earlier).get("stage") == config.get("stage"):
            return earlier
    return None


def recipe_chain(run_dir: Path, root: Path) -> list[Path]:
    """The runs that trained these weights, oldest first (one, unless a recipe continued another)."""
    chain = [run_dir]
    while len(chain) < 32:
        earlier = earlier_run(run_config(chain[0]), root)
        if earlier is None or earlier.resolve() in (r.resolve() for r in chain):
            break
        chain.insert(0, earlier)
    return chain


def model_card(name: str, src: Path, index: dict, metrics: str | None, root: Path = Path("."), half: bool = True) -> str:
    run_dir = src.parent
    s = run_summary(run_dir)
    chain = recipe_chain(run_dir, root)
    config = s.get("config", {})
    data = config.get("data", {})
    recipe = config.get("source") or "(recipe not recorded)"
    paths = data.get("path")
    paths = ", ".join(paths) if isinstance(paths, list) else paths
    prepared = isinstance(paths, str) and (root / paths).parent.joinpath("prepare.json").is_file()
    lines = [f"# {name}", "", f"Stage `{index.get('stage')}` of the Video LDM stack, trained on this project's CPU "
             "machine (2 cores) with the project's own recipe.", "",
             f"- Recipe: `{recipe}`; retrain with `videoldm train {recipe}`" if len(chain) == 1 else
             f"- Recipe: `{recipe}`, continuing the runs listed below",
             f"- Data: `{paths}` ({data.get('num_frames')} frames at {data.get('fps')} fps, size {data.get('size')}), "
             + ("real footage cut at its shots by `videoldm data prepare`" if prepared else "made by `videoldm data synth`")
             + " (commands in the recipe's header)"]
    if name.split("/")[0] in CREDITS:
        lines += [f"- Footage and licence: {CREDITS[name.split('/')[0]]}"]
    if s:
        lines += [f"- Steps: {s['steps']}; training time: {s['seconds'] / 60:.1f} min (sum of step times); "
                  f"final loss (mean of the last 50 steps): {s['final_loss']:.4f}"]
    if len(chain) > 1:  # the recipe continued the weights of earlier runs: list them all, oldest first
        summaries = [run_summary(r) for r in chain]
        recipes = [x.get("config", {}).get("source") or f"{r} (recipe not recorded)" for r, x in zip(chain, summaries)]
        total = sum(x.get("seconds", 0.0) for x in summaries)
        lines += [f"- Trained by {len(chain)} recipes in turn, each continuing the one before (retrain with "
                  f"`{' && '.join(f'videoldm train {r}' for r in recipes)}`); "
                  f"{sum(x.get('steps', 0) for x in summaries)} steps and {total / 60:.1f} min in all:"]
        lines += [f"  {i + 1}. `{r}`: {x.get('steps', 0)} steps, {x.get('seconds', 0.0) / 60:.1f} min"
                  for i, (r, x) in enumerate(zip(recipes, summaries))]
    if metrics:
        lines += [f"- Measured: {metrics}"]
    lines += ["", "Files: the export as `videoldm train` wrote it (`videoldm.json` says what it holds and what it "
              "builds on, by a path relative to this folder)" + (", its weights stored as float16 and loaded as float32."
                                                     if half else ".")]
    return "\n".join(lines) + "\n"
