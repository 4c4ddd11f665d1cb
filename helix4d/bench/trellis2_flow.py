"""One sampling step of a random full-size TRELLIS.2 stage-1 flow: windowed (r + anchor) vs full attention.

    python -m helix4d.bench.trellis2_flow --device cuda                   # 16 frames × 4096 tokens, bf16, 30 blocks
    python -m helix4d.bench.trellis2_flow --device cpu --depth 1 --grid 4 --frames 4 --dtype float32   # smoke run

A step is what the sampler does per Euler step for frames 1..F-1: two forward passes (conditional and
unconditional, CFG) that read the anchor's cached keys/values (filled once beforehand, not timed). Weights are
random (the cost does not depend on them). Prints a table: ms per step and peak accelerator memory.
"""

from __future__ import annotations

import argparse
import time

import torch

from helix4d.models.flow import FlowTransformer
from helix4d.nn.blocks import FrameAttention
from helix4d.sparse import SparseTensor
from helix4d.trellis2.presets import COND_DIM, trellis2_flow_config

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def step_cost(
    model: FlowTransformer,
    frames: int,
    grid: int,
    window: int,
    backend: str,
    repeats: int,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[float, float]:
    """(ms per CFG step, peak GB) for frames 1..F-1 of a dense grid³ latent per frame, anchor cached."""
    xyz = torch.stack(torch.meshgrid(*(torch.arange(grid),) * 3, indexing="ij"), -1).reshape(-1, 3).to(device)
    n = xyz.shape[0]
    feats = [torch.randn(n, 8, device=device, dtype=dtype) for _ in range(frames)]
    cond = torch.randn(frames, 1029, COND_DIM, device=device, dtype=dtype)  # DINOv3 tokens per frame
    cache = model.empty_anchor_cache()
    anchor = SparseTensor.from_frames([xyz], feats[:1])
    model(anchor, torch.zeros(n, device=device), cond[:1], FrameAttention(window, cache=cache, backend=backend))
    rest = SparseTensor.from_frames([xyz] * frames, feats).select_frames(list(range(1, frames)))
    t = torch.full((rest.num_tokens,), 0.5, device=device)

    def one_step() -> None:
        for c in (cond[1:], torch.zeros_like(cond[1:])):
            model(rest, t, c, FrameAttention(window, cache=cache, anchor_included=False, backend=backend))

    one_step()  # warm-up
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(repeats):
        one_step()
    sync(device)
    ms = (time.perf_counter() - start) / repeats * 1e3
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return ms, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--frames", type=int, default=16, help="frames including the anchor")
    parser.add_argument("--grid", type=int, default=16, help="latent grid side (16: 4096 tokens per frame)")
    parser.add_argument("--depth", type=int, default=30, help="blocks (30 = full size)")
    parser.add_argument("--window", type=int, default=1, help="window radius r of the windowed run")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES), help="weights and activations")
    parser.add_argument("--backend", default="loop", help="attention backend: loop, flex (CUDA) or dense")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per setting")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    with torch.device(device):
        model = FlowTransformer(trellis2_flow_config("ss", depth=args.depth)).to(dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    print(
        f"stage-1 flow: {params / 1e9:.3f} B parameters, {args.depth} blocks, {args.dtype}, {device}, "
        f"{args.frames} frames x {args.grid**3} tokens, backend {args.backend}"
    )
    print(f"{'attention':<24}{'window':>8}{'ms/step':>12}{'peak GB':>10}")
    for label, window in ((f"r = {args.window} + anchor", args.window), ("full", args.frames)):
        ms, peak = step_cost(model, args.frames, args.grid, window, args.backend, args.repeats, device, dtype)
        print(f"{label:<24}{window:>8}{ms:>12.1f}{peak:>10.2f}")


if __name__ == "__main__":
    main()
