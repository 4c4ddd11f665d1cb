"""The cost model of generation: tokens, FLOPs and bytes moved per stage and frame, and the time they predict.

    python -m helix4d.bench.cost            # demo and TRELLIS.2 (512) presets, 1 and 16 frames, predicted H100 seconds
    python -m helix4d.bench.cost --json

FLOPs are 2 per multiply-add of every matmul, convolution and attention product (QKᵀ and PV), exactly what
`torch.utils.flop_counter.FlopCounterMode` counts (tests/test_bench.py holds the formulas to it on small models);
norms, activations, softmax and RoPE are not counted. Dense modules (the image encoders, the stage-1 decoders) are
counted by running them on the meta device under `FlopCounterMode`; the flows and the sparse decoders, whose cost
depends on how many tokens each frame holds and which frames see which, by the formulas of
`helix4d.bench.cost_formulas`.

Bytes are what a part must move through accelerator memory at least: the weights once per pass, and each
activation written once and read once (`cost_formulas.ACTIVATIONS_PER_TOKEN_BLOCK`), in the flows' dtype; for the
sparse convolutions also the neighbour indices and, on the reference path, its gathered (N, 27·C_in) copy.

A part's predicted time is a roofline: max(FLOPs / sustained rate of its kind, bytes / sustained bandwidth), with
the rates of `cost_formulas.H100` (assumed or measured, as each says). Kernel launch overhead is left out, so small
workloads (one frame, the geometry stage) will take longer than predicted.

Token counts are inputs: those typical of TRELLIS.2 at 512 (`helix4d.bench.workload`), and the demo's measured ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import asdict

import torch

from helix4d.bench.cost_formulas import (
    H100,
    Accelerator,
    StageCost,
    dense_stage,
    flow_stage,
    helix4d_decoder,
    meta_flops,
    parameter_count,
    trellis2_decoder,
)
from helix4d.bench.workload import TRELLIS2_SAMPLING, Trellis2Size, shell_voxels, trellis2_size
from helix4d.models.flow import FlowTransformer
from helix4d.settings import WINDOW
from helix4d.trellis2.ss_vae import Trellis2SSDecoder

STAGES = ("encode_images", "ss", "ss_decode", "geometry", "material", "decode")
# The demo model's voxels per frame at its decoder's levels 8³ (latent), 16³ and 32³ (O-Voxels): measured on
# examples/split.mp4, 16 frames, seed 0 (docs/performance.md).
DEMO_VOXELS = (63.6, 235.0, 918.2)


def trellis2_costs(
    frames: int,
    conv_backend: str = "ocnn",
    size: Trellis2Size | None = None,
    steps: int | None = None,
    window: int = WINDOW,
) -> list[StageCost]:
    """TRELLIS.2 (default: its 512 models, DINOv3 ViT-L/16) in bf16 on `shell_voxels` tokens; `steps` replaces
    its samplers' 12."""
    size = size or trellis2_size("full")
    coarse, masks = shell_voxels(size.resolution, size.levels, frames)
    voxels = [sum(len(c) for c in coarse)] + [int(m.sum()) for m in masks]  # all frames, per level
    latent_tokens = [len(c) for c in coarse]
    try:
        from transformers import DINOv3ViTConfig, DINOv3ViTModel
    except ImportError:  # transformers is optional (the trellis2 extra): the image encoder's cost is then unknown
        flops = weights = float("nan")
    else:
        dino, pixels = DINOv3ViTConfig(**size.dino), torch.empty(1, 3, size.image_size, size.image_size)
        flops = meta_flops(lambda: DINOv3ViTModel(dino), lambda m: m(pixel_values=pixels.to("meta")))
        weights = 2 * parameter_count(lambda: DINOv3ViTModel(dino))
    costs = [dense_stage("encode_images", flops, weights, frames, size.cond_tokens)]
    r = size.ss_decoder.latent_resolution
    for stage, tokens in (("ss", [r**3] * frames), ("geometry", latent_tokens), ("material", latent_tokens)):
        config = size.flows[stage]
        sampler = (
            TRELLIS2_SAMPLING[stage] if steps is None else dataclasses.replace(TRELLIS2_SAMPLING[stage], steps=steps)
        )
        weights = 2 * parameter_count(lambda c=config: FlowTransformer(c))
        costs.append(flow_stage(stage, config, tokens, sampler, size.cond_tokens, window, weights))
        if stage == "ss":
            latent = torch.empty(1, size.ss_decoder.latent_channels, r, r, r)
            flops = meta_flops(lambda: Trellis2SSDecoder(size.ss_decoder), lambda m: m.decode(latent.to("meta")))
            weights = 2 * parameter_count(lambda: Trellis2SSDecoder(size.ss_decoder))
            costs.append(dense_stage("ss_decode", flops, weights, frames, r**3))
    shape = trellis2_decoder(size.shape_decoder, voxels, conv_backend, frames)
    texture = trellis2_decoder(size.texture_decoder, voxels, conv_backend, frames)
    for a, b in zip(shape.parts, texture.parts):
        a.add(b.flops, b.bytes)
    costs.append(shape)
    return costs


