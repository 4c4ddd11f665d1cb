"""The `trellis2` flow presets and the reading of TRELLIS.2 checkpoint configs (`ckpts/<name>.json`).

The three TRELLIS.2 flow models share one trunk (docs/design.md §5; TRELLIS.2's `SparseStructureFlowModel` /
`SLatFlowModel` with `share_mod`, `qk_rms_norm`, `qk_rms_norm_cross`, `pe_mode="rope"`):

| stage     | checkpoint                                   | tokens                     | in → out       |
|-----------|----------------------------------------------|----------------------------|----------------|
| ss        | ss_flow_img_dit_1_3B_64_bf16                 | dense 16³ = 4096           | 8 → 8          |
| geometry  | slat_flow_img2shape_dit_1_3B_{512,1024}_bf16 | one per active latent voxel| 32 → 32        |
| material  | slat_flow_imgshape2tex_dit_1_3B_{512,…}_bf16 | same voxels                | 32 + 32 → 32   |

Trunk: width 1536, 30 blocks, 12 heads × 128, MLP 1536 · 5.3334 → 8192 (GELU-tanh), condition width 1024
(DINOv3 ViT-L/16), RoPE θ = 10000 on integer latent coordinates: about 1.29 B parameters each. The material
model's input is the noise concatenated with the shape latent (`extra_channels`).
"""

from __future__ import annotations

from typing import Any

from helix4d.errors import ConfigError
from helix4d.models.flow import FlowConfig
from helix4d.settings import WINDOW

STAGES = ("ss", "geometry", "material")
WIDTH, DEPTH, HEADS, MLP_RATIO, COND_DIM = 1536, 30, 12, 5.3334, 1024
STAGE_CHANNELS = {"ss": (8, 0), "geometry": (32, 0), "material": (32, 32)}  # (generated, given) per token
FLOW_CLASSES = ("SparseStructureFlowModel", "SLatFlowModel", "ElasticSLatFlowModel")
# TRELLIS.2 args that only choose how the model runs or is initialised, not its weights.
RUNTIME_ARGS = frozenset({"resolution", "initialization", "dtype", "use_fp16", "use_checkpoint"})
WEIGHT_ARGS = frozenset(
    {
        "in_channels",
        "out_channels",
        "model_channels",
        "cond_channels",
        "num_blocks",
        "num_heads",
        "num_head_channels",
        "mlp_ratio",
        "pe_mode",
        "share_mod",
        "qk_rms_norm",
        "qk_rms_norm_cross",
        "rope_freq",
        "patch_size",
        "num_io_res_blocks",
        "io_block_channels",
    }
)


def trellis2_flow_config(
    stage: str, depth: int = DEPTH, time_fraction: float = 0.25, window: int = WINDOW
) -> FlowConfig:
    """The full-size TRELLIS.2 flow of one stage as a helix4d `FlowConfig` (`depth` < 30 only for tests)."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose one of {STAGES}")
    generated, given = STAGE_CHANNELS[stage]
    return FlowConfig(
        in_channels=generated,
        extra_channels=given,
        dim=WIDTH,
        depth=depth,
        heads=HEADS,
        mlp_ratio=MLP_RATIO,
        cond_dim=COND_DIM,
        rope_theta=10000.0,
        time_fraction=time_fraction,
        window=window,
        rope_time_mode="add",
        shared_modulation=True,
        modulated_output=False,
    )


def flow_config_from_trellis2(name: str, args: dict[str, Any], where: str) -> FlowConfig:
    """A `FlowConfig` equal in structure to the TRELLIS.2 model a checkpoint config describes.

    Every arg that shapes the weights is read or checked; any variant we do not implement (absolute position
    embedding, patchify, I/O res-blocks, no QK norm) is a ConfigError naming the arg, never a silent mismatch.
    """
    if name not in FLOW_CLASSES:
        raise ConfigError(f"{where}: model {name!r} is not a TRELLIS.2 flow model (expected one of {FLOW_CLASSES})")
    unknown = sorted(set(args) - RUNTIME_ARGS - WEIGHT_ARGS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown TRELLIS.2 model args {unknown}; helix4d cannot tell how they shape the weights"
        )
    problems = []
    if args.get("pe_mode") != "rope":
        problems.append(f"pe_mode={args.get('pe_mode')!r} (only 'rope' is supported)")
    for flag in ("qk_rms_norm", "qk_rms_norm_cross"):
        if not args.get(flag, False):
            problems.append(f"{flag}=False (helix4d always normalises q and k)")
    if args.get("patch_size", 1) != 1 or args.get("num_io_res_blocks", 0) or args.get("io_block_channels"):
        problems.append("patchify / I/O res-blocks (TRELLIS-1 style) are not supported")
    if tuple(args.get("rope_freq", (1.0, 10000.0))) != (1.0, 10000.0):
        problems.append(f"rope_freq={args['rope_freq']} (only (1.0, 10000.0))")
    try:
        dim, cond, depth = int(args["model_channels"]), int(args["cond_channels"]), int(args["num_blocks"])
        c_in, c_out = int(args["in_channels"]), int(args["out_channels"])
    except KeyError as exc:
        raise ConfigError(f"{where}: TRELLIS.2 model args lack {exc}") from None
    heads = int(args.get("num_heads") or dim // int(args.get("num_head_channels", 64)))
    if c_in < c_out:
        problems.append(f"in_channels {c_in} < out_channels {c_out}")
    if dim % heads or (dim // heads) % 2:
        problems.append(f"model_channels {dim} does not split into {heads} heads of even width")
    if problems:
        raise ConfigError(f"{where}: unsupported TRELLIS.2 model: " + "; ".join(problems))
    return FlowConfig(
        in_channels=c_out,
        extra_channels=c_in - c_out,
        dim=dim,
        depth=depth,
        heads=heads,
        mlp_ratio=float(args.get("mlp_ratio", 4.0)),
        cond_dim=cond,
        rope_theta=10000.0,
        rope_time_mode="add",
        shared_modulation=bool(args.get("share_mod", False)),
        modulated_output=False,
    )
