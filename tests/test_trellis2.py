"""TRELLIS.2 compatibility: full-size structure, strict conversion of official-layout checkpoints, exact RoPE.

The TRELLIS.2 side is written independently of our modules: `trellis2_layout` lists the tensors of its
checkpoints and writes folders in its exact layout; `reference_forward` here is its flow forward pass written
out with plain torch. SC-VAE decoders and the pipeline on TRELLIS.2 weights: `test_trellis2_pipeline.py`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from trellis2_layout import (
    CKPTS,
    FULL,
    SMALL,
    SMALL_SS_DECODER,
    SS_DEC,
    random_state,
    ss_decoder_shapes,
    trellis2_shapes,
    write_trellis2_folder,
)
from typer.testing import CliRunner

from helix4d.cli import app
from helix4d.errors import ConfigError, InputError
from helix4d.io.files import OUTPUT_MARKER
from helix4d.models.flow import FlowTransformer
from helix4d.nn.blocks import FrameAttention
from helix4d.nn.rope import RopeConfig, apply_rope, rope_angles
from helix4d.pipeline.folder import load_component
from helix4d.sparse import SparseTensor
from helix4d.trellis2.convert import convert_trellis2
from helix4d.trellis2.dino import DINOV3, IMAGENET_MEAN, IMAGENET_STD, DinoEncoder
from helix4d.trellis2.names import is_temporal, to_trellis2
from helix4d.trellis2.presets import trellis2_flow_config
from helix4d.trellis2.release import read_trellis2_folder
from helix4d.trellis2.ss_vae import Trellis2SSDecoder, Trellis2SSDecoderConfig
from helix4d.trellis2.strict_load import load_trellis2_flow, load_trellis2_ss_decoder


def _rope_phases(coords: torch.Tensor, head_dim: int) -> torch.Tensor:
    """TRELLIS' RotaryPositionEmbedder: per-axis outer(coord, 1/10000^(i/F)), axes concatenated, zero-padded."""
    f = head_dim // 2 // 3
    freqs = 1.0 / 10000.0 ** (torch.arange(f, dtype=torch.float32) / f)
    phases = torch.cat([torch.outer(coords[:, i].float(), freqs) for i in range(3)], dim=-1)
    phases = F.pad(phases, (0, head_dim // 2 - phases.shape[-1]))
    return torch.polar(torch.ones_like(phases), phases)  # (N, Dh/2) complex


def _rotate(x: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (N, H, Dh/2)
    return torch.view_as_real(xc * phases[:, None]).reshape(x.shape)


def _mh_rms(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1) * gamma * x.shape[-1] ** 0.5


def reference_forward(
    sd: dict[str, torch.Tensor], heads: int, x: torch.Tensor, coords: torch.Tensor, t: float, cond: torch.Tensor
) -> torch.Tensor:
    """TRELLIS.2's flow forward for one sample: x (N, C_in) at coords (N, 3), t in [0, 1], cond (L, C) -> (N, C_out)."""
    sd = {k: v.float() for k, v in sd.items()}
    lin = lambda name, v: F.linear(v, sd[name + ".weight"], sd[name + ".bias"])  # noqa: E731
    d = sd["input_layer.weight"].shape[0]
    dh = d // heads
    half = 128
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = torch.tensor([t * 1000.0])[:, None] * freqs[None]
    t_emb = lin("t_embedder.mlp.2", F.silu(lin("t_embedder.mlp.0", torch.cat([args.cos(), args.sin()], -1))))
    mod = lin("adaLN_modulation.1", F.silu(t_emb))  # (1, 6D)
    phases = _rope_phases(coords, dh)
    h = lin("input_layer", x)
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for n in range(depth):
        b = f"blocks.{n}."
        sh1, sc1, g1, sh2, sc2, g2 = (sd[b + "modulation"] + mod).chunk(6, dim=1)
        y = F.layer_norm(h, (d,), eps=1e-6) * (1 + sc1) + sh1
        q, k, v = lin(b + "self_attn.to_qkv", y).reshape(-1, 3, heads, dh).unbind(1)
        q = _rotate(_mh_rms(q, sd[b + "self_attn.q_rms_norm.gamma"]), phases)
        k = _rotate(_mh_rms(k, sd[b + "self_attn.k_rms_norm.gamma"]), phases)
        o = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)).transpose(0, 1)
        h = h + g1 * lin(b + "self_attn.to_out", o.reshape(-1, d))
        y = F.layer_norm(h, (d,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], eps=1e-6)
        q = _mh_rms(lin(b + "cross_attn.to_q", y).reshape(-1, heads, dh), sd[b + "cross_attn.q_rms_norm.gamma"])
        k, v = lin(b + "cross_attn.to_kv", cond).reshape(-1, 2, heads, dh).unbind(1)
        k = _mh_rms(k, sd[b + "cross_attn.k_rms_norm.gamma"])
        o = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)).transpose(0, 1)
        h = h + lin(b + "cross_attn.to_out", o.reshape(-1, d))
        y = F.layer_norm(h, (d,), eps=1e-6) * (1 + sc2) + sh2
        h = h + g2 * lin(b + "mlp.mlp.2", F.gelu(lin(b + "mlp.mlp.0", y), approximate="tanh"))
    return lin("out_layer", F.layer_norm(h, (d,)))


