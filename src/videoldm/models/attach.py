"""Attaching temporal layers to an image network with forward hooks, and their own weight files.

Shared by the video UNet and the temporal decoder. The image network runs unchanged on the frames of a
batch of videos as ``(B*T, C, H, W)``; a forward hook on each chosen block hands its output to a temporal
layer, which sees it as videos, and returns the alpha-blend of the two. The hooks do nothing unless a
:class:`VideoState` says a video is being run, so the image network still works on its own.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

import torch
from diffusers import ConfigMixin, ModelMixin
from safetensors.torch import load_file, save_file
from torch import nn

from .temporal_layers import TemporalResBlock


@dataclass
class FrameState:
    num_frames: int
    image_only: torch.Tensor | None = None  # (B*T,) bool, or None
    all_image_only: bool = False  # every sample is an image: the temporal layers have nothing to do
    tokens: torch.Tensor | None = None  # for temporal cross-attention, (B, L, D) or (B*T, L, D)
    # context conditioning: per layer key, features added to the temporal layer's input (B*T, C, h, w)
    injections: dict | None = None


class VideoState:
    """What the hooks need to know about the video being run; ``None`` when the image network runs alone."""

    def __init__(self):
        self.current: FrameState | None = None

    @contextlib.contextmanager
    def use(self, frame_state: FrameState | None):
        previous, self.current = self.current, frame_state
        try:
            yield
        finally:
            self.current = previous


class StateCheckpoint:
    """Gradient checkpointing that restores the video's frame state during the backward recomputation."""

    def __init__(self, state: VideoState):
        self.state = state

    def __call__(self, module, *args):
        captured = self.state.current
        return torch.utils.checkpoint.checkpoint(
            module.__call__, *args, use_reentrant=False,
            context_fn=lambda: (contextlib.nullcontext(), self.state.use(captured)),
        )


class TemporalHook:
    """Forward hook on a spatial block: blends its output with the output of its temporal layer."""

    def __init__(self, layer: nn.Module, state: VideoState, key: str):
        self.layer, self.state, self.key = layer, state, key

    def __call__(self, module, args, kwargs, output):
        ctx = self.state.current
        if ctx is None:  # the image network used on its own
            return None
        spatial = output[0] if isinstance(output, tuple) else getattr(output, "sample", output)
        if ctx.all_image_only:
            return None  # alpha is 1 for every sample: skip the temporal work
        layer = self.layer
        if isinstance(layer, TemporalResBlock):
            extra = args[1] if len(args) > 1 else kwargs.get("temb")
        else:
            extra = ctx.tokens
        x = spatial
        if ctx.injections is not None and self.key in ctx.injections:  # context conditioning
            x = spatial + ctx.injections[self.key].to(spatial.dtype)
        if layer.gradient_checkpointing and torch.is_grad_enabled():
            temporal = layer._gradient_checkpointing_func(layer, x, ctx.num_frames, extra)
        else:
            temporal = layer(x, ctx.num_frames, extra)
        blended = layer.mix(spatial, temporal, ctx.image_only)
        if isinstance(output, tuple):
            return (blended,) + tuple(output[1:])
        if hasattr(output, "sample"):
            output.sample = blended
            return output
        return blended


def attach(blocks: list[tuple[str, nn.Module]], layers: nn.ModuleDict, state: VideoState, handles: list) -> None:
    """Removes the hooks in ``handles`` and hooks ``layers[key(name)]`` onto every named block that has one."""
    for handle in handles:
        handle.remove()
    handles.clear()
    for name, block in blocks:
        key = layer_key(name)
        if key in layers:
            handles.append(block.register_forward_hook(TemporalHook(layers[key], state, key), with_kwargs=True))


def layer_key(block_name: str) -> str:
    return block_name.replace(".", "_")


def save_temporal_weights(layers: nn.ModuleDict, directory, weights_name: str, config_name: str, meta: dict) -> None:
    """Writes the temporal weights (safetensors) and ``meta`` as JSON, apart from the image weights."""
    os.makedirs(directory, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in layers.state_dict().items()}
    save_file(tensors, os.path.join(directory, weights_name), metadata={"format": "pt"})
    meta = {**meta, "layers": {k: type(v).__name__ for k, v in layers.items()}}
    with open(os.path.join(directory, config_name), "w") as f:
        json.dump(meta, f, indent=2, default=list)


