#!/usr/bin/env bash
# Train every part of a preset in order, from a dataset already built at data/<preset>:
#   VAEs -> latent pre-encoding -> image encoder (condition image -> coarse occupancy) -> static flows (F = 1)
#   -> temporal fine-tunes.
# Outputs go to runs/<preset>/ (the model folder is runs/<preset>/model). Every step resumes if interrupted.
# Scale out by prefixing the train steps with torchrun, e.g. TRAIN="torchrun --nproc_per_node 8 -m helix4d train".
set -euo pipefail
preset=${1:?usage: scripts/train_recipe.sh tiny|demo}
configs="$(cd "$(dirname "$0")/.." && pwd)/configs/$preset"
train=${TRAIN:-helix4d train}
device=${DEVICE:-auto}
model=runs/$preset/model
[ -f "$model/pipeline.json" ] || helix4d model init --preset "$preset" --out "$model"
for c in "$configs"/0[1-3]_*.json; do $train "$c" --resume --device "$device"; done
helix4d model encode-latents --model "$model" --data "data/$preset" --out "runs/$preset/latents" --device "$([ "$device" = auto ] && echo cpu || echo "$device")"
for c in "$configs"/[0-9][0-9]_*.json; do
  case "$(basename "$c")" in 0[1-3]_*) continue ;; esac  # the VAEs, trained above
  $train "$c" --resume --device "$device"
done
echo "trained model: $model"