def _tokens(n: int, channels: int, grid: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    coords = torch.randperm(grid**3, generator=g)[:n]
    xyz = torch.stack([coords // grid**2, coords // grid % grid, coords % grid], 1)  # distinct voxels
    return xyz, torch.randn(n, channels, generator=g)


# ---------------------------------------------------------------------------------------------- 1. structure
@pytest.mark.parametrize("stage,c_in,c_out", [("ss", 8, 8), ("geometry", 32, 32), ("material", 64, 32)])
def test_full_size_preset_has_trellis2_names_shapes_and_count(stage: str, c_in: int, c_out: int) -> None:
    with torch.device("meta"):
        model = FlowTransformer(trellis2_flow_config(stage))
    ours = {to_trellis2(k): tuple(v.shape) for k, v in model.state_dict().items() if not is_temporal(k)}
    expected = trellis2_shapes(30, c_in, c_out)
    assert ours == expected  # every name and shape, nothing more, nothing less
    listed = {
        "blocks.0.self_attn.to_qkv.weight": (4608, 1536),
        "blocks.29.self_attn.q_rms_norm.gamma": (12, 128),
        "blocks.7.cross_attn.to_kv.weight": (3072, 1024),
        "blocks.12.mlp.mlp.0.weight": (8192, 1536),
        "adaLN_modulation.1.weight": (9216, 1536),
        "blocks.29.modulation": (9216,),
        "t_embedder.mlp.0.weight": (1536, 256),
        "input_layer.weight": (1536, c_in),
        "out_layer.weight": (c_out, 1536),
    }
    assert all(ours[k] == v for k, v in listed.items())
    base = sum(math.prod(s) for s in ours.values())
    assert base == {"ss": 1_292_179_976, "geometry": 1_292_253_728, "material": 1_292_302_880}[stage]
    assert abs(base - 1.29e9) < 0.005e9
    temporal = sum(p.numel() for k, p in model.named_parameters() if is_temporal(k))
    assert temporal == 30 * (4 * 1536**2 + 4 * 1536 + 2 * 1536)  # qkv + out + two RMS gammas per block


# ---------------------------------------------------------------------------------------------- 2. conversion
@pytest.fixture(scope="module")
def full_width_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real widths, reduced depth (2 blocks for stage 1, 1 for stages 2-3) so it fits CI."""
    depths = {"sparse_structure_flow_model": 2, "shape_slat_flow_model_512": 1, "tex_slat_flow_model_512": 1}
    return write_trellis2_folder(tmp_path_factory.mktemp("trellis2") / "TRELLIS.2-4B", depths, FULL)


def test_full_width_checkpoints_convert_strictly(full_width_folder: Path, tmp_path: Path) -> None:
    out = convert_trellis2(full_width_folder, tmp_path / "converted")
    pipeline = json.loads((out / "pipeline.json").read_text())
    assert pipeline["architecture"] == "trellis2" and pipeline["resolution"] == 512
    assert pipeline["sampling"]["ss"] == {
        "steps": 12,
        "cfg_strength": 7.5,
        "cfg_interval": [0.6, 1.0],
        "time_shift": 5.0,
        "cfg_rescale": 0.7,
    }
    assert pipeline["sampling"]["material"]["cfg_interval"] == [0.6, 0.9]
    assert (
        len(pipeline["latent_stats"]["geometry"]["mean"]) == 32 and pipeline["latent_stats"]["ss"]["std"] == [1.0] * 8
    )
    manifest = json.loads((out / "trellis2.json").read_text())
    assert manifest["checkpoints"]["ss_vae"].endswith("ss_dec_conv3d_16l8_fp16")
    for component, ref in (
        ("ss_flow", CKPTS["sparse_structure_flow_model"]),
        ("material_flow", CKPTS["tex_slat_flow_model_512"]),
    ):
        model, config = load_component(component, out / component)  # strict: zero missing / unexpected keys
        source = load_file(str(full_width_folder / f"{ref}.safetensors"))
        ours = model.state_dict()
        assert config.dim == 1536 and config.shared_modulation and not config.modulated_output
        for name, value in ours.items():  # every tensor is the checkpoint's, temporal copies equal the base
            assert torch.equal(value, source[to_trellis2(name)].float()), name
        stored = load_file(str(out / component / "model.safetensors"))
        assert stored["blocks.0.temporal_attn.to_qkv.weight"].dtype == torch.bfloat16


def test_converted_model_is_trellis2s_forward(full_width_folder: Path) -> None:
    """Stage 1 at full width: our model on one frame (4D RoPE, rho = 0.25) equals TRELLIS.2's forward."""
    ref = CKPTS["sparse_structure_flow_model"]
    model, _ = load_trellis2_flow(read_trellis2_folder(full_width_folder), ref, dtype=torch.float32)
    xyz, x = _tokens(24, 8, 16, seed=3)
    cond = torch.randn(7, 1024, generator=torch.Generator().manual_seed(4))
    sd = load_file(str(full_width_folder / f"{ref}.safetensors"))
    with torch.no_grad():
        ours = model(SparseTensor.from_frames([xyz], [x]), torch.full((24,), 0.6), cond[None], FrameAttention(1))
        theirs = reference_forward(sd, 12, x, xyz, 0.6, cond)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    depths = dict.fromkeys(CKPTS, 2)
    return write_trellis2_folder(tmp_path_factory.mktemp("small") / "t2", depths, SMALL, seed=10)


def test_material_flow_concatenates_the_shape_latent_like_trellis2(small_folder: Path) -> None:
    ref = CKPTS["tex_slat_flow_model_512"]
    model, config = load_trellis2_flow(read_trellis2_folder(small_folder), ref, dtype=torch.float32)
    assert (config.in_channels, config.extra_channels) == (32, 32)
    xyz, noise = _tokens(30, 32, 32, seed=5)
    shape_latent = torch.randn(30, 32)
    cond = torch.randn(5, 24)
    with torch.no_grad():
        ours = model(SparseTensor.from_frames([xyz], [noise]), torch.full((30,), 0.25), cond[None], extra=shape_latent)
        theirs = reference_forward(
            load_file(str(small_folder / f"{ref}.safetensors")), 2, torch.cat([noise, shape_latent], 1), xyz, 0.25, cond
        )
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_bad_checkpoint_lists_every_problem_by_name(tmp_path: Path) -> None:
    src = write_trellis2_folder(
        tmp_path / "bad",
        dict.fromkeys(CKPTS, 2),
        SMALL,
        drop=("blocks.1.cross_attn.to_kv.weight",),
        reshape={"blocks.0.self_attn.to_qkv.weight": (193, 64)},
        extra={"blocks.0.self_attn.extra.weight": torch.zeros(2)},
    )
    with pytest.raises(ConfigError) as err:
        convert_trellis2(src, tmp_path / "out")
    msg = str(err.value)
    assert "slat_flow_img2shape_dit_1_3B_512_bf16.safetensors" in msg
    assert "missing ['blocks.1.cross_attn.to_kv.weight']" in msg
    assert "unexpected ['blocks.0.self_attn.extra.weight']" in msg
    assert "blocks.0.self_attn.to_qkv.weight: file (193, 64) vs model (192, 64)" in msg
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))  # nothing half-written


def test_missing_files_and_unsupported_variants_are_clear(tmp_path: Path, small_folder: Path) -> None:
    with pytest.raises(ConfigError, match="no pipeline.json"):
        convert_trellis2(tmp_path, tmp_path / "out")
    src = write_trellis2_folder(tmp_path / "ape", dict.fromkeys(CKPTS, 1), SMALL)
    (src / f"{CKPTS['tex_slat_flow_model_512']}.safetensors").unlink()
    with pytest.raises(ConfigError, match="missing .*imgshape2tex.*safetensors; download microsoft/TRELLIS.2-4B"):
        convert_trellis2(src, tmp_path / "out")
    cfg_path = src / f"{CKPTS['sparse_structure_flow_model']}.json"
    raw = json.loads(cfg_path.read_text())
    raw["args"]["pe_mode"] = "ape"
    cfg_path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="pe_mode='ape'"):
        convert_trellis2(src, tmp_path / "out")
    with pytest.raises(ConfigError, match="resolution must be one of"):
        convert_trellis2(small_folder, tmp_path / "out", resolution=768)


