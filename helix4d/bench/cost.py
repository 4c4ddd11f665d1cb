"""The cost model of generation: tokens, FLOPs and bytes moved per stage and frame, and the time they predict.

    python -m helix4d.bench.cost            # demo and TRELLIS.2 (512) presets, 1 and 16 frames, predicted H100 seconds
    python -m helix4d.bench.cost --json

FLOPs are 2 per multiply-add of every matmul, convolution and attention product (QKᵀ and PV), exactly what
`torch.utils.flop_counter.FlopCounterMode` counts (tests/test_bench.py holds the formulas to it on small models);
norms, activations, softmax and RoPE are not counted. Dense modules (the image encoders, the stage-1 decoders) are
counted by running them on the meta device under `FlopCounterMode`; the flows and the sparse decoders, whose cost
depends on how many tokens each frame holds and which frames see which, by the formulas below.

Bytes are what a part must move through accelerator memory at least: the weights once per pass, and each
activation written once and read once (`ACTIVATIONS_PER_TOKEN_BLOCK`), in the flows' dtype; for the sparse
convolutions also the neighbour indices and, on the reference path, its gathered (N, 27·C_in) copy.

A part's predicted time is a roofline: max(FLOPs / sustained rate of its kind, bytes / sustained bandwidth), with
the rates of `H100` (assumed or measured, as each says). Kernel launch overhead is left out, so small workloads (one
frame, the geometry stage) will take longer than predicted.

Token counts are inputs. `shell_voxels` makes the ones typical of TRELLIS.2 at 512: TRELLIS.2 encodes a 1024³
asset into ~9.6 K latent tokens on the 64³ grid (its paper); a surface at half the resolution has a quarter of
the voxels, ~2.4 K on the 32³ grid, and each ×2 decoder level multiplies them by ~4, to ~6 × 10⁵ at 512³.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from helix4d.errors import InputError
from helix4d.models.flow import FlowConfig, FlowTransformer
from helix4d.models.sc_vae import SCVAEConfig
from helix4d.pipeline.sampler import SamplerConfig, sample
from helix4d.settings import WINDOW
from helix4d.trellis2.presets import trellis2_flow_config
from helix4d.trellis2.sc_vae import CHILD_BITS, Trellis2SCVAEConfig
from helix4d.trellis2.ss_vae import Trellis2SSDecoder, Trellis2SSDecoderConfig

STAGES = ("encode_images", "ss", "ss_decode", "geometry", "material", "decode")
KERNEL_VOLUME = 27
INDEX_BYTES = 8  # int64 neighbour indices
# Per token and block, the elements a flow block writes (and later reads once): q, k, v (3D), attention output (D),
# its projection (D), cross-attention query and output (2D), the MLP's hidden layer before and after the GELU (2H),
# its output (D), the modulation (6D), the three norms' modulated outputs and the three residual sums (6D).
ACTIVATIONS_PER_TOKEN_BLOCK = "20·D + 2·H"

# TRELLIS.2's samplers, from its pipeline.json (docs/trellis2.md, "Sampling"; unverified against the release).
TRELLIS2_SAMPLING = {
    "ss": SamplerConfig(steps=12, cfg_strength=7.5, cfg_interval=(0.6, 1.0), time_shift=5.0, cfg_rescale=0.7),
    "geometry": SamplerConfig(steps=12, cfg_strength=7.5, cfg_interval=(0.6, 1.0), time_shift=3.0, cfg_rescale=0.5),
    "material": SamplerConfig(steps=12, cfg_strength=1.0, cfg_interval=(0.6, 0.9), time_shift=3.0),
}
# The demo model's voxels per frame at its decoder's levels 8³ (latent), 16³ and 32³ (O-Voxels): measured on
# examples/split.mp4, 16 frames, seed 0 (docs/performance.md).
DEMO_VOXELS = (63.6, 235.0, 918.2)


@dataclass(frozen=True)
class Accelerator:
    """Sustained rates (TFLOP/s per kind of work) and memory bandwidth (TB/s) a prediction assumes."""

    name: str
    tflops: dict[str, float]
    bandwidth_tbs: float
    basis: str  # where the numbers come from

    def seconds(self, flops: float, bytes_moved: float, kind: str) -> float:
        return max(flops / (self.tflops[kind] * 1e12), bytes_moved / (self.bandwidth_tbs * 1e12))


H100 = Accelerator(
    name="H100 SXM, bf16",
    tflops={"gemm": 600.0, "attention": 360.0, "sparse_conv": 300.0, "dense": 400.0},
    bandwidth_tbs=2.7,
    basis=(
        "gemm 600 (61 % of the 989 TFLOP/s dense bf16 peak, assumed); attention 360 (our per-frame SDPA loop on an "
        "H100, measured: bf16, 16 frames x 4096 tokens, window 1 + anchor); sparse_conv 300 (ocnn's Triton kernels, "
        "assumed: they reach 45-80 % of an RTX 4090's peak in ocnn's own benchmark); dense 400 (cuDNN Conv3d, "
        "assumed); bandwidth 2.7 TB/s (80 % of 3.35, assumed)"
    ),
)


@dataclass
class Part:
    """One kind of work inside a stage, summed over the stage's passes."""

    stage: str
    name: str
    kind: str  # which of the accelerator's rates applies
    flops: float = 0.0
    bytes: float = 0.0

    def add(self, flops: float, bytes_moved: float, times: int = 1) -> None:
        self.flops += times * flops
        self.bytes += times * bytes_moved


