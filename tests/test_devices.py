"""Device and precision: chosen by the hardware for `auto`, and every tensor of generation made in the models' dtype.

No GPU here, so dtype correctness is proven in float64: every model is cast to float64 and a dispatch mode
records each op whose floating inputs mix float64 with another float type (a tensor made in the default
float32 and never cast). A tensor made on the wrong device shows the same way on a GPU; the float64 run
finds the places that make tensors without following the model.
"""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import run_stage


class MixedDtypes(TorchDispatchMode):
    """Records ops (by name) whose floating tensor inputs of more than one element mix float64 and others."""

    def __init__(self):
        super().__init__()
        self.mixed = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs or {}))
                   if isinstance(a, torch.Tensor) and a.is_floating_point() and a.numel() > 1]
        dtypes = {t.dtype for t in tensors}
        if torch.float64 in dtypes and len(dtypes) > 1:
            self.mixed.add(str(func))
        return func(*args, **(kwargs or {}))


def test_generation_in_float64_makes_no_tensor_of_another_precision(chain, context_models, tmp_path):
    from test_upsampling import pixel_upsampler
    from videoldm import VideoLDMPipeline, VideoLDMStack
    from videoldm.inference.rollout import rollout

    _, _, _, temporal = chain
    prediction, interpolation = context_models
    text = VideoLDMPipeline.from_pretrained(temporal).to(dtype=torch.float64)
    stack = VideoLDMStack.from_pretrained(prediction, interpolator=interpolation).to(dtype=torch.float64)
    upsampler = pixel_upsampler().video().to(dtype=torch.float64)
    with MixedDtypes() as mode:
        frames = text(["a red circle"], num_frames=3, num_inference_steps=2, progress=False).frames
        context = text.encode(frames)
        long = stack("a red circle", num_frames=5, num_clips=2, interpolations=1, num_inference_steps=2,
                     progress=False).frames
        rollout(stack.keyframes, "a red circle", 2, tmp_path / "r.mp4", num_frames=5, num_inference_steps=2,
                interpolator=stack.interpolator, progress=False)
        up = upsampler(frames[:, :2, :, :8, :8], num_inference_steps=2, tile_size=16, tile_overlap=4,
                       progress=False).frames
    assert mode.mixed == set(), f"ops mixing float64 with another float type: {sorted(mode.mixed)}"
    # results come back as float32 frames, on the CPU, whatever the models ran in
    assert frames.dtype == long.dtype == up.dtype == torch.float32 and context.dtype == torch.float32
    assert long.shape[1] == (5 + 3 - 1) * 2 + 1 and up.shape[-2:] == (32, 32)


def test_a_float64_pipeline_matches_float32_to_float32_precision(chain):
    """The cast pipeline computes the same video: nothing was left in another dtype by accident."""
    from videoldm import VideoLDMPipeline

    _, _, _, temporal = chain
    pipe = VideoLDMPipeline.from_pretrained(temporal)
    single = pipe(["a red circle"], num_frames=3, num_inference_steps=2, progress=False).frames
    double = pipe.to(dtype=torch.float64)(["a red circle"], num_frames=3, num_inference_steps=2, progress=False).frames
    assert pipe.dtype == torch.float64
    assert torch.allclose(single, double, atol=1e-3)


def test_auto_chooses_by_the_hardware(monkeypatch):
    import videoldm.inference.devices as devices

    cpu = torch.device("cpu")
    for native, precision, dtype in ((False, "no", torch.float32), (True, "bf16", torch.bfloat16)):
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
        assert devices.resolve_mixed_precision("auto", cpu)[0] == precision
        assert devices.resolve_dtype("auto", cpu) == dtype
    assert devices.resolve_mixed_precision("bf16", cpu) == ("bf16", "as the recipe says")
    assert devices.resolve_dtype("float16", cpu) == torch.float16
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU here"):
            devices.resolve_device("cuda")
        assert devices.resolve_device("auto") in (cpu, torch.device("mps"))
    with pytest.raises(ValueError, match="dtype must be auto or one of"):
        devices.resolve_dtype("float8", cpu)


def test_this_machines_flags_decide_bf16(monkeypatch, tmp_path):
    import videoldm.inference.devices as devices

    flags = (tmp_path / "cpuinfo")
    for line, native in (("flags\t: fpu avx2 avx512f", False), ("flags\t: avx512f avx512_bf16", True),
                         ("flags\t: amx_bf16 amx_tile", True), ("Features\t: fp asimd bf16", True)):
        flags.write_text(f"processor\t: 0\n{line}\n")
        monkeypatch.setattr(devices, "Path", lambda _: flags)
        devices.cpu_has_native_bf16.cache_clear()
        assert devices.cpu_has_native_bf16() is native
    devices.cpu_has_native_bf16.cache_clear()


def test_recipes_say_no_and_auto_as_words(tmp_path):
    from videoldm.training.config import load_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text("stage: temporal\nmodel: {image_model: x}\nrun: {mixed_precision: no}\n")
    assert load_config(recipe).run.mixed_precision == "no"
    assert load_config(recipe, ["run.mixed_precision=auto"]).run.mixed_precision == "auto"
    assert load_config(recipe, ["run.mixed_precision=no", "run.gradient_checkpointing=true"]).run.gradient_checkpointing
    with pytest.raises(ValueError, match="must be auto, no, bf16 or fp16"):
        load_config(recipe, ["run.mixed_precision=fp8"])


def test_the_trainer_records_what_auto_chose(chain, tmp_path, monkeypatch):
    import json

    import videoldm.inference.devices as devices

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    tmp, data, image, _ = chain
    trainer = run_stage(tmp_path, "t", "temporal", data, {"image_model": str(image)}, mixed_precision="auto")
    assert trainer.accelerator.mixed_precision == "no"
    trainer.train()
    assert json.loads((tmp_path / "t" / "config.json").read_text())["run"]["mixed_precision"] == "no"


def test_rotary_frequencies_stay_float32_when_the_model_is_cast():
    """Casting a model to bf16 must not round the time frequencies (found by the float64 run above)."""
    from videoldm.models.temporal_layers import RotaryTimeEmbedding

    rotary = RotaryTimeEmbedding(64)
    before = rotary.rotations(200, "cpu")
    rotary.to(torch.bfloat16)
    assert torch.equal(rotary.rotations(200, "cpu"), before)