def test_derived_rope_buffer_is_dropped(tmp_path: Path) -> None:
    """A checkpoint that carries TRELLIS' complex `rope_phases` buffer converts (it holds nothing learned)."""
    src = write_trellis2_folder(
        tmp_path / "t2",
        dict.fromkeys(CKPTS, 1),
        SMALL,
        extra={"rope_phases": torch.polar(torch.ones(4, 16), torch.zeros(4, 16))},
    )
    model, _ = load_trellis2_flow(read_trellis2_folder(src), CKPTS["shape_slat_flow_model_512"])
    assert "rope_phases" not in model.state_dict()


def test_cli_convert(small_folder: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["convert", "trellis2", str(small_folder), "--out", str(tmp_path / "h4d"), "--dtype", "float32"]
    )
    assert result.exit_code == 0, result.output
    assert "copy the DINOv3 folder" in result.output
    assert sorted(p.name for p in (tmp_path / "h4d").iterdir()) == [
        OUTPUT_MARKER,  # written by helix4d: `--overwrite` may replace it
        "geometry_flow",
        "geometry_vae",
        "material_flow",
        "material_vae",
        "pipeline.json",
        "ss_flow",
        "ss_vae",
        "trellis2.json",
    ]
    state = load_file(str(tmp_path / "h4d" / "geometry_flow" / "model.safetensors"))
    assert state["blocks.1.mlp.0.weight"].dtype == torch.float32
    bad = CliRunner().invoke(
        app,
        ["convert", "trellis2", str(small_folder), "--out", str(tmp_path / "x"), "--dino", str(tmp_path / "nowhere")],
    )
    assert isinstance(bad.exception, InputError) and "download facebook/dinov3" in str(bad.exception)
    assert not (tmp_path / "x").exists()  # checked before anything is written


