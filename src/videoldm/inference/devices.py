"""Which device and precision to run on, chosen by the hardware when the user says ``auto``.

bf16 is fast only where the hardware computes it: GPUs of the last generations, and CPUs with AVX-512-bf16
or AMX (1.2-1.6x float32, measured by earlier sessions). On a CPU without them bf16 is emulated: the shapes
temporal recipe trained 22x slower than in float32 (docs/benchmarks.md), so ``auto`` means float32 there.
"""
from __future__ import annotations

import contextlib
import logging
import platform
from functools import lru_cache
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 itself: ``avx512_bf16``/``amx_bf16`` (x86) or ``bf16`` (Arm) among
    the flags of /proc/cpuinfo. Elsewhere (no such file, e.g. macOS) False: float32 is the safe choice."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")):
            flags.update(line.split(":", 1)[-1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA, else Apple's MPS, else the CPU; any other name as torch reads it, checked to exist."""
    if str(name) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name}: no CUDA GPU here (torch {torch.__version__}, built for "
                         f"{'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU only'})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name}: Apple's MPS is not available here")
    return device


def fast_half(device: torch.device) -> torch.dtype:
    """The 16-bit type the device computes fast, or float32 where it has none: bf16 on GPUs that have it,
    float16 on older ones; bf16 on CPUs with native bf16; float32 on other CPUs and on MPS (the choice
    that works on every macOS version)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def resolve_mixed_precision(setting: str, device: torch.device) -> tuple[str, str]:
    """The trainer's ``run.mixed_precision`` (``auto``, ``no``, ``bf16``, ``fp16``) as accelerate takes it,
    and why: ``auto`` is the device's fast 16-bit type (:func:`fast_half`), float32 (``no``) where it has none."""
    if setting != "auto":
        return setting, "as the recipe says"
    half = fast_half(device)
    if half is torch.float32:
        where = platform.processor() or platform.machine() or "this CPU"
        return "no", f"{device.type} ({where}) has no native bf16: emulated bf16 is many times slower than float32"
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}[half], f"{device.type} computes {half} natively"


def resolve_dtype(name: str | torch.dtype, device: torch.device) -> torch.dtype:
    """Inference dtype: ``auto`` is the device's fast 16-bit type (:func:`fast_half`), else float32."""
    if isinstance(name, torch.dtype):
        return name
    if name == "auto":
        return fast_half(device)
    if name not in DTYPES:
        raise ValueError(f"dtype must be auto or one of {', '.join(DTYPES)}; got {name!r}")
    return DTYPES[name]


@contextlib.contextmanager
def quiet_casts():
    """Silences the warning diffusers 0.42 gives for every model a pipeline's ``to`` casts ("modules that should
    be kept in float32: []": no model here keeps any)."""
    modeling = logging.getLogger("diffusers.models.modeling_utils")
    level = modeling.level
    modeling.setLevel(logging.ERROR)
    try:
        yield
    finally:
        modeling.setLevel(level)
