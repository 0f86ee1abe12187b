"""Forward time and activation memory of VideoUNet beside its peers, in one process.

    (a) the image UNet on B*T frames        (b) VideoUNet on the same video
    (c) diffusers' UNetMotionModel.from_unet2d of the same image UNet (AnimateDiff)
    (d) diffusers' UNetSpatioTemporalConditionModel at the same widths (SVD)

Times are medians over repeats after a warm-up, the models taking turns so that drift hits all alike.
Memory is the peak of the tensors alive during one forward pass beyond weights and inputs, counted by
a dispatch mode (allocator-independent, so it does not depend on glibc's moods). Multiply-adds are
counted by torch's FlopCounterMode in the same pass.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=536870912 \\
        python benchmarks/bench_unet.py --base sd15 --latent 32x32 --frames 16

`--params` only counts (meta device, seconds): each model's temporal parameters by part, and the
multiply-adds they add per parameter, which with the time per multiply-add makes the time per parameter.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import weakref

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel, UNetSpatioTemporalConditionModel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count
from torch.utils._pytree import tree_flatten

from videoldm import VideoUNet
from videoldm.commands.options import size_arg as parse_size
from videoldm.models.loading import resolve_unet_config

def cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_macs() -> FlopCounterMode:
    """FlopCounterMode with a formula for the CPU kernel of scaled_dot_product_attention, which torch lacks:
    without it the attention scores and their product with the values count as free on the CPU."""
    return FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention_flops})


ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "2147483647",
             "MALLOC_TOP_PAD_": "536870912"}


class PeakTensorMemory(TorchDispatchMode):
    """Peak bytes of tensor storages created during the block and still alive at the same time."""

    def __init__(self):
        super().__init__()
        self.refs: dict[int, int] = {}  # storage pointer -> live tensors seen on it
        self.sizes: dict[int, int] = {}
        self.current = self.peak = 0

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.current -= self.sizes.pop(key)
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key not in self.refs:
                self.refs[key], self.sizes[key] = 0, storage.nbytes()
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
            self.refs[key] += 1
            weakref.finalize(t, self._release, key)
        return out


def svd_like(cfg: dict, frames: int) -> UNetSpatioTemporalConditionModel:
    """SVD's spatio-temporal UNet with the image UNet's widths, depth and text width."""
    swap = {"CrossAttnDownBlock2D": "CrossAttnDownBlockSpatioTemporal", "DownBlock2D": "DownBlockSpatioTemporal",
            "CrossAttnUpBlock2D": "CrossAttnUpBlockSpatioTemporal", "UpBlock2D": "UpBlockSpatioTemporal"}
    heads = cfg["attention_head_dim"]
    return UNetSpatioTemporalConditionModel(
        sample_size=cfg["sample_size"], in_channels=cfg["in_channels"], out_channels=cfg["out_channels"],
        down_block_types=tuple(swap[b] for b in cfg["down_block_types"]),
        up_block_types=tuple(swap[b] for b in cfg["up_block_types"]),
        block_out_channels=tuple(cfg["block_out_channels"]), layers_per_block=cfg["layers_per_block"],
        cross_attention_dim=cfg["cross_attention_dim"],
        num_attention_heads=tuple(heads) if isinstance(heads, (list, tuple)) else (heads,) * len(cfg["block_out_channels"]),
        num_frames=frames, addition_time_embed_dim=256, projection_class_embeddings_input_dim=768)


def forward_calls(x: torch.Tensor, t: torch.Tensor, ehs: torch.Tensor) -> dict:
    """How each model runs the same video ``x`` (B, C, T, H, W) at timesteps ``t`` (B,) with text ``ehs`` (B, L, D)."""
    B, C, T, H, W = x.shape
    frames = x.transpose(1, 2).reshape(B * T, C, H, W)
    added = torch.tensor([[6.0, 127.0, 0.02]], device=x.device).repeat(B, 1)  # SVD's fps, motion, noise ids
    return {"image": lambda m: m(frames, t.repeat_interleave(T), ehs.repeat_interleave(T, 0)),
            "videoldm": lambda m: m(x, t, ehs),
            "animatediff": lambda m: m(x, t, ehs.repeat_interleave(T, 0)),  # diffusers 0.42: text per frame
            "svd": lambda m: m(x.transpose(1, 2), t, ehs[:, :1], added_time_ids=added)}


def animatediff(unet: UNet2DConditionModel) -> UNetMotionModel:
    cfg = unet.config
    adapter = MotionAdapter(block_out_channels=tuple(cfg.block_out_channels), motion_layers_per_block=cfg.layers_per_block,
                            motion_norm_num_groups=cfg.norm_num_groups)
    return UNetMotionModel.from_unet2d(unet, adapter)


# names that mark a temporal parameter in each model
TEMPORAL_MARKS = {"animatediff": ("motion_modules",), "svd": ("temporal", "time_mixer", "time_pos_embed")}


def is_temporal(name: str, parameter_name: str) -> bool:
    if name == "videoldm":
        return not parameter_name.startswith("unet.")
    return any(m in parameter_name for m in TEMPORAL_MARKS.get(name, ()))


def temporal_params(name: str, model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if is_temporal(name, n))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="sd15", help="image UNet architecture (name, config or folder)")
    p.add_argument("--latent", type=parse_size, default=(32, 32))
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--skip", nargs="*", default=[], choices=["animatediff", "svd"])
    p.add_argument("--params", action="store_true",
                   help="only count, on the meta device (seconds, no timing): each model's temporal parameters by "
                        "part and the multiply-adds they add per parameter")
    p.add_argument("--layer-times", action="store_true",
                   help="also time VideoUNet's temporal layers by kind (forward hooks, no profiler: "
                        "torch.profiler slows some large matrix products several-fold)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = resolve_unet_config(args.base)
    if args.params:
        return parameter_report(cfg, args)
    missing = [k for k, v in ALLOCATOR.items() if os.environ.get(k) != v]
    if missing:
        print(f"warning: allocator variables not set ({', '.join(missing)}); timings will be noisy")
    B, T, (H, W) = args.batch, args.frames, args.latent
    C, D = cfg["in_channels"], cfg["cross_attention_dim"]
    unet = UNet2DConditionModel.from_config(cfg).eval()
    video = VideoUNet.from_unet2d(unet).eval()
    x = torch.randn(B, C, T, H, W)
    ehs = torch.randn(B, 77, D)
    t = torch.full((B,), 500)
    calls = forward_calls(x, t, ehs)
    runs = {"image": (unet, calls["image"]), "videoldm": (video, calls["videoldm"])}
    if "animatediff" not in args.skip:
        runs["animatediff"] = (animatediff(unet).eval(), calls["animatediff"])
    if "svd" not in args.skip:
        runs["svd"] = (svd_like(cfg, T).eval(), calls["svd"])

    stats = {}
    with torch.inference_mode():
        for name, (model, call) in runs.items():
            with PeakTensorMemory() as mem, count_macs() as flops:
                call(model)
            stats[name] = {"params": sum(q.numel() for q in model.parameters()), "macs": flops.get_total_flops() / 2,
                           "temporal": temporal_params(name, model), "peak": mem.peak, "times": []}
            call(model)  # warm-up
        for _ in range(args.repeats):
            for name, (model, call) in runs.items():
                gc.collect()
                start = time.perf_counter()
                call(model)
                stats[name]["times"].append(time.perf_counter() - start)
    report(stats, args)
    if args.layer_times:
        layer_times(video, lambda: video(x, t, ehs), args.repeats)


# what each name part of a temporal parameter is, for the three models' layers
PARTS = {"conv1": "3D-conv blocks", "conv2": "3D-conv blocks", "time_emb_proj": "3D-conv blocks",
         "temporal_res_block": "3D-conv blocks", "ff_in": "feed-forward before attention", "ff": "feed-forward",
         "attn1": "self-attention", "attn2": "cross-attention (motion: 2nd self-attn)",
         "proj_in": "projections in/out", "proj_out": "projections in/out", "time_pos_embed": "position MLP"}


def parameter_report(cfg: dict, args) -> dict[str, dict]:
    """Temporal parameters by part, and multiply-adds added per temporal parameter, counted on the meta device.

    Time per temporal parameter is (multiply-adds per parameter) x (time per multiply-add): this separates
    where the parameters sit (a weight costs one multiply-add per frame and latent pixel of its resolution;
    position MLPs and text projections cost next to none) from how fast the layers run.
    """
    B, T, (H, W) = args.batch, args.frames, args.latent
    C, D = cfg["in_channels"], cfg["cross_attention_dim"]
    with torch.device("meta"):  # shapes only: nothing allocated, nothing computed
        unet = UNet2DConditionModel.from_config(cfg)
        svd = svd_like(cfg, T).to("meta")  # its blend factors are made with torch.Tensor, which ignores the context
        models = {"videoldm": VideoUNet.from_unet2d(unet), "animatediff": animatediff(unet), "svd": svd}
        calls = forward_calls(torch.randn(B, C, T, H, W), torch.full((B,), 500), torch.randn(B, 77, D))
        macs = {}
        with torch.inference_mode():
            for name, model in {"image": unet, **models}.items():
                with count_macs() as flops:
                    calls[name](model)
                macs[name] = flops.get_total_flops() / 2
    parts: dict[str, dict[str, int]] = {}
    for name, model in models.items():
        for n, q in model.named_parameters():
            if not is_temporal(name, n):
                continue
            part = next((PARTS[k] for k in n.split(".") if k in PARTS), "norms, alphas")
            parts.setdefault(part, {}).setdefault(name, 0)
            parts[part][name] += q.numel()
    print(f"\nbase {args.base}: temporal parameters by part (M), {T} frames at latent {H}x{W}")
    print(f"{'part':<42}" + "".join(f"{n:>13}" for n in models))
    for part in sorted(parts, key=lambda k: -sum(parts[k].values())):
        print(f"{part:<42}" + "".join(f"{parts[part].get(n, 0) / 1e6:>13.1f}" for n in models))
    totals = {n: sum(parts[p].get(n, 0) for p in parts) for n in models}
    print(f"{'total':<42}" + "".join(f"{totals[n] / 1e6:>13.1f}" for n in models))
    per = {n: (macs[n] - macs["image"]) / totals[n] / (B * T) for n in models}
    print(f"{'MACs x image':<42}" + "".join(f"{macs[n] / macs['image']:>13.3f}" for n in models))
    print(f"{'added MACs per temporal parameter per frame':<42}" + "".join(f"{per[n]:>13.1f}" for n in models))
    print(f"\n(the image UNet: {macs['image'] / (B * T) / 1e9:.2f} GMAC per frame; a weight at the highest resolution "
          f"costs {H * W} multiply-adds per frame)")
    return {"parts": parts, "totals": totals, "macs": macs, "macs_per_parameter": per}


def layer_times(video: VideoUNet, call, repeats: int) -> dict[str, tuple[float, float]]:
    """Seconds and multiply-adds per kind of temporal layer (summed over the network), median of repeats."""
    kinds = {key: type(layer).__name__ for key, layer in video.temporal_layers.items()}
    spent: dict[str, float] = {}
    started: dict[str, float] = {}

    def hooks(key):
        def pre(module, args):
            started[key] = time.perf_counter()

        def post(module, args, output):
            spent[kinds[key]] = spent.get(kinds[key], 0.0) + time.perf_counter() - started[key]
        return pre, post

    handles = []
    for key, layer in video.temporal_layers.items():
        pre, post = hooks(key)
        handles += [layer.register_forward_pre_hook(pre), layer.register_forward_hook(post)]
    with torch.inference_mode():
        with count_macs() as flops:
            call()
        macs: dict[str, float] = {}
        for name, counts in flops.get_flop_counts().items():
            parts = name.split(".")  # "VideoUNet.temporal_layers.<key>" is one whole layer
            if len(parts) == 3 and parts[1] == "temporal_layers" and parts[2] in kinds:
                macs[kinds[parts[2]]] = macs.get(kinds[parts[2]], 0.0) + sum(counts.values()) / 2
        runs = []
        for _ in range(repeats):
            spent.clear()
            gc.collect()
            call()
            runs.append(dict(spent))
    for handle in handles:
        handle.remove()
    result = {kind: (macs[kind], statistics.median(r[kind] for r in runs)) for kind in sorted(macs)}
    print("\nVideoUNet temporal layers, by kind (forward hooks; median of repeats)")
    for kind, (n, seconds) in result.items():
        print(f"  {kind:<20} {n / 1e9:>7.1f} GMAC {seconds:>7.3f} s {n / 1e9 / seconds:>7.1f} GMAC/s")
    return result


def report(stats: dict, args) -> None:
    base = stats["image"]
    t0, m0 = statistics.median(base["times"]), base["peak"]
    mac_ratio = stats["videoldm"]["macs"] / base["macs"]
    print(f"\nbase {args.base}, batch {args.batch} x {args.frames} frames, latent {args.latent[0]}x{args.latent[1]}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, median of {args.repeats} after warm-up")
    print(f"VideoUNet multiply-adds: {mac_ratio:.3f}x the image UNet's (target: time ratio <= {1.1 * mac_ratio:.2f})\n")
    head = f"{'model':<12}{'params':>9}{'temporal':>10}{'MACs x':>8}{'time s':>9}{'x image':>9}{'peak MiB':>10}" \
           f"{'x image':>9}" \
           f"{'extra s/100M temporal':>23}{'extra MiB/100M temporal':>25}{'extra ms/GMAC':>15}"
    print(head)
    print("-" * len(head))
    for name, s in stats.items():
        tm = statistics.median(s["times"])
        per_t = "" if not s["temporal"] else f"{(tm - t0) / (s['temporal'] / 1e8):>23.3f}"
        per_m = "" if not s["temporal"] else f"{(s['peak'] - m0) / 2**20 / (s['temporal'] / 1e8):>25.1f}"
        # time per multiply-add the temporal layers add: how fast they run, apart from how many there are
        extra_macs = s["macs"] - base["macs"]
        per_mac = "" if not s["temporal"] or extra_macs <= 0 else f"{(tm - t0) / (extra_macs / 1e9) * 1e3:>15.2f}"
        print(f"{name:<12}{s['params'] / 1e6:>8.1f}M{s['temporal'] / 1e6:>9.1f}M{s['macs'] / base['macs']:>8.2f}"
              f"{tm:>9.2f}{tm / t0:>9.2f}"
              f"{s['peak'] / 2**20:>10.0f}{s['peak'] / m0:>9.2f}{per_t:>23}{per_m:>25}{per_mac:>15}")
    print(f"\nimage UNet: {t0 / (base['macs'] / 1e9) * 1e3:.2f} ms per GMAC")


if __name__ == "__main__":
    main()