@dataclass
class StageCost:
    stage: str
    frames: int
    tokens_per_frame: float  # mean over frames (decode: fine voxels; ss: dense latent grid)
    passes: int  # forward passes of the stage's model per frame group (flows: sampler passes)
    parts: list[Part] = field(default_factory=list)
    largest_copy_gb: float = 0.0  # the reference convolution's largest gathered (n, 27·C_in) copy, one tensor

    @property
    def flops(self) -> float:
        return sum(p.flops for p in self.parts)

    @property
    def bytes(self) -> float:
        return sum(p.bytes for p in self.parts)

    def seconds(self, accelerator: Accelerator) -> float:
        return sum(accelerator.seconds(p.flops, p.bytes, p.kind) for p in self.parts)


# ------------------------------------------------------------------------------------------------ token counts
def shell_voxels(
    resolution: int, levels: int, frames: int, radius_fraction: float = 0.35, device: torch.device | str = "cpu"
) -> tuple[list[Tensor], list[Tensor]]:
    """A sphere shell per frame (the voxels its surface passes through), moving along x by resolution/256 a frame.

    Returns the latent-grid voxels per frame (n_f, 3) on the grid resolution / 2^levels, and per ×2 level the
    (N_level, 8) bool masks of which children (slot k = xbit + 2·ybit + 4·zbit) hold the surface, for all frames'
    voxels concatenated in the order a TRELLIS.2 decoder holds them (frame by frame, parent-major, slot ascending):
    its subdivision masks. Radius 0.35 gives ~2.4 K latent tokens at 512 (module docstring).
    """
    side = resolution >> levels
    grid = torch.stack(torch.meshgrid(*(torch.arange(side, device=device),) * 3, indexing="ij"), -1).reshape(-1, 3)
    bits = CHILD_BITS.to(device)
    coarse, masks = [], [[] for _ in range(levels)]
    for f in range(frames):
        mid = resolution / 2
        centre = torch.tensor([mid + f * resolution / 256, mid, mid], dtype=torch.float64, device=device)
        size, cells = resolution / side, grid[_crosses(grid, resolution / side, centre, radius_fraction * resolution)]
        coarse.append(cells)
        for level in range(levels):
            size /= 2
            children = cells[:, None] * 2 + bits  # (n, 8, 3)
            keep = _crosses(children, size, centre, radius_fraction * resolution)  # (n, 8)
            masks[level].append(keep)
            cells = children[keep]
    return coarse, [torch.cat(m) for m in masks]


def _crosses(cells: Tensor, size: float, centre: Tensor, radius: float) -> Tensor:
    """Whether the sphere's surface passes through each cell [c·size, (c+1)·size]³. (..., 3) -> (...,)"""
    lo = cells.double() * size
    hi = lo + size
    nearest = torch.minimum(torch.maximum(centre, lo), hi)
    farthest = torch.where((centre - lo).abs() > (hi - centre).abs(), lo, hi)
    return ((nearest - centre).norm(dim=-1) <= radius) & ((farthest - centre).norm(dim=-1) >= radius)


