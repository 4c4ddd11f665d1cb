"""TRELLIS.2's side of the compatibility tests: tensor names/shapes of its checkpoints and its folder layout.

Written from TRELLIS.2's public code, independently of helix4d's modules, so the tests compare two readings of
one format. `write_trellis2_folder` writes a checkpoint folder in the official layout (`pipeline.json`,
`ckpts/<name>.json` + `.safetensors`): flows at any width/depth, the stage-1 decoder (from TRELLIS-image-large)
and the shape / texture SC-VAE decoders at reduced widths.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

CKPTS = {
    "sparse_structure_flow_model": "ckpts/ss_flow_img_dit_1_3B_64_bf16",
    "shape_slat_flow_model_512": "ckpts/slat_flow_img2shape_dit_1_3B_512_bf16",
    "tex_slat_flow_model_512": "ckpts/slat_flow_imgshape2tex_dit_1_3B_512_bf16",
}
CKPTS_1024 = {  # TRELLIS.2's 1024 models (the second pass of its default cascade)
    "shape_slat_flow_model_1024": "ckpts/slat_flow_img2shape_dit_1_3B_1024_bf16",
    "tex_slat_flow_model_1024": "ckpts/slat_flow_imgshape2tex_dit_1_3B_1024_bf16",
}
FULL = dict(model_channels=1536, cond_channels=1024, num_heads=12, mlp_ratio=5.3334)
SMALL = dict(model_channels=64, cond_channels=24, num_heads=2, mlp_ratio=2.0)


def trellis2_shapes(
    depth: int,
    c_in: int,
    c_out: int,
    model_channels: int = 1536,
    cond_channels: int = 1024,
    num_heads: int = 12,
    mlp_ratio: float = 5.3334,
) -> dict[str, tuple[int, ...]]:
    """Every tensor of a TRELLIS.2 flow checkpoint (share_mod, qk_rms_norm, qk_rms_norm_cross, pe_mode rope)."""
    d, h, m = model_channels, num_heads, int(model_channels * mlp_ratio)
    s = {
        "input_layer.weight": (d, c_in),
        "input_layer.bias": (d,),
        "t_embedder.mlp.0.weight": (d, 256),
        "t_embedder.mlp.0.bias": (d,),
        "t_embedder.mlp.2.weight": (d, d),
        "t_embedder.mlp.2.bias": (d,),
        "adaLN_modulation.1.weight": (6 * d, d),
        "adaLN_modulation.1.bias": (6 * d,),
        "out_layer.weight": (c_out, d),
        "out_layer.bias": (c_out,),
    }
    for n in range(depth):
        b = f"blocks.{n}."
        s |= {
            b + "modulation": (6 * d,),
            b + "norm2.weight": (d,),
            b + "norm2.bias": (d,),
            b + "self_attn.to_qkv.weight": (3 * d, d),
            b + "self_attn.to_qkv.bias": (3 * d,),
            b + "self_attn.q_rms_norm.gamma": (h, d // h),
            b + "self_attn.k_rms_norm.gamma": (h, d // h),
            b + "self_attn.to_out.weight": (d, d),
            b + "self_attn.to_out.bias": (d,),
            b + "cross_attn.to_q.weight": (d, d),
            b + "cross_attn.to_q.bias": (d,),
            b + "cross_attn.to_kv.weight": (2 * d, cond_channels),
            b + "cross_attn.to_kv.bias": (2 * d,),
            b + "cross_attn.q_rms_norm.gamma": (h, d // h),
            b + "cross_attn.k_rms_norm.gamma": (h, d // h),
            b + "cross_attn.to_out.weight": (d, d),
            b + "cross_attn.to_out.bias": (d,),
            b + "mlp.mlp.0.weight": (m, d),
            b + "mlp.mlp.0.bias": (m,),
            b + "mlp.mlp.2.weight": (d, m),
            b + "mlp.mlp.2.bias": (d,),
        }
    return s


def random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Trained-looking values (every branch non-zero), stored in bf16 as released."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in shapes.items():
        fan_in = shape[-1] if len(shape) == 2 and not k.endswith("gamma") else 1
        v = torch.randn(shape, generator=g) * (0.5 / fan_in**0.5 if fan_in > 1 else 0.1)
        if k.endswith(("gamma", "norm2.weight")):
            v = v + 1.0
        state[k] = v.to(torch.bfloat16)
    return state


def write_trellis2_folder(
    root: Path,
    depths: dict[str, int],
    widths: dict,
    seed: int = 0,
    drop: tuple[str, ...] = (),
    reshape: dict[str, tuple[int, ...]] | None = None,
    extra: dict[str, torch.Tensor] | None = None,
    decoders: dict | None = None,
    with_1024: bool = False,
) -> Path:
    """A TRELLIS.2 checkpoint folder in the official layout; drop/reshape/extra corrupt the 512 shape flow's file,
    `decoders` are `write_decoders`' options, `with_1024` adds the 1024 flows (depth 1)."""
    (root / "ckpts").mkdir(parents=True)
    channels = {
        "sparse_structure_flow_model": (8, 8),
        "shape_slat_flow_model_512": (32, 32),
        "tex_slat_flow_model_512": (64, 32),
        "shape_slat_flow_model_1024": (32, 32),
        "tex_slat_flow_model_1024": (64, 32),
    }
    for i, (key, ref) in enumerate((CKPTS | (CKPTS_1024 if with_1024 else {})).items()):
        c_in, c_out = channels[key]
        args = dict(
            resolution=16 if key.startswith("sparse") else 32,
            in_channels=c_in,
            out_channels=c_out,
            num_blocks=depths.get(key, 1),
            pe_mode="rope",
            share_mod=True,
            initialization="scaled",
            qk_rms_norm=True,
            qk_rms_norm_cross=True,
            dtype="bfloat16",
            **widths,
        )
        name = "SparseStructureFlowModel" if key.startswith("sparse") else "SLatFlowModel"
        (root / f"{ref}.json").write_text(json.dumps({"name": name, "args": args}))
        state = random_state(trellis2_shapes(depths.get(key, 1), c_in, c_out, **widths), seed + i)
        if key == "shape_slat_flow_model_512":
            for k in drop:
                del state[k]
            for k, shape in (reshape or {}).items():
                state[k] = torch.zeros(shape, dtype=torch.bfloat16)
            state |= extra or {}
        save_file(state, str(root / f"{ref}.safetensors"))

    def sampler(strength: float, rescale: float, interval: list[float], shift: float) -> dict:
        return {
            "name": "FlowEulerGuidanceIntervalSampler",
            "args": {"sigma_min": 1e-5},
            "params": {
                "steps": 12,
                "guidance_strength": strength,
                "guidance_rescale": rescale,
                "guidance_interval": interval,
                "rescale_t": shift,
            },
        }

    norm = {"mean": [0.1 * i for i in range(32)], "std": [1.0 + 0.01 * i for i in range(32)]}
    pipeline = {
        "name": "Trellis2ImageTo3DPipeline",
        "args": {
            "models": {
                "sparse_structure_decoder": "microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16",
                "shape_slat_decoder": SHAPE_DEC,
                "tex_slat_decoder": TEX_DEC,
                **CKPTS,
                **CKPTS_1024,
            },
            "sparse_structure_sampler": sampler(7.5, 0.7, [0.6, 1.0], 5.0),
            "shape_slat_sampler": sampler(7.5, 0.5, [0.6, 1.0], 3.0),
            "tex_slat_sampler": sampler(1.0, 0.0, [0.6, 0.9], 3.0),
            "shape_slat_normalization": norm,
            "tex_slat_normalization": norm,
            "image_cond_model": {
                "name": "DinoV3FeatureExtractor",
                "args": {"model_name": "facebook/dinov3-vitl16-pretrain-lvd1689m"},
            },
            "default_pipeline_type": "1024_cascade",
        },
    }
    (root / "pipeline.json").write_text(json.dumps(pipeline))
    write_decoders(root, seed, **(decoders or {}))
    return root


