"""Checkpoints that lose nothing: written to a temporary folder, then renamed; the last N kept.

A checkpoint holds only the trained parameters (safetensors), the optimizer, the learning-rate schedule,
the EMA, the torch RNG state and the position in the data stream. Reading uses ``weights_only`` loads.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PREFIX = "checkpoint-"


def trained_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().contiguous() for name, p in module.named_parameters() if p.requires_grad}


def save_checkpoint(run_dir: Path, step: int, state: dict, module: torch.nn.Module, keep_last: int) -> Path:
    """``state``: ``position`` (int), ``optimizer``, ``lr_scheduler``, ``ema`` (state dicts or None)."""
    final = run_dir / f"{PREFIX}{step:08d}"
    tmp = run_dir / f".{PREFIX}{step:08d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(trained_state(module), tmp / "trained.safetensors")
    for key in ("optimizer", "lr_scheduler", "ema"):
        if state.get(key) is not None:
            torch.save(state[key], tmp / f"{key}.pt")
    torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "position": state["position"]}))
    for f in tmp.iterdir():  # make the contents durable before the rename makes them visible
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    found = [p for p in Path(run_dir).glob(f"{PREFIX}*") if re.fullmatch(rf"{PREFIX}\d+", p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def load_checkpoint(path: Path, module: torch.nn.Module) -> dict:
    """Loads the trained parameters into ``module``; returns step, position and the other state dicts."""
    tensors = load_file(path / "trained.safetensors")
    expected = trained_state(module)
    for name, tensor in expected.items():
        if name not in tensors:
            raise ValueError(f"checkpoint {path} has no parameter '{name}': it belongs to another model")
        if tensors[name].shape != tensor.shape:
            raise ValueError(f"checkpoint {path}: '{name}' has shape {tuple(tensors[name].shape)}, "
                             f"the model {tuple(tensor.shape)}")
    with torch.no_grad():
        params = dict(module.named_parameters())
        for name in expected:
            params[name].copy_(tensors[name])
    state = json.loads((path / "state.json").read_text())
    for key in ("optimizer", "lr_scheduler", "ema", "rng"):
        file = path / f"{key}.pt"
        state[key] = torch.load(file, weights_only=True) if file.is_file() else None
    return state
