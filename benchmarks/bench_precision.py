"""Training speed by precision: the shapes temporal recipe (configs/shapes/temporal.yaml) in bf16 autocast, in
float32 (`no`) and with `mixed_precision: auto`, same data, one process each, one after the other.

Prints what `auto` chose on this machine and the median samples/s after two warm-up steps. Where the CPU has no
native bf16 (no avx512_bf16/amx_bf16), bf16 autocast is emulated; `auto` then trains in float32.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=536870912 \\
      .venv/bin/python benchmarks/bench_precision.py
"""
from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(precision: str, steps: int, data: Path, image_model: str, out: Path) -> dict:
    overrides = {"data.path": data, "data.latents": "null", "model.image_model": image_model,
                 "run.mixed_precision": precision, "run.max_steps": steps, "run.output_dir": out,
                 "run.checkpoint_every": 0, "run.sample_every": 0, "run.num_samples": 1, "run.sample_steps": 1,
                 "optim.ema_decay": "null"}
    command = [sys.executable, "-m", "videoldm", "train", str(ROOT / "configs/shapes/temporal.yaml")]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{precision}: {done.stderr[-2000:]}")
    chose = next((line for line in (done.stdout + done.stderr).splitlines() if "mixed_precision auto" in line), "")
    rows = list(csv.DictReader(open(out / "log.csv")))
    speeds = [float(r["samples_per_s"]) for r in rows[2:]]
    return {"median": statistics.median(speeds), "low": min(speeds), "high": max(speeds), "steps": len(rows),
            "chose": chose.strip()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bf16-steps", type=int, default=8, help="steps in bf16 (slow where it is emulated)")
    p.add_argument("--steps", type=int, default=30, help="steps in float32 and with mixed_precision auto")
    p.add_argument("--image-model", default=str(ROOT / "src/videoldm/shipped/shapes/image"))
    args = p.parse_args()

    from videoldm.inference.devices import cpu_has_native_bf16

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "shapes"
        subprocess.run([sys.executable, "-m", "videoldm", "data", "synth", "--kind", "shapes", "--num", "64",
                        "--frames", "16", "--size", "64x64", "--fps", "8", "--out", str(data)], check=True,
                       capture_output=True)
        results = {precision: run(precision, steps, data, args.image_model, Path(tmp) / precision)
                   for precision, steps in (("bf16", args.bf16_steps), ("no", args.steps), ("auto", args.steps))}
    print(f"CPU with native bf16: {cpu_has_native_bf16()}; {results['auto']['chose']}")
    print("| precision | steps | samples/s (median after 2 warm-up steps) | range |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['steps']} | {r['median']:.4f} | {r['low']:.4f}-{r['high']:.4f} |")
    print(f"auto / bf16: {results['auto']['median'] / results['bf16']['median']:.2f}x; "
          f"auto / float32: {results['auto']['median'] / results['no']['median']:.2f}x")


if __name__ == "__main__":
    main()
