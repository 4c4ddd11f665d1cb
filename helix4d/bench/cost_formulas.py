"""The cost model's formulas: FLOPs and bytes moved of each kind of work (flow passes, sparse decoders, dense
modules), and the roofline that turns them into seconds. `helix4d.bench.cost` states what they count and assume, and
adds them up per stage; tests/test_bench.py holds them to `torch.utils.flop_counter.FlopCounterMode`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from helix4d.models.flow import FlowConfig
from helix4d.models.sc_vae import SCVAEConfig
from helix4d.pipeline.sampler import SamplerConfig, sample
from helix4d.settings import WINDOW
from helix4d.trellis2.sc_vae import Trellis2SCVAEConfig

KERNEL_VOLUME = 27
INDEX_BYTES = 8  # int64 neighbour indices
# Per token and block, the elements a flow block writes (and later reads once): q, k, v (3D), attention output (D),
# its projection (D), cross-attention query and output (2D), the MLP's hidden layer before and after the GELU (2H),
# its output (D), the modulation (6D), the three norms' modulated outputs and the three residual sums (6D).
ACTIVATIONS_PER_TOKEN_BLOCK = "20·D + 2·H"


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