# ------------------------------------------------------------------------------------------------ flows
def sampler_passes(config: SamplerConfig) -> int:
    """Forward passes one sampling run makes: one per step, two where classifier-free guidance applies; counted
    by running the sampler itself on a dummy velocity."""
    calls: list[bool] = []

    def velocity(x: Tensor, t: float, conditioned: bool) -> Tensor:
        calls.append(conditioned)
        return torch.zeros_like(x)

    sample(velocity, torch.ones(2, 1), config)
    return len(calls)


def flow_pass(config: FlowConfig, queries: list[int], keys: list[int], cond_tokens: int) -> tuple[float, float]:
    """(matmul FLOPs, attention FLOPs) of one forward pass: frame i holds queries[i] tokens that attend to keys[i]
    tokens (its window, and the anchor) and to its frame's cond_tokens condition tokens.

    Per token: input projection (C_in + C_extra)·D, timestep MLP 256·D + D², the shared AdaLN 6D² (TRELLIS.2) and
    the output head D·C_in (+ 2D² modulated). Per token and block: q, k, v, out 4D², cross-attention q and out 2D²,
    MLP 2·D·H, the block's own AdaLN 6D² (helix4d's own flows). Per frame and block: the condition's keys and values
    2·L·C_cond·D. Attention per block: 2·D·(q·k) for QKᵀ and as much for PV, self and cross.
    """
    d, depth, n = config.dim, config.depth, sum(queries)
    hidden = int(d * config.mlp_ratio)
    per_token = (config.in_channels + config.extra_channels) * d + 256 * d + d * d + d * config.in_channels
    per_token += 6 * d * d if config.shared_modulation else 0
    per_token += 2 * d * d if config.modulated_output else 0
    per_block = 4 * d * d + 2 * d * d + 2 * d * hidden + (0 if config.shared_modulation else 6 * d * d)
    cond = len(queries) * cond_tokens * config.cond_dim * 2 * d
    matmul = 2 * (n * per_token + depth * (n * per_block + cond))
    attention = 4 * d * depth * (sum(q * k for q, k in zip(queries, keys)) + n * cond_tokens)
    return float(matmul), float(attention)


def flow_stage(
    stage: str,
    config: FlowConfig,
    tokens: list[int],
    sampler: SamplerConfig,
    cond_tokens: int,
    window: int = WINDOW,
    weight_bytes: float = 0.0,
    dtype_bytes: int = 2,
) -> StageCost:
    """A stage as `Helix4DPipeline` samples one chunk: frame 0 alone (the static model) for every sampler pass,
    one pass that fills the anchor cache, then frames 1..F-1 together for every pass, each seeing the frames
    within `window` of it (≥ 1) and the anchor's cached keys and values. `weight_bytes`: the weights one pass reads.
    """
    passes = sampler_passes(sampler)
    d, hidden = config.dim, int(config.dim * config.mlp_ratio)
    per_token_bytes = config.depth * 2 * (20 * d + 2 * hidden) * dtype_bytes  # ACTIVATIONS_PER_TOKEN_BLOCK, w + r
    linear, attention = Part(stage, "matmuls", "gemm"), Part(stage, "attention", "attention")

    def run(queries: list[int], keys: list[int], times: int) -> None:
        matmul, attn = flow_pass(config, queries, keys, cond_tokens)
        linear.add(matmul, weight_bytes + sum(queries) * per_token_bytes, times)
        kv_bytes = config.depth * sum(q + 2 * k for q, k in zip(queries, keys)) * d * dtype_bytes
        attention.add(attn, kv_bytes, times)

    run([tokens[0]], [tokens[0]], passes)  # the anchor, sampled alone
    if len(tokens) > 1:
        run([tokens[0]], [tokens[0]], 1)  # the anchor cache, filled once from the clean anchor
        rest = range(1, len(tokens))
        keys = [tokens[0] + sum(tokens[g] for g in rest if abs(g - f) <= window) for f in rest]
        run(list(tokens[1:]), keys, passes)
    return StageCost(stage, len(tokens), sum(tokens) / len(tokens), passes, [linear, attention])


