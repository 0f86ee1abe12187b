"""Import paths of earlier versions, kept working: ``import videoldm.pipeline`` gives the module that is now
``videoldm.inference.pipeline`` (with a DeprecationWarning naming it), for code written before the layout
of one folder per layer."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "videoldm.pipeline": "videoldm.inference.pipeline",
    "videoldm.sampling": "videoldm.inference.sampling",
    "videoldm.outputs": "videoldm.inference.outputs",
    "videoldm.stack": "videoldm.inference.stack",
    "videoldm.rollout": "videoldm.inference.rollout",
    "videoldm.interpolation": "videoldm.inference.interpolation",
    "videoldm.upsampling": "videoldm.inference.upsampling",
    "videoldm.generate": "videoldm.inference.shipped",
    "videoldm.conditioning": "videoldm.models.conditioning",
    "videoldm.models.context": "videoldm.models.context_encoder",
    "videoldm.models.report": "videoldm.models.size_report",
    "videoldm.metrics": "videoldm.evaluation.metrics",  # and its submodules
    "videoldm.metrics.report": "videoldm.evaluation.metrics.coherence_report",
    "videoldm.long_evaluation": "videoldm.evaluation.long_videos",
    "videoldm.shipping": "videoldm.training.shipping",
    "videoldm.training.sampling_io": "videoldm.training.samples",
    "videoldm.training.context_stages": "videoldm.training.stages.context",
    "videoldm.training.decoder_stage": "videoldm.training.stages.decoder",
    "videoldm.training.upsampler_stage": "videoldm.training.stages.upsampler",
    "videoldm.data.sampling": "videoldm.data.clips",
}


def new_name(old: str) -> str | None:
    """Where the module ``old`` lives now (None: it did not move)."""
    if old in MOVED:
        return MOVED[old]
    package, _, rest = old.rpartition(".")
    parent = new_name(package) if package else None
    return f"{parent}.{rest}" if parent and package in MOVED else None


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("videoldm.") and new_name(fullname) is not None:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        target = new_name(spec.name)
        warnings.warn(f"{spec.name} has moved to {target}; import it from there", DeprecationWarning, stacklevel=2)
        return importlib.import_module(target)

    def exec_module(self, module):
        pass  # the module is the one at its new place, run once already


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())  # before the path finder, which would load a second copy
