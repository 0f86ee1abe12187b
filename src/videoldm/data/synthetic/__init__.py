"""Procedural video datasets with ground truth: `driving`, `shapes`, `camera` (see each module)."""
from .base import Clip, Generator, write_dataset
from .camera import CameraGenerator
from .driving import DrivingGenerator
from .shapes import ShapesGenerator

GENERATORS = {"driving": DrivingGenerator, "shapes": ShapesGenerator, "camera": CameraGenerator}

__all__ = ["Clip", "Generator", "GENERATORS", "CameraGenerator", "DrivingGenerator", "ShapesGenerator", "make_generator", "write_dataset"]


def make_generator(kind: str, **kwargs) -> Generator:
    """A generator by name; kwargs are its constructor's (frames, size, fps, seed, ...)."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown dataset kind {kind!r}; one of {', '.join(GENERATORS)}")
    return GENERATORS[kind](**kwargs)
