"""What the commands share: argument types that refuse bad values at parse time, and the output folder.

A bad number or size is a usage error before anything is loaded; an output folder that cannot be made
is an error before any long work, so that a render or an evaluation is never lost to it at the end.
"""
from __future__ import annotations

import argparse
import functools
from pathlib import Path


def output_folder(path: str | Path) -> Path:
    """Makes the output folder ``path``, or fails with a one-line reason: called before long work, so
    that a render or an evaluation is never lost to a folder that cannot be made at the end."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {path}: cannot make this output folder ({err.strerror})") from None
    return path


def folder_first(run):
    """A command whose ``--out`` is a folder: make it before running the command."""
    @functools.wraps(run)
    def wrapped(args):
        if getattr(args, "out", None):
            output_folder(args.out)
        return run(args)
    return wrapped


def _number(kind, ok, requirement: str):
    """An argparse type: a number of ``kind`` for which ``ok(value)`` holds, else "must be REQUIREMENT"."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got '{text}'")
        return value
    return parse


def positive(kind):
    """A number of ``kind`` above 0 (a count of clips, frames, steps)."""
    return _number(kind, lambda value: value > 0, "positive")


def bounded(kind, low, high=None):
    """A number of ``kind`` in ``low..high`` (``high`` None: no upper bound)."""
    if high is None:
        return _number(kind, lambda value: value >= low, f"{low} or more")
    return _number(kind, lambda value: low <= value <= high, f"{low}..{high}")


def size_arg(text: str) -> tuple[int, int]:
    """argparse type for every ``HxW`` option of the commands: a clear usage error for anything else."""
    from ..data.clips import parse_size  # here, not above: the data package loads torch, --help should not

    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_device_options(parser) -> None:
    """``--device`` and ``--dtype`` for a command that runs models."""
    parser.add_argument("--device", default="auto",
                        help="where to run: auto (a CUDA or Apple GPU when there is one, else the CPU), cpu, cuda, "
                             "cuda:1, mps (default auto)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                        help="the models' precision: auto is bfloat16 on GPUs and CPUs that compute it natively, "
                             "float16 on older GPUs, float32 elsewhere (default auto)")


def device_and_dtype(args):
    """The ``torch.device`` and ``torch.dtype`` that ``--device``/``--dtype`` ask for, checked to exist here."""
    from ..inference.devices import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    return device, resolve_dtype(args.dtype, device)