SS_DEC = "ckpts/ss_dec_conv3d_16l8_fp16"


def _res_block_shapes(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    """TRELLIS' dense `ResBlock3d` (channel LayerNorms, two 3³ convolutions)."""
    return {
        prefix + n: shape
        for n, shape in (
            ("norm1.weight", (c,)),
            ("norm1.bias", (c,)),
            ("norm2.weight", (c,)),
            ("norm2.bias", (c,)),
            ("conv1.weight", (c, c, 3, 3, 3)),
            ("conv1.bias", (c,)),
            ("conv2.weight", (c, c, 3, 3, 3)),
            ("conv2.bias", (c,)),
        )
    }


def _level_shapes(channels: tuple[int, ...], res_blocks: int, resample) -> dict[str, tuple[int, ...]]:
    """TRELLIS' flat dense `blocks`: per level its res-blocks, then one resampling conv, whose (weight, bias)
    shapes are `resample(c_in, c_out)`."""
    s, n = {}, 0
    for i, c in enumerate(channels):
        for _ in range(res_blocks):
            s |= _res_block_shapes(f"blocks.{n}.", c)
            n += 1
        if i + 1 < len(channels):
            weight, bias = resample(c, channels[i + 1])
            s |= {f"blocks.{n}.conv.weight": weight, f"blocks.{n}.conv.bias": bias}
            n += 1
    return s


def ss_decoder_shapes(
    channels: tuple[int, ...], latent: int = 8, res_blocks: int = 2, middle: int = 2
) -> dict[str, tuple[int, ...]]:
    """Tensors of TRELLIS' SparseStructureDecoder (norm_type 'layer')."""
    s = {"input_layer.weight": (channels[0], latent, 3, 3, 3), "input_layer.bias": (channels[0],)}
    for i in range(middle):
        s |= _res_block_shapes(f"middle_block.{i}.", channels[0])
    s |= _level_shapes(channels, res_blocks, lambda c, o: ((8 * o, c, 3, 3, 3), (8 * o,)))  # conv + pixel shuffle
    return s | {
        "out_layer.0.weight": (channels[-1],),
        "out_layer.0.bias": (channels[-1],),
        "out_layer.2.weight": (1, channels[-1], 3, 3, 3),
        "out_layer.2.bias": (1,),
    }


# ------------------------------------------------------------------------------------------ SC-VAE decoders
SHAPE_DEC, TEX_DEC = "ckpts/shape_dec_next_dc_f16c32_fp16", "ckpts/tex_dec_next_dc_f16c32_fp16"
FULL_DECODER = dict(model_channels=[1024, 512, 256, 128, 64], num_blocks=[4, 16, 8, 4, 0])
SMALL_DECODER = dict(model_channels=[64, 32, 16, 8, 8], num_blocks=[1, 1, 0, 0, 0])
SMALL_SS_DECODER = dict(
    out_channels=1, latent_channels=8, num_res_blocks=1, num_res_blocks_middle=1, channels=[16, 8, 8], use_fp16=True
)


def _convnext_shapes(p: str, c: int) -> dict[str, tuple[int, ...]]:
    """`SparseConvNeXtBlock3d`: norm, 3³ sparse conv `[C, 3, 3, 3, C]`, MLP ×4."""
    return {
        p + "norm.weight": (c,),
        p + "norm.bias": (c,),
        p + "conv.weight": (c, 3, 3, 3, c),
        p + "conv.bias": (c,),
        p + "mlp.0.weight": (4 * c, c),
        p + "mlp.0.bias": (4 * c,),
        p + "mlp.2.weight": (c, 4 * c),
        p + "mlp.2.bias": (c,),
    }


def sc_decoder_args(out_channels: int, pred_subdiv: bool, model_channels: list[int], num_blocks: list[int]) -> dict:
    """`ckpts/{shape,tex}_dec_next_dc_f16c32_fp16.json` args (configs/scvae/*_vae_next_dc_f16c32_fp16.json)."""
    levels = len(model_channels)
    args = dict(
        model_channels=model_channels,
        latent_channels=32,
        num_blocks=num_blocks,
        block_type=["SparseConvNeXtBlock3d"] * levels,
        up_block_type=["SparseResBlockC2S3d"] * (levels - 1),
        block_args=[{"use_checkpoint": False}] * levels,
        use_fp16=True,
    )
    if out_channels == 7:
        return {"resolution": 256, **args}
    return {**args, "out_channels": out_channels, "pred_subdiv": pred_subdiv}


def sc_decoder_shapes(
    out_channels: int, pred_subdiv: bool, model_channels: list[int], num_blocks: list[int]
) -> dict[str, tuple[int, ...]]:
    """Tensors of `SparseUnetVaeDecoder`: ConvNeXt blocks, then one `SparseResBlockC2S3d` per non-final level."""
    s = {
        "from_latent.weight": (model_channels[0], 32),
        "from_latent.bias": (model_channels[0],),
        "output_layer.weight": (out_channels, model_channels[-1]),
        "output_layer.bias": (out_channels,),
    }
    for i, (c, n) in enumerate(zip(model_channels, num_blocks)):
        for j in range(n):
            s |= _convnext_shapes(f"blocks.{i}.{j}.", c)
        if i + 1 < len(model_channels):
            p, o = f"blocks.{i}.{n}.", model_channels[i + 1]
            s |= {
                p + "norm1.weight": (c,),
                p + "norm1.bias": (c,),
                p + "conv1.weight": (8 * o, 3, 3, 3, c),
                p + "conv1.bias": (8 * o,),
                p + "conv2.weight": (o, 3, 3, 3, o),
                p + "conv2.bias": (o,),
            }
            if pred_subdiv:
                s |= {p + "to_subdiv.weight": (8, c), p + "to_subdiv.bias": (8,)}
    return s


# ------------------------------------------------------------------------------------------ encoders
SS_ENC, SHAPE_ENC, TEX_ENC = (
    "ckpts/ss_enc_conv3d_16l8_fp16",
    "ckpts/shape_enc_next_dc_f16c32_fp16",
    "ckpts/tex_enc_next_dc_f16c32_fp16",
)
SMALL_ENCODER = dict(model_channels=[8, 8, 16, 32, 64], num_blocks=[0, 1, 0, 0, 1])
SMALL_SS_ENCODER = dict(
    in_channels=1, latent_channels=8, num_res_blocks=1, num_res_blocks_middle=1, channels=[8, 8, 16], use_fp16=True
)


def sc_encoder_args(in_channels: int, model_channels: list[int], num_blocks: list[int]) -> dict:
    levels = len(model_channels)
    args = dict(
        model_channels=model_channels,
        latent_channels=32,
        num_blocks=num_blocks,
        block_type=["SparseConvNeXtBlock3d"] * levels,
        down_block_type=["SparseResBlockS2C3d"] * (levels - 1),
        block_args=[{"use_checkpoint": True}] * levels,
        use_fp16=True,
    )
    return {**args, "in_channels": in_channels}


def sc_encoder_shapes(in_channels: int, model_channels: list[int], num_blocks: list[int]) -> dict[str, tuple[int, ...]]:
    """Tensors of `SparseUnetVaeEncoder`: ConvNeXt blocks, then one `SparseResBlockS2C3d` per non-final level."""
    s = {
        "input_layer.weight": (model_channels[0], in_channels),
        "input_layer.bias": (model_channels[0],),
        "to_latent.weight": (64, model_channels[-1]),
        "to_latent.bias": (64,),
    }
    for i, (c, n) in enumerate(zip(model_channels, num_blocks)):
        for j in range(n):
            s |= _convnext_shapes(f"blocks.{i}.{j}.", c)
        if i + 1 < len(model_channels):
            p, o = f"blocks.{i}.{n}.", model_channels[i + 1]
            s |= {
                p + "norm1.weight": (c,),
                p + "norm1.bias": (c,),
                p + "conv1.weight": (o // 8, 3, 3, 3, c),
                p + "conv1.bias": (o // 8,),
                p + "conv2.weight": (o, 3, 3, 3, o),
                p + "conv2.bias": (o,),
            }
    return s


def ss_encoder_shapes(
    channels: tuple[int, ...], latent: int = 8, res_blocks: int = 2, middle: int = 2
) -> dict[str, tuple[int, ...]]:
    """Tensors of TRELLIS' SparseStructureEncoder (norm_type 'layer', 2×2×2 stride-2 downsampling convs)."""
    s = {"input_layer.weight": (channels[0], 1, 3, 3, 3), "input_layer.bias": (channels[0],)}
    s |= _level_shapes(channels, res_blocks, lambda c, o: ((o, c, 2, 2, 2), (o,)))  # 2×2×2 stride-2 conv
    for i in range(middle):
        s |= _res_block_shapes(f"middle_block.{i}.", channels[-1])
    return s | {
        "out_layer.0.weight": (channels[-1],),
        "out_layer.0.bias": (channels[-1],),
        "out_layer.2.weight": (2 * latent, channels[-1], 3, 3, 3),
        "out_layer.2.bias": (2 * latent,),
    }


def write_decoders(
    root: Path,
    seed: int = 0,
    decoder: dict | None = None,
    ss_decoder: dict | None = None,
    edit: dict[str, dict[str, torch.Tensor]] | None = None,
    encoders: bool = False,
) -> None:
    """The stage-1 decoder and the shape / texture decoders (with `encoders`, also the three encoders) into
    `root/ckpts`, fp16 as released. `edit` maps a checkpoint stem (SHAPE_DEC, ...) to tensors that replace (or,
    new, add to) its random ones."""
    decoder = decoder or SMALL_DECODER
    ss = ss_decoder or SMALL_SS_DECODER
    specs = {
        SS_DEC: (
            "SparseStructureDecoder",
            ss,
            ss_decoder_shapes(
                tuple(ss["channels"]), ss["latent_channels"], ss["num_res_blocks"], ss["num_res_blocks_middle"]
            ),
        ),
        SHAPE_DEC: (
            "FlexiDualGridVaeDecoder",
            sc_decoder_args(7, True, **decoder),
            sc_decoder_shapes(7, True, **decoder),
        ),
        TEX_DEC: ("SparseUnetVaeDecoder", sc_decoder_args(6, False, **decoder), sc_decoder_shapes(6, False, **decoder)),
    }
    if encoders:
        e, se = SMALL_ENCODER, SMALL_SS_ENCODER
        shape_args = {k: v for k, v in sc_encoder_args(6, **e).items() if k != "in_channels"}  # fixed: 6
        specs |= {
            SS_ENC: (
                "SparseStructureEncoder",
                se,
                ss_encoder_shapes(
                    tuple(se["channels"]), se["latent_channels"], se["num_res_blocks"], se["num_res_blocks_middle"]
                ),
            ),
            SHAPE_ENC: ("FlexiDualGridVaeEncoder", shape_args, sc_encoder_shapes(6, **e)),
            TEX_ENC: ("SparseUnetVaeEncoder", sc_encoder_args(6, **e), sc_encoder_shapes(6, **e)),
        }
    for i, (stem, (name, args, shapes)) in enumerate(specs.items()):
        (root / f"{stem}.json").write_text(json.dumps({"name": name, "args": args}))
        state = {k: v.to(torch.float16) for k, v in random_state(shapes, seed + 100 + i).items()}
        state |= {k: v.to(torch.float16) for k, v in (edit or {}).get(stem, {}).items()}
        save_file(state, str(root / f"{stem}.safetensors"))