def load_temporal_weights(layers: nn.ModuleDict, directory, weights_name: str, optional: str | None = None,
                          fresh: str | None = None) -> None:
    """Loads weights written by :func:`save_temporal_weights` into ``layers``.

    Raises ``ValueError`` naming the first layer whose weights do not fit (a file made for another model).
    ``optional``: a key prefix (a module) that may be missing from the file, or present in it and not in
    ``layers``: e.g. a context encoder, when a prediction model starts from a plain video model's layers.
    ``fresh``: a key prefix whose weights are not loaded at all (the module keeps its initial weights).
    """
    path = os.path.join(directory, weights_name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {weights_name} in {directory}")
    loaded = load_file(path)
    expected = layers.state_dict()
    if fresh:
        loaded = {k: v for k, v in loaded.items() if not k.startswith(fresh)}
    if optional:
        loaded = {k: v for k, v in loaded.items() if not k.startswith(optional) or k in expected}
        kept = {k: v for k, v in expected.items() if not k.startswith(optional) or k in loaded}
        layers.load_state_dict(_checked(loaded, kept, path), strict=False)
        return
    layers.load_state_dict(_checked(loaded, expected, path))


def _checked(loaded: dict, expected: dict, path) -> dict:
    for key, tensor in expected.items():
        if key not in loaded:
            raise ValueError(f"temporal file {path} has no weight for layer '{key}' "
                             f"(expected shape {tuple(tensor.shape)}): it was made for another architecture")
        if loaded[key].shape != tensor.shape:
            raise ValueError(f"temporal layer '{key}': file has shape {tuple(loaded[key].shape)}, this model "
                             f"expects {tuple(tensor.shape)}: the file was made for another architecture")
    extra = [k for k in loaded if k not in expected]
    if extra:
        raise ValueError(f"temporal file {path} has layers this model lacks, e.g. '{extra[0]}' "
                         f"{tuple(loaded[extra[0]].shape)}: it was made for another architecture")
    return loaded


def read_json(directory, name: str, what: str) -> dict:
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {name} in {directory}: not a {what} folder")
    with open(path) as f:
        return json.load(f)


class TemporalAttachment(ModelMixin, ConfigMixin):
    """What the video UNet and the temporal decoder share: an image model (the attribute named by
    ``base_attribute``, built from the ``<base_attribute>_config`` argument) with temporal layers in
    ``temporal_layers`` hooked onto it, and its weights frozen. Subclasses build their own modules in
    ``_build()`` and register the hooks in ``_attach()``."""

    base_attribute = ""
    _supports_gradient_checkpointing = True

    @property
    def base(self) -> nn.Module:
        return getattr(self, self.base_attribute)

    def _set_up(self, base: nn.Module) -> None:
        """Called by a subclass's ``__init__``: holds ``base``, builds the temporal modules, hooks them on."""
        setattr(self, self.base_attribute, base)
        self._state = VideoState()
        self._hooks: list = []
        self._build()
        self._attach()

    @classmethod
    def _temporal_option_names(cls) -> list[str]:
        import inspect

        skip = ("self", f"{cls.base_attribute}_config")
        return [p for p in inspect.signature(cls.__init__).parameters if p not in skip]

    @classmethod
    def _attach_to(cls, base: nn.Module, **temporal_options):
        """A model around ``base`` itself (shared, not copied), with new temporal layers."""
        unknown = set(temporal_options) - set(cls._temporal_option_names())
        if unknown:
            raise ValueError(f"unknown {cls.__name__} options {sorted(unknown)}; known: {cls._temporal_option_names()}")
        with torch.device("meta"):  # the image model built here is replaced by `base` at once
            # the base's architecture only: private keys (its load path, versions) are not part of it
            config = {k: v for k, v in base.config.items() if not k.startswith("_")}
            model = cls(**{f"{cls.base_attribute}_config": config}, **temporal_options)
        for handle in model._hooks:
            handle.remove()
        model._set_up(base)
        for name, child in model.named_children():  # the new modules go where the image model is
            if name != cls.base_attribute:
                child.to(device=base.device, dtype=base.dtype)
        return model

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        model = super().from_pretrained(*args, **kwargs)
        model.base.requires_grad_(False)
        return model

    def alphas(self) -> dict[str, float]:
        """Current blend factor of every temporal layer (1 = the image model alone)."""
        return {key: float(layer.mix.alpha.detach()) for key, layer in self.temporal_layers.items()}

    def enable_gradient_checkpointing(self, gradient_checkpointing_func=None) -> None:
        # The image model's blocks are recomputed in the backward pass, hooks included: give the
        # recomputation the same video context as the forward pass had.
        super().enable_gradient_checkpointing(gradient_checkpointing_func or StateCheckpoint(self._state))