def demo_costs(frames: int, voxels_per_level: tuple[float, ...] = DEMO_VOXELS) -> list[StageCost]:
    """The shipped demo model (float32, on a CPU), with tokens per frame `voxels_per_level` at its decoder's levels
    (8³: the latent tokens of stages 2-3, 16³, 32³: the O-Voxels)."""
    from helix4d.models.image_encoder import ImageEncoder
    from helix4d.models.ss_vae import SSVAE
    from helix4d.pipeline.config import preset

    p = preset("demo")
    enc, ss, sampling = p.components["image_encoder"], p.components["ss_vae"], p.pipeline.sampling
    with torch.device("meta"):
        r = SSVAE(ss).latent_resolution  # stage 1's dense latent grid side (below the occupancy grid's)
    image = torch.empty(1, 4, enc.image_size, enc.image_size)
    cond = enc.grid**2 + 1
    encoders = 2  # the shipped model has stage 1's own image encoder beside the shared one, of the same size
    costs = [
        dense_stage(
            "encode_images",
            encoders * meta_flops(lambda: ImageEncoder(enc), lambda m: m(image.to("meta"))),
            encoders * 4 * parameter_count(lambda: ImageEncoder(enc)),
            frames,
            cond,
        )
    ]
    tokens = [round(voxels_per_level[0])] * frames
    for stage, n in (("ss", [r**3] * frames), ("geometry", tokens), ("material", tokens)):
        config = p.components[f"{stage}_flow"]
        weights = 4 * parameter_count(lambda c=config: FlowTransformer(c))
        costs.append(flow_stage(stage, config, n, sampling[stage], cond, WINDOW, weights, dtype_bytes=4))
        if stage == "ss":
            latent = torch.empty(1, ss.latent_channels, r, r, r)
            flops = meta_flops(lambda: SSVAE(ss), lambda m: m.decode(latent.to("meta")))
            costs.append(dense_stage("ss_decode", flops, 4 * parameter_count(lambda: SSVAE(ss)), frames, r**3))
    voxels = [round(v * frames) for v in voxels_per_level]
    geometry = helix4d_decoder(p.components["geometry_vae"], voxels, frames)
    material = helix4d_decoder(p.components["material_vae"], voxels, frames)
    for a, b in zip(geometry.parts, material.parts):
        a.add(b.flops, b.bytes)
    costs.append(geometry)
    return costs


def cost_rows(costs: list[StageCost], accelerator: Accelerator | None) -> list[dict]:
    rows = []
    for c in costs:
        row = {
            "stage": c.stage,
            "frames": c.frames,
            "tokens_per_frame": round(c.tokens_per_frame, 1),
            "passes": c.passes,
            "tflop": c.flops / 1e12,
            "tflop_per_frame": c.flops / 1e12 / c.frames,
            "gb_moved": c.bytes / 1e9,
            "largest_copy_gb": c.largest_copy_gb,
            "parts": [asdict(p) for p in c.parts],
        }
        if accelerator is not None:
            row["predicted_s"] = c.seconds(accelerator)
        rows.append(row)
    return rows


def cost_table(rows: list[dict], title: str) -> str:
    lines = [
        f"{title}",
        "| stage | F | tokens/frame | passes | TFLOP | TFLOP/frame | GB moved | predicted s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        predicted = f"{r['predicted_s']:.2f}" if "predicted_s" in r else "–"
        lines.append(
            f"| {r['stage']} | {r['frames']} | {r['tokens_per_frame']:g} | {r['passes']} | {r['tflop']:.3g} | "
            f"{r['tflop_per_frame']:.3g} | {r['gb_moved']:.3g} | {predicted} |"
        )
    if rows and "predicted_s" in rows[0]:
        lines.append(
            f"| total | {rows[0]['frames']} | | | {sum(r['tflop'] for r in rows):.3g} | | "
            f"{sum(r['gb_moved'] for r in rows):.3g} | {sum(r['predicted_s'] for r in rows):.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="1,16", help="comma-separated frame counts")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    frames = [int(f) for f in args.frames.split(",")]
    out: dict = {"accelerator": asdict(H100), "trellis2_512": {}, "trellis2_512_reference_decode": {}, "demo": {}}
    for f in frames:
        out["trellis2_512"][f] = cost_rows(trellis2_costs(f), H100)
        out["trellis2_512_reference_decode"][f] = cost_rows([trellis2_costs(f, "reference")[-1]], H100)
        out["demo"][f] = cost_rows(demo_costs(f), None)
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"predicted on {H100.name}: {H100.basis}\n")
    for f in frames:
        print(cost_table(out["trellis2_512"][f], f"TRELLIS.2 at 512, {f} frame(s), ocnn sparse convolution") + "\n")
        print(cost_table(out["trellis2_512_reference_decode"][f], "the decode with the reference convolution") + "\n")
    for f in frames:
        print(cost_table(out["demo"][f], f"demo model, {f} frame(s), float32 (no prediction: it runs on CPUs)") + "\n")


if __name__ == "__main__":
    main()
