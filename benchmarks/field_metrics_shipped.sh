#!/usr/bin/env bash
# The weight-free field metrics (docs/metrics.md's table) of the shipped models' videos against clips of
# their training data: 4 driving and 4 text-to-video clips from `videoldm generate` (2 s at 8 fps), 4
# clips each of `data synth` driving/shapes at the training sizes. float32: `generate --dtype auto` picks bf16
# on CPUs with native bf16, where the driving stack stopped with a dtype error (2026-12-07). About 15 min on a
# 2-core CPU shared with training.
# Usage: benchmarks/field_metrics_shipped.sh [WORK_DIR]   (default /tmp/videoldm-field)
set -euo pipefail
V=${VIDEOLDM:-videoldm}
W=${1:-/tmp/videoldm-field}
mkdir -p "$W/gen-driving" "$W/gen-text"
prompts=("a red circle moving left on a dark background" "a blue square moving up on a light background"
         "a green triangle moving right on a dark background" "a yellow circle moving down on a light background")
daytimes=(day night day night)
crowds=(low medium high medium)
for i in 0 1 2 3; do
  test -f "$W/gen-text/$i.mp4" || { $V generate --dtype float32 --prompt "${prompts[$i]}" --seed "$i" --out "$W/run" >/dev/null &&
    mv "$W/run/text.mp4" "$W/gen-text/$i.mp4"; }
  test -f "$W/gen-driving/$i.mp4" || { $V generate --dtype float32 --daytime "${daytimes[$i]}" --crowdedness "${crowds[$i]}" \
    --seed "$i" --out "$W/run" >/dev/null && mv "$W/run/driving.mp4" "$W/gen-driving/$i.mp4"; }
done
test -d "$W/data-shapes" || $V data synth --kind shapes --num 4 --frames 16 --size 64x64 --fps 8 --out "$W/data-shapes" >/dev/null
test -d "$W/data-driving" || $V data synth --kind driving --num 4 --frames 16 --size 64x128 --fps 8 --out "$W/data-driving" >/dev/null
for set in gen-text data-shapes gen-driving data-driving; do
  $V evaluate-videos "$W/$set" --metrics flicker,warping,dynamic_degree --no-progress --out "$W/report-$set"
done