# ---------------------------------------------------------------------------------------------- 3. 4D RoPE
def _scores(q: torch.Tensor, k: torch.Tensor, pos: torch.Tensor, cfg: RopeConfig) -> torch.Tensor:
    ang = rope_angles(pos, cfg).double()
    return torch.einsum("nhd,mhd->hnm", apply_rope(q, ang), apply_rope(k, ang))  # (H, N, N)


def _frame(n: int, frame: int, seed: int) -> torch.Tensor:
    xyz = torch.randint(0, 64, (n, 3), generator=torch.Generator().manual_seed(seed))
    return torch.cat([torch.full((n, 1), frame), xyz], 1).double()


def test_add_mode_same_frame_attention_is_pretrained_3d_rope_exactly() -> None:
    """Trellis2 layout (head dim 128, 21 bands/axis, pair 63 unused): frame 0 is 3D RoPE bit for bit, and for any
    frame f the time rotations cancel between tokens of that frame (scores equal the 3D ones)."""
    rope4d = RopeConfig(head_dim=128, time_fraction=0.25, time_mode="add")
    rope3d = RopeConfig(head_dim=128, time_fraction=0.0)
    pos = _frame(50, 0, seed=1)
    assert torch.equal(rope_angles(pos, rope4d), rope_angles(pos, rope3d))  # identical angles at t = 0
    q, k = torch.randn(2, 50, 12, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for f in (1, 5, 31):
        pos_f = pos.clone()
        pos_f[:, 0] = f
        # equal up to the float32 rounding of the angles (TRELLIS' own phases are float32 too: ~1e-5 of scores ~10)
        torch.testing.assert_close(_scores(q, k, pos_f, rope4d), _scores(q, k, pos, rope3d), rtol=1e-4, atol=1e-4)
    # and time is encoded: the same tokens one frame apart score differently
    pos_b = pos.clone()
    pos_b[:, 0] = 1
    ang_a, ang_b = rope_angles(pos, rope4d).double(), rope_angles(pos_b, rope4d).double()
    cross = torch.einsum("nhd,mhd->hnm", apply_rope(q, ang_a), apply_rope(k, ang_b))
    assert (cross - _scores(q, k, pos, rope3d)).abs().max() > 1.0


def test_add_mode_attention_output_single_frame_equals_rho_zero() -> None:
    """A whole single-frame model forward (head dim 128): rho = 0.25 ('add') gives the rho = 0 output bit for bit."""
    torch.manual_seed(0)
    cfg = trellis2_flow_config("ss", depth=1)
    small = dict(dim=256, heads=2, mlp_ratio=2.0, cond_dim=16)  # head dim 128 as in TRELLIS.2
    m4 = FlowTransformer(type(cfg)(**{**cfg.to_dict(), **small}))
    m3 = FlowTransformer(type(cfg)(**{**cfg.to_dict(), **small, "time_fraction": 0.0}))
    with torch.no_grad():
        for p in m4.parameters():
            p.normal_(std=0.1)
    m3.load_state_dict(m4.state_dict())
    xyz, x = _tokens(40, 8, 16, seed=2)
    tokens, cond = SparseTensor.from_frames([xyz], [x]), torch.randn(1, 5, 16)
    with torch.no_grad():
        assert torch.equal(m4(tokens, torch.full((40,), 0.5), cond), m3(tokens, torch.full((40,), 0.5), cond))


def test_replace_mode_frame_zero_deviates_from_3d_by_the_dropped_bands_only() -> None:
    """docs/design.md §3.3 as written ('replace'): same-frame scores are frame-independent, but differ from 3D RoPE by
    the low bands 15-20, which rotate at most 10000^(-15/21) * 63 < 0.09 rad on a 64-voxel grid."""
    rep, rope3d = RopeConfig(head_dim=128), RopeConfig(head_dim=128, time_fraction=0.0)
    pos = _frame(50, 0, seed=3)
    dev = (rope_angles(pos, rep) - rope_angles(pos, rope3d)).abs().max().item()
    assert 0.0 < dev <= 10000.0 ** (-15 / 21) * 63 < 0.09
    q, k = torch.randn(2, 50, 4, 128, dtype=torch.float64)
    pos_f = pos.clone()
    pos_f[:, 0] = 7
    torch.testing.assert_close(_scores(q, k, pos_f, rep), _scores(q, k, pos, rep), rtol=1e-9, atol=1e-7)


# ---------------------------------------------------------------------------------------------- 4. DINO
def _normalised(images: torch.Tensor, size: int) -> torch.Tensor:
    x = F.interpolate(images[:, :3], size=(size, size), mode="bicubic", antialias=True).clamp(0, 1)  # as PIL's uint8
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_dinov3_tokens_are_the_last_layer_under_a_plain_layer_norm(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.DINOv3ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=16,
        image_size=64,
        num_register_tokens=4,
    )
    ref = transformers.DINOv3ViTModel(cfg).eval()
    with torch.no_grad():  # a learned final affine that TRELLIS.2 does NOT apply
        ref.norm.weight.normal_()
        ref.norm.bias.normal_()
    ref.save_pretrained(tmp_path / "dinov3")
    encoder = DinoEncoder.from_folder(tmp_path / "dinov3", image_size=64)
    images = torch.rand(3, 4, 48, 48)  # RGB + alpha at another size: resized, alpha unused
    tokens = encoder(images, batch=2)
    assert tokens.shape == (3, encoder.num_tokens, 32) == (3, 1 + 4 + 16, 32)
    with torch.no_grad():
        hidden = ref(pixel_values=_normalised(images, 64), output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(tokens, F.layer_norm(hidden, (32,)), rtol=1e-5, atol=1e-5)
    assert torch.equal(DinoEncoder.uncond(tokens), torch.zeros_like(tokens))


def test_dinov2_folder_also_works(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=14, image_size=56
    )
    transformers.Dinov2Model(cfg).save_pretrained(tmp_path / "dinov2")
    encoder = DinoEncoder.from_folder(tmp_path / "dinov2", image_size=56)
    tokens = encoder(torch.rand(2, 3, 56, 56))
    assert tokens.shape == (2, 1 + 16, 32)
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(2, 17), atol=1e-5, rtol=0)  # no affine after the norm


def test_missing_dino_folder_names_what_to_download(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=f"download {DINOV3}"):
        DinoEncoder.from_folder(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------- 5. SS decoder
def reference_ss_decode(sd: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """TRELLIS' decoder forward, written out (channel LayerNorm in float32, pixel_shuffle_3d as in trellis.modules)."""
    sd = {k: v.float() for k, v in sd.items()}
    conv = lambda p, x: F.conv3d(x, sd[p + ".weight"], sd[p + ".bias"], padding=1)  # noqa: E731

    def norm(p: str, x: torch.Tensor) -> torch.Tensor:  # ChannelLayerNorm32
        y = F.layer_norm(x.permute(0, 2, 3, 4, 1), x.shape[1:2], sd[p + ".weight"], sd[p + ".bias"])
        return y.permute(0, 4, 1, 2, 3)

    def res(p: str, x: torch.Tensor) -> torch.Tensor:
        return x + conv(p + "conv2", F.silu(norm(p + "norm2", conv(p + "conv1", F.silu(norm(p + "norm1", x))))))

    def shuffle(x: torch.Tensor) -> torch.Tensor:
        b, c, h, w, d = x.shape
        x = x.reshape(b, c // 8, 2, 2, 2, h, w, d).permute(0, 1, 5, 2, 6, 3, 7, 4)
        return x.reshape(b, c // 8, 2 * h, 2 * w, 2 * d)

    h = conv("input_layer", z)
    for i in range(1 + max(int(k.split(".")[1]) for k in sd if k.startswith("middle_block."))):
        h = res(f"middle_block.{i}.", h)
    for i in range(1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))):
        h = shuffle(conv(f"blocks.{i}.conv", h)) if f"blocks.{i}.conv.weight" in sd else res(f"blocks.{i}.", h)
    return conv("out_layer.2", F.silu(norm("out_layer.0", h)))


def test_ss_decoder_full_size_names_and_shapes() -> None:
    with torch.device("meta"):
        model = Trellis2SSDecoder(Trellis2SSDecoderConfig())
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == ss_decoder_shapes((512, 128, 32))
    assert ours["blocks.2.conv.weight"] == (1024, 512, 3, 3, 3) and model.resolution == 64


def test_ss_decoder_converts_and_decodes_like_trellis(small_folder: Path, tmp_path: Path) -> None:
    out = convert_trellis2(small_folder, tmp_path / "h4d")
    state = load_file(str(small_folder / f"{SS_DEC}.safetensors"))  # released as fp16
    decoder, config = load_trellis2_ss_decoder(small_folder / f"{SS_DEC}.json")
    z = torch.randn(2, 8, 4, 4, 4)
    with torch.no_grad():
        logits = decoder.decode(z)
        torch.testing.assert_close(logits, reference_ss_decode(state, z), rtol=1e-4, atol=1e-4)
    assert logits.shape == (2, 1, 16, 16, 16) and config.channels == tuple(SMALL_SS_DECODER["channels"])
    stored = load_file(str(out / "ss_vae" / "model.safetensors"))
    assert set(stored) == set(state) and torch.equal(stored["input_layer.weight"], state["input_layer.weight"].float())


def test_ss_decoder_mismatch_is_named(tmp_path: Path) -> None:
    args = dict(out_channels=1, latent_channels=8, num_res_blocks=1, num_res_blocks_middle=1, channels=[16, 8])
    (tmp_path / "dec.json").write_text(json.dumps({"name": "SparseStructureDecoder", "args": args}))
    state = random_state(ss_decoder_shapes((16, 8), res_blocks=1, middle=1), 1)
    del state["blocks.1.conv.bias"]
    save_file(state, str(tmp_path / "dec.safetensors"))
    with pytest.raises(ConfigError, match=r"missing \['blocks.1.conv.bias'\]"):
        load_trellis2_ss_decoder(tmp_path / "dec.json")
