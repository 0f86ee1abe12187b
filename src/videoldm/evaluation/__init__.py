"""Measurements of the models: coherence against the image model, the temporal decoder, the upsamplers,
the paper's ablation, and the long-video models; :mod:`.metrics` holds the measures themselves."""
import importlib
import warnings

# the names of the one module `videoldm.evaluation` was, before it became this folder
_EARLIER = {"evaluate_coherence": "coherence", "format_summary": "coherence", "SUMMARY_KEYS": "coherence",
            "evaluate_decoder": "decoder", "format_decoder_summary": "decoder", "seam_pairs": "decoder",
            "evaluate_upsampler": "upsampler", "format_upsampler_summary": "upsampler",
            "evaluate_ablation": "ablation", "format_ablation": "ablation", "ABLATION_ROWS": "ablation"}


def __getattr__(name: str):
    if name in _EARLIER:
        module = f"{__name__}.{_EARLIER[name]}"
        warnings.warn(f"{__name__}.{name} has moved to {module}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