# ------------------------------------------------------------------------------------------------ sparse decoders
class SparseConvWork:
    """What one backend's submanifold 3×3×3 convolutions add up to: 2·27·C_in·C_out FLOPs per voxel either way.

    ocnn: one fused implicit GEMM moving the features in and out, the (n, 27) int64 neighbour indices and the
    weights. Reference: first a gather (no FLOPs; it reads the indices and the sources and writes the
    (n, 27·C_in) copy), then a GEMM that reads that copy back: two parts, one after the other.
    """

    def __init__(self, backend: str, dtype_bytes: int) -> None:
        self.backend, self.dtype_bytes, self.largest_copy = backend, dtype_bytes, 0.0
        if backend == "ocnn":
            self.parts = [Part("decode", "sparse conv (ocnn)", "sparse_conv")]
        else:
            self.parts = [
                Part("decode", "gather (reference)", "gemm"),
                Part("decode", "conv matmul (reference)", "gemm"),
            ]

    def add(self, n: int, c_in: int, c_out: int) -> None:
        b, indices = self.dtype_bytes, n * KERNEL_VOLUME * INDEX_BYTES
        flops = 2 * KERNEL_VOLUME * c_in * c_out * n
        weights, copy = KERNEL_VOLUME * c_in * c_out * b, n * KERNEL_VOLUME * c_in * b
        if self.backend == "ocnn":
            self.parts[0].add(flops, n * (c_in + c_out) * b + indices + weights)
        else:
            self.parts[0].add(0.0, indices + n * c_in * b + copy)
            self.largest_copy = max(self.largest_copy, copy)
            self.parts[1].add(flops, copy + n * c_out * b + weights)


def trellis2_decoder(
    config: Trellis2SCVAEConfig, voxels: list[int], backend: str, frames: int, dtype_bytes: int = 2
) -> StageCost:
    """One TRELLIS.2 SC-VAE decoder over `voxels[l]` voxels at level l (all frames together; coarse first).

    Per level (channels C, N voxels): each ConvNeXt block is a 3³ conv C→C and an MLP C→4C→C; the up block a
    linear C→8 (subdivision logits), a 3³ conv C→8C' on the N parents and a 3³ conv C'→C' on the N' children.
    """
    conv, dense = SparseConvWork(backend, dtype_bytes), Part("decode", "matmuls", "gemm")
    mc, n0 = config.model_channels, voxels[0]
    dense.add(2 * n0 * config.latent_channels * mc[0], n0 * (config.latent_channels + mc[0]) * dtype_bytes)
    for level, (c, blocks) in enumerate(zip(mc, config.num_blocks)):
        n = voxels[level]
        for _ in range(blocks):
            conv.add(n, c, c)
            dense.add(2 * n * 2 * c * 4 * c, n * (2 * c + 2 * 4 * c) * dtype_bytes)
        if level + 1 < len(mc):
            c_next, n_next = mc[level + 1], voxels[level + 1]
            if config.pred_subdiv:
                dense.add(2 * n * c * 8, n * (c + 8) * dtype_bytes)
            conv.add(n, c, 8 * c_next)
            conv.add(n_next, c_next, c_next)
    n_last = voxels[-1]
    dense.add(2 * n_last * mc[-1] * config.channels, n_last * (mc[-1] + config.channels) * dtype_bytes)
    return StageCost("decode", frames, voxels[-1] / frames, 1, [*conv.parts, dense], conv.largest_copy / 1e9)


def helix4d_decoder(config: SCVAEConfig, voxels: list[int], frames: int, dtype_bytes: int = 4) -> StageCost:
    """helix4d's own SC-VAE decoder (the demo's): per level its residual blocks (two 3³ convs C→C each), then a
    linear C→8·C' that makes all 8 children's features (pruned afterwards) and a linear C→8 for their existence."""
    conv, dense = SparseConvWork("reference", dtype_bytes), Part("decode", "matmuls", "gemm")
    channels = tuple(reversed(config.channels))  # coarse first
    dense.add(2 * voxels[0] * config.latent_channels * channels[0], 0.0)
    for level, c in enumerate(channels):
        for _ in range(2 * config.blocks_per_level):
            conv.add(voxels[level], c, c)
        if level + 1 < len(channels):
            n, c_next = voxels[level], channels[level + 1]
            dense.add(2 * n * c * (8 * c_next + 8), n * (c + 8 * c_next + 8) * dtype_bytes)
    dense.add(2 * voxels[-1] * channels[-1] * config.in_channels, 0.0)
    return StageCost("decode", frames, voxels[-1] / frames, 1, [*conv.parts, dense], conv.largest_copy / 1e9)


