"""The benchmark scripts are not run by the suite (they time things), but what they import from the
package must exist: a renamed or moved helper would otherwise break them silently."""
import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_name_a_benchmark_imports_from_videoldm_exists(script):
    tree = ast.parse(script.read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and (node.module or "").split(".")[0] == "videoldm"]
    for node in imports:  # module level and inside functions alike
        module = importlib.import_module(node.module)
        for alias in node.names:
            submodule = hasattr(module, "__path__") and importlib.util.find_spec(f"{node.module}.{alias.name}")
            assert hasattr(module, alias.name) or submodule, \
                f"{script.name}:{node.lineno}: {node.module} has no {alias.name}"


def _bench_unet():
    spec = importlib.util.spec_from_file_location("bench_unet", SCRIPTS[0].parent / "bench_unet.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_unet_parameter_report_splits_every_temporal_parameter(capsys):
    """--params: the parts of each model add up to its temporal parameters, and the MACs are the real pass's."""
    import argparse

    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from videoldm import VideoUNet
    from videoldm.models.loading import resolve_unet_config

    bench = _bench_unet()
    cfg = resolve_unet_config("tiny")
    report = bench.parameter_report(cfg, argparse.Namespace(base="tiny", batch=1, frames=4, latent=(8, 8)))

    unet = UNet2DConditionModel.from_config(cfg)
    video = VideoUNet.from_unet2d(unet)
    assert report["totals"]["videoldm"] == sum(p.numel() for p in video.trainable_parameters())
    assert report["totals"]["animatediff"] == bench.temporal_params("animatediff", bench.animatediff(unet))
    assert report["totals"]["svd"] == bench.temporal_params("svd", bench.svd_like(cfg, 4))
    assert set(report["parts"]["position MLP"]) == {"svd"}  # relative rotary positions have no weights
    assert "videoldm" not in report["parts"]["feed-forward before attention"]
    x, ehs, t = torch.randn(1, cfg["in_channels"], 4, 8, 8), torch.randn(1, 77, cfg["cross_attention_dim"]), torch.full((1,), 10)
    with torch.inference_mode(), bench.count_macs() as flops:
        video(x, t, ehs)
    assert report["macs"]["videoldm"] == flops.get_total_flops() / 2  # the meta pass counts what a real one does
    with torch.inference_mode(), FlopCounterMode(display=False) as plain:
        video(x, t, ehs)
    assert plain.get_total_flops() < flops.get_total_flops()  # torch alone misses the CPU attention kernel
    assert "added MACs per temporal parameter" in capsys.readouterr().out


def test_bench_unet_layer_times_count_every_temporal_multiply_add(capsys):
    """The per-kind split must add up to what the temporal layers add over the image UNet."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from videoldm import VideoUNet
    from videoldm.models.loading import resolve_unet_config

    bench = _bench_unet()
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(resolve_unet_config("tiny")).eval()
    video = VideoUNet.from_unet2d(unet).eval()
    cfg = unet.config
    x = torch.randn(1, cfg.in_channels, 4, 8, 8)
    ehs = torch.randn(1, 5, cfg.cross_attention_dim)
    t = torch.full((1,), 10)
    result = bench.layer_times(video, lambda: video(x, t, ehs), repeats=2)

    assert set(result) == {"TemporalTransformer", "TemporalResBlock"}
    with torch.inference_mode(), bench.count_macs() as image_flops:
        unet(x.transpose(1, 2).flatten(0, 1), t.repeat(4), ehs.repeat_interleave(4, 0))
    with torch.inference_mode(), bench.count_macs() as video_flops:
        video(x, t, ehs)
    added = (video_flops.get_total_flops() - image_flops.get_total_flops()) / 2
    assert sum(macs for macs, _ in result.values()) == pytest.approx(added, rel=1e-9)
    assert all(seconds > 0 for _, seconds in result.values())
    assert "TemporalTransformer" in capsys.readouterr().out


def test_the_gpu_check_runs_its_dry_run_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.py on the tiny architecture: every model's training step and both pipelines run,
    and the figures it would print on a GPU are there."""
    import json
    import subprocess
    import sys

    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(SCRIPTS[0].parent / "gpu_check.py"), "--dry-run", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert [r["model"] for r in figures["train_steps"]] == ["image", "videoldm", "animatediff", "svd"]
    assert all(r["step_s"] > 0 and r["gmacs"] > 0 and r["trained_params"] > 0 for r in figures["train_steps"])
    assert [r["finite"] for r in figures["pipelines"]] == [True, True]
    assert "| videoldm |" in done.stdout