# ------------------------------------------------------------------------------------------------ dense modules
def meta_flops(build: Callable[[], nn.Module], run: Callable[[nn.Module], object]) -> float:
    """FLOPs of `run(module)` for a module built on the meta device: shapes only, nothing computed or allocated."""
    with torch.device("meta"):
        module = build()
    with FlopCounterMode(display=False) as counter:
        run(module)
    return float(counter.get_total_flops())


def parameter_count(build: Callable[[], nn.Module]) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def dense_stage(stage: str, flops_per_frame: float, weight_bytes: float, frames: int, tokens: float) -> StageCost:
    """A dense module run once per frame (image encoder, stage-1 decoder); bytes: its weights per frame."""
    part = Part(stage, "dense", "dense" if stage == "ss_decode" else "gemm")
    part.add(flops_per_frame * frames, weight_bytes * frames)
    return StageCost(stage, frames, tokens, 1, [part])


# ------------------------------------------------------------------------------------------------ presets
@dataclass(frozen=True)
class Trellis2Size:
    """The TRELLIS.2 architecture at one size: "full" is TRELLIS.2's 512 models with DINOv3 ViT-L/16 (what
    `helix4d convert trellis2 --resolution 512` loads); "tiny" the same structure small enough for a CPU check."""

    name: str
    resolution: int  # O-Voxel grid side
    image_size: int  # condition image side
    flows: dict[str, FlowConfig]
    ss_decoder: Trellis2SSDecoderConfig
    shape_decoder: Trellis2SCVAEConfig
    texture_decoder: Trellis2SCVAEConfig
    dino: dict[str, int]  # DINOv3ViTConfig arguments

    @property
    def levels(self) -> int:
        """×2 upsamplings of the SC-VAE decoders (latent grid = resolution / 2^levels)."""
        return len(self.shape_decoder.model_channels) - 1

    @property
    def cond_tokens(self) -> int:
        """DINO tokens per image: CLS, registers and patches (1029 for ViT-L/16 at 512 px)."""
        return 1 + self.dino["num_register_tokens"] + (self.image_size // self.dino["patch_size"]) ** 2


def trellis2_size(name: str) -> Trellis2Size:
    if name == "full":
        channels, blocks = (1024, 512, 256, 128, 64), (4, 16, 8, 4, 0)  # the released decoders (docs/trellis2.md)
        return Trellis2Size(
            name=name,
            resolution=512,
            image_size=512,
            flows={stage: trellis2_flow_config(stage) for stage in ("ss", "geometry", "material")},
            ss_decoder=Trellis2SSDecoderConfig(),
            shape_decoder=Trellis2SCVAEConfig("decoder", 7, channels, blocks, geometry=True),
            texture_decoder=Trellis2SCVAEConfig("decoder", 6, channels, blocks, pred_subdiv=False),
            dino=dict(
                hidden_size=1024,
                num_hidden_layers=24,
                num_attention_heads=16,
                intermediate_size=4096,
                num_register_tokens=4,
                patch_size=16,
            ),
        )
    if name == "tiny":
        small = dict(dim=64, heads=2, cond_dim=32, mlp_ratio=2.0)
        channels, blocks = (32, 16, 16), (1, 1, 0)
        return Trellis2Size(
            name=name,
            resolution=32,
            image_size=64,
            flows={
                s: dataclasses.replace(trellis2_flow_config(s, depth=1), **small)
                for s in ("ss", "geometry", "material")
            },
            ss_decoder=Trellis2SSDecoderConfig(
                channels=(16, 8), num_res_blocks=1, num_res_blocks_middle=1, latent_resolution=4
            ),
            shape_decoder=Trellis2SCVAEConfig("decoder", 7, channels, blocks, geometry=True),
            texture_decoder=Trellis2SCVAEConfig("decoder", 6, channels, blocks, pred_subdiv=False),
            dino=dict(
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=64,
                num_register_tokens=4,
                patch_size=16,
            ),
        )
    raise InputError(f"--size must be full or tiny, got {name!r}")


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
