"""TRELLIS.2's SC-VAE decoders, its flexible dual grid, and the whole pipeline on a TRELLIS.2-layout folder.

References are written here from TRELLIS.2's public code, independently of helix4d's modules: the decoder as
dense 3D convolutions with explicit child placement, the mesh extraction as `flexible_dual_grid_to_mesh`'s
quad table and split rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from trellis2_layout import (
    CKPTS,
    FULL_DECODER,
    SHAPE_DEC,
    SMALL,
    SMALL_DECODER,
    SMALL_SS_DECODER,
    SS_DEC,
    TEX_DEC,
    sc_decoder_args,
    sc_decoder_shapes,
    sc_encoder_args,
    sc_encoder_shapes,
    ss_decoder_shapes,
    ss_encoder_shapes,
    write_trellis2_folder,
)

from helix4d.data.build import build_synthetic
from helix4d.errors import ConfigError
from helix4d.ovoxel import dual_contour
from helix4d.pipeline import Helix4DPipeline, SamplingOptions
from helix4d.sparse import SparseTensor
from helix4d.train import TrainConfig, train
from helix4d.train.latents import encode_dataset
from helix4d.trellis2.architecture import trellis2_pipeline
from helix4d.trellis2.convert import convert_trellis2
from helix4d.trellis2.dual_grid import edges_to_trellis2, ovoxel_from_trellis2
from helix4d.trellis2.sc_vae import Trellis2SCVAEConfig, Trellis2SCVAEDecoder, Trellis2SCVAEEncoder
from helix4d.trellis2.ss_vae import Trellis2SSEncoder, Trellis2SSEncoderConfig

CHILD = [(k & 1, (k >> 1) & 1, (k >> 2) & 1) for k in range(8)]  # TRELLIS.2 child slot -> (x, y, z) bits


# ---------------------------------------------------------------------------------------------- structure
@pytest.mark.parametrize(
    "name,channels,pred_subdiv,count",
    [("FlexiDualGridVaeDecoder", 7, True, 474_231_463), ("SparseUnetVaeDecoder", 6, False, 474_216_006)],
)
def test_full_size_decoders_have_trellis2_names_and_shapes(
    name: str, channels: int, pred_subdiv: bool, count: int
) -> None:
    config = Trellis2SCVAEConfig.from_trellis(name, sc_decoder_args(channels, pred_subdiv, **FULL_DECODER), "ckpt")
    with torch.device("meta"):
        model = Trellis2SCVAEDecoder(config)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == sc_decoder_shapes(channels, pred_subdiv, **FULL_DECODER)
    assert sum(int(np.prod(s)) for s in ours.values()) == count and model.downsampling == 16


def test_full_size_encoders_have_trellis2_names_and_shapes() -> None:
    full = dict(model_channels=[64, 128, 256, 512, 1024], num_blocks=[0, 4, 8, 16, 4])
    args = {k: v for k, v in sc_encoder_args(6, **full).items() if k != "in_channels"}
    with torch.device("meta"):
        shape = Trellis2SCVAEEncoder(Trellis2SCVAEConfig.from_trellis("FlexiDualGridVaeEncoder", args, "ckpt"))
        ss = Trellis2SSEncoder(Trellis2SSEncoderConfig())
    assert {k: tuple(v.shape) for k, v in shape.state_dict().items()} == sc_encoder_shapes(6, **full)
    assert {k: tuple(v.shape) for k, v in ss.state_dict().items()} == ss_encoder_shapes((32, 128, 512))


def test_unsupported_sc_vae_variants_are_named() -> None:
    args = sc_decoder_args(6, False, **SMALL_DECODER)
    with pytest.raises(ConfigError, match="SparseResBlockUpsample3d"):
        Trellis2SCVAEConfig.from_trellis(
            "SparseUnetVaeDecoder", {**args, "up_block_type": ["SparseResBlockUpsample3d"] * 4}, "x"
        )
    with pytest.raises(ConfigError, match="unknown SC-VAE args \\['window'\\]"):
        Trellis2SCVAEConfig.from_trellis("SparseUnetVaeDecoder", {**args, "window": 8}, "x")
    with pytest.raises(ConfigError, match="not a TRELLIS.2 SC-VAE"):
        Trellis2SCVAEConfig.from_trellis("SLatMeshDecoder", args, "x")


# ---------------------------------------------------------------------------------------------- decoder
def _subm(x: torch.Tensor, mask: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Submanifold conv on a dense grid: FlexGEMM's weight [Co, 3, 3, 3, Ci], entry (a, b, c) at offset - 1."""
    return F.conv3d(x * mask, w.permute(0, 4, 1, 2, 3), b, padding=1) * mask


def _ln(x: torch.Tensor, sd: dict, p: str | None) -> torch.Tensor:
    y = F.layer_norm(x.permute(1, 2, 3, 0), x.shape[:1], sd.get(f"{p}.weight"), sd.get(f"{p}.bias"), eps=1e-6)
    return y.permute(3, 0, 1, 2)


def _lin(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    return torch.einsum("oc,cxyz->oxyz", sd[p + ".weight"], x) + sd[p + ".bias"][:, None, None, None]


def _place(children: torch.Tensor) -> torch.Tensor:
    """(8, C, R, R, R) per-slot values -> (C, 2R, 2R, 2R): slot k at offset (k&1, k>>1&1, k>>2&1)."""
    out = children.new_zeros(children.shape[1], *(2 * s for s in children.shape[2:]))
    for k, (i, j, m) in enumerate(CHILD):
        out[:, i::2, j::2, m::2] = children[k]
    return out


def dense_decode(
    sd: dict,
    latent: torch.Tensor,
    active: torch.Tensor,
    model_channels: list[int],
    num_blocks: list[int],
    masks: list[torch.Tensor] | None = None,
):
    """TRELLIS.2's SparseUnetVaeDecoder on a dense grid: latent (32, R, R, R), active (R, R, R) ->
    (output (C, R', R', R'), active fine grid, kept children per level (8, R_i, R_i, R_i)); `masks`: guided."""
    sd = {k: v.float() for k, v in sd.items()}
    m = active.float()[None]
    h = _lin(latent, sd, "from_latent") * m
    keeps = []
    for i, (c, n) in enumerate(zip(model_channels, num_blocks)):
        for j in range(n):
            p = f"blocks.{i}.{j}"
            y = _ln(_subm(h, m, sd[p + ".conv.weight"], sd[p + ".conv.bias"]), sd, p + ".norm")
            h = h + _lin(F.silu(_lin(y, sd, p + ".mlp.0")), sd, p + ".mlp.2") * m
        if i + 1 == len(model_channels):
            break
        p, o = f"blocks.{i}.{n}", model_channels[i + 1]
        keep = (_lin(h, sd, p + ".to_subdiv") > 0) & (m > 0) if masks is None else masks[i]
        keeps.append(keep)
        fine = _place(keep.float()[:, None])  # (1, 2R, 2R, 2R)
        h1 = _subm(F.silu(_ln(h, sd, p + ".norm1")), m, sd[p + ".conv1.weight"], sd[p + ".conv1.bias"])
        h1 = _place(h1.view(8, o, *h.shape[1:])) * fine
        skip = _place(h.view(8, c // 8, *h.shape[1:])).repeat_interleave(o // (c // 8), dim=0) * fine
        h = _subm(F.silu(_ln(h1, sd, None)), fine, sd[p + ".conv2.weight"], sd[p + ".conv2.bias"]) + skip
        m = fine
    out = _lin(F.layer_norm(h.permute(1, 2, 3, 0), h.shape[:1]).permute(3, 0, 1, 2), sd, "output_layer")
    return out, m[0] > 0, keeps


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trellis2_folder(tmp_path_factory.mktemp("t2") / "t2", dict.fromkeys(CKPTS, 1), SMALL, seed=3)


def _decoder(folder: Path, stem: str) -> tuple[Trellis2SCVAEDecoder, dict]:
    raw = json.loads((folder / f"{stem}.json").read_text())
    model = Trellis2SCVAEDecoder(Trellis2SCVAEConfig.from_trellis(raw["name"], raw["args"], stem))
    sd = load_file(str(folder / f"{stem}.safetensors"))
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    return model.eval(), sd


def test_shape_and_texture_decoders_match_trellis2_on_a_dense_grid(small_folder: Path) -> None:
    shape, shape_sd = _decoder(small_folder, SHAPE_DEC)
    tex, tex_sd = _decoder(small_folder, TEX_DEC)
    g = torch.Generator().manual_seed(0)
    coarse = torch.tensor([[1, 1, 1], [1, 1, 2], [2, 1, 1], [0, 2, 2]])
    latent, tex_latent = torch.randn(4, 32, generator=g), torch.randn(4, 32, generator=g)
    with torch.no_grad():
        decoded = shape.decode(SparseTensor.of_sequence([coarse], latent))
        textured = tex.decode(SparseTensor.of_sequence([coarse], tex_latent), guide=decoded).voxels
    out = decoded.voxels
    x, y, z = coarse.T

    def dense(values: torch.Tensor) -> torch.Tensor:  # (4, 32) tokens -> (32, 4, 4, 4) grid
        grid = torch.zeros(32, 4, 4, 4)
        grid[:, x, y, z] = values.T
        return grid

    active = torch.zeros(4, 4, 4, dtype=torch.bool)
    active[x, y, z] = True
    mc, nb = SMALL_DECODER["model_channels"], SMALL_DECODER["num_blocks"]
    ref, ref_active, keeps = dense_decode(shape_sd, dense(latent), active, mc, nb)
    assert out.coords.shape[0] == int(ref_active.sum()) > 100  # the same voxels survive the learned pruning...
    assert torch.equal(ref_active[tuple(out.coords[:, 1:].T)], torch.ones(out.coords.shape[0], dtype=torch.bool))
    torch.testing.assert_close(out.feats, ref[:, *out.coords[:, 1:].T].T, rtol=1e-4, atol=1e-4)  # ...with its values
    tex_ref, _, _ = dense_decode(tex_sd, dense(tex_latent), active, mc, nb, keeps)
    assert torch.equal(textured.coords, out.coords)  # guided: the shape decoder's voxels, row for row
    torch.testing.assert_close(textured.feats, tex_ref[:, *out.coords[:, 1:].T].T, rtol=1e-4, atol=1e-4)
    attrs = tex.features(textured.feats)
    torch.testing.assert_close(attrs, textured.feats * 0.5 + 0.5)


def test_encoder_downsamples_16x_onto_the_parents() -> None:
    config = Trellis2SCVAEConfig(
        role="encoder", channels=6, model_channels=(8, 8, 16, 32, 64), num_blocks=(0, 1, 1, 0, 1)
    )
    encoder = Trellis2SCVAEEncoder(config)
    fine = [torch.tensor([[17, 3, 40], [18, 3, 40], [100, 99, 1]]), torch.tensor([[17, 3, 40]])]
    latent, logvar = encoder.encode(SparseTensor.of_sequence(fine, torch.randn(4, 6)))
    assert latent.feats.shape == logvar.shape == (3, 32)
    assert latent.coords.tolist() == [[0, 1, 0, 2], [0, 6, 6, 0], [1, 1, 0, 2]]  # frames never mix


# ---------------------------------------------------------------------------------------------- dual grid
QUADS = [
    [[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0]],  # flexible_dual_grid_to_mesh's edge_neighbor_voxel_offset
    [[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1]],
    [[0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0]],
]


def trellis2_triangles(coords: np.ndarray, intersected: np.ndarray, lerp: np.ndarray) -> set[frozenset]:
    """TRELLIS.2's mesh as a set of triangles, each the set of its vertices' voxels (orientation ignored)."""
    index = {tuple(c): i for i, c in enumerate(coords)}
    tris = set()
    for i, a in zip(*np.nonzero(intersected)):
        quad = [index.get(tuple(coords[i] + np.array(o))) for o in QUADS[a]]
        if None in quad:
            continue
        w = lerp[quad]
        split = [[0, 1, 2], [0, 2, 3]] if w[0] * w[2] > w[1] * w[3] else [[0, 1, 3], [3, 1, 2]]
        tris |= {frozenset(tuple(coords[quad[k]]) for k in t) for t in split}
    return tris


def test_dual_grid_gives_trellis2s_triangles() -> None:
    rng = np.random.default_rng(0)
    coords = np.argwhere(rng.random((7, 7, 7)) < 0.7) + 100
    n = len(coords)
    verts = rng.uniform(-0.5, 1.5, (n, 3))  # the decoder's margin: vertices may leave their voxel
    logits = rng.normal(size=(n, 3))
    lerp = rng.uniform(0.01, 2.0, n)
    features = torch.from_numpy(np.concatenate([verts, logits, lerp[:, None]], 1))
    ovoxel = ovoxel_from_trellis2(256, torch.from_numpy(coords), features)
    t = ovoxel.to_torch()
    v, faces, used = dual_contour(t["coords"], t["dual"], t["edges"], t["edge_sign"], t["split"], 256)
    voxel = ovoxel.coords[used.numpy()]  # (V, 3) the voxel of each vertex
    ours = {frozenset(tuple(voxel[i]) for i in f) for f in faces.tolist()}
    theirs = trellis2_triangles(coords, logits > 0, lerp)
    assert len(theirs) > 100 and ours == theirs
    np.testing.assert_allclose(v.numpy(), (voxel + ovoxel.dual[used.numpy()]) / 256 - 0.5, atol=1e-6)  # unclamped
    assert ovoxel.dual.min() < 0 and ovoxel.dual.max() > 1
    # and back, for the encoders: every flag whose edge has its voxel in our convention returns unchanged
    present = {tuple(c) for c in coords}
    kept = np.array(
        [
            [logits[i, a] > 0 and tuple(coords[i] + 1 - np.eye(3, dtype=int)[a]) in present for a in range(3)]
            for i in range(n)
        ]
    )
    back = edges_to_trellis2(torch.from_numpy(ovoxel.coords.astype(np.int64)), torch.from_numpy(ovoxel.edges))
    order = np.lexsort(coords.T[::-1])
    np.testing.assert_array_equal(back.numpy(), kept[order])


# ---------------------------------------------------------------------------------------------- pipeline
def _controlled_decoders() -> dict:
    """Weights that make the outcome known: the stage-1 decoder occupies exactly the 8 corners of its grid
    (zero-padded convolution: a corner sees 8 neighbours, everything else ≥ 12), the shape decoder keeps child 0
    three times then all 8 children (a 2×2×2 block per coarse voxel, all edges crossed, vertices centred), the
    texture decoder outputs one colour."""
    ss = {k: torch.zeros(s) for k, s in ss_decoder_shapes(tuple(SMALL_SS_DECODER["channels"]), 8, 1, 1).items()}
    ss["out_layer.0.bias"] = torch.ones(8)
    ss["out_layer.2.weight"] = -torch.ones(1, 8, 3, 3, 3)
    ss["out_layer.2.bias"] = torch.tensor([F.silu(torch.tensor(1.0)).item() * 8 * 10])
    shape = {k: torch.zeros(s) for k, s in sc_decoder_shapes(7, True, **SMALL_DECODER).items()}
    only_first = torch.tensor([1.0] + [-1.0] * 7)
    for level, block in enumerate(["blocks.0.1", "blocks.1.1", "blocks.2.0", "blocks.3.0"]):
        shape[f"{block}.to_subdiv.bias"] = only_first if level < 3 else torch.ones(8)
    shape["output_layer.bias"] = torch.tensor([0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 0.0])
    tex = {k: torch.zeros(s) for k, s in sc_decoder_shapes(6, False, **SMALL_DECODER).items()}
    tex["output_layer.bias"] = torch.tensor([0.6, -0.2, 0.0, -1.0, 0.0, 1.0])
    return {"edit": {SS_DEC: ss, SHAPE_DEC: shape, TEX_DEC: tex}}


@pytest.fixture(scope="module")
def dino_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.DINOv3ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=16,
        image_size=512,
        num_register_tokens=4,
    )
    folder = tmp_path_factory.mktemp("dino") / "dinov3"
    torch.manual_seed(0)
    transformers.DINOv3ViTModel(cfg).save_pretrained(folder)
    return folder


def test_generate_on_trellis2_weights_and_on_the_converted_folder(dino_folder: Path, tmp_path: Path) -> None:
    src = write_trellis2_folder(
        tmp_path / "t2", dict.fromkeys(CKPTS, 1), {**SMALL, "cond_channels": 32}, decoders=_controlled_decoders()
    )
    pipe = trellis2_pipeline(src, dino=dino_folder)
    assert pipe.config.architecture == "trellis2" and pipe.config.sampling["geometry"].cfg_rescale == 0.5
    yy, xx = np.mgrid[:512, :512]
    disk = (((yy - 256) ** 2 + (xx - 256) ** 2) < 150**2).astype(np.float32)
    images = np.stack([np.stack([disk * 0.8, disk * (0.2 + 0.2 * f), disk * 0.4, disk]) for f in range(3)])
    asset = pipe.generate(images, SamplingOptions(steps=2))
    corners = {(x, y, z) for x in (0, 31) for y in (0, 31) for z in (0, 31)}
    for ovoxel, mesh in zip(asset.ovoxels, asset.meshes):
        assert len(ovoxel) == 64 and {tuple(c // 16) for c in ovoxel.coords} == corners
        assert len(mesh.faces) == 8 * 6 * 2  # each 2×2×2 block: two edge segments per axis inside it, a quad each
        np.testing.assert_allclose(np.abs(mesh.vertices).max(), 0.5 - 0.5 / 512, atol=1e-6)
        np.testing.assert_allclose(ovoxel.attrs[0], [0.8, 0.4, 0.5, 0.0, 0.5, 1.0], atol=1e-3)
    out = convert_trellis2(src, tmp_path / "h4d", dino=dino_folder)
    again = Helix4DPipeline.from_pretrained(out).generate(images, SamplingOptions(steps=2))
    for a, b in zip(asset.meshes, again.meshes):
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.faces, b.faces)


def test_cascade_refines_512_into_1024(dino_folder: Path, tmp_path: Path) -> None:
    """TRELLIS.2's default mode: a 512 geometry pass places the 1024 models' voxels. With the controlled decoders
    the 512 pass keeps one 2×2×2 block per corner voxel c (at 16c), which lands on latent voxel 2c of the 64³
    grid, whose 1024 decoding is the block at 32c."""
    src = write_trellis2_folder(
        tmp_path / "t2",
        dict.fromkeys(CKPTS, 1),
        {**SMALL, "cond_channels": 32},
        decoders=_controlled_decoders(),
        with_1024=True,
    )
    out = convert_trellis2(src, tmp_path / "h4d", resolution=1024, cascade=True, dino=dino_folder)
    pipe = Helix4DPipeline.from_pretrained(out)
    assert pipe.config.cascade_from == 512 and "geometry_flow_lr" in pipe.components
    asset = pipe.generate(np.zeros((2, 4, 512, 512), np.float32), SamplingOptions(steps=2))
    corners = {(x, y, z) for x in (0, 31) for y in (0, 31) for z in (0, 31)}
    for ovoxel, mesh in zip(asset.ovoxels, asset.meshes):
        assert ovoxel.resolution == 1024 and len(ovoxel) == 64
        assert {tuple(c // 32) for c in ovoxel.coords} == corners and set((ovoxel.coords % 32).ravel()) == {0, 1}
        assert len(mesh.faces) == 8 * 6 * 2
    with pytest.raises(ConfigError, match="use resolution 1024"):
        convert_trellis2(src, tmp_path / "bad", cascade=True)


def test_converted_folder_without_dino_says_what_to_copy(small_folder: Path, tmp_path: Path) -> None:
    out = convert_trellis2(small_folder, tmp_path / "h4d", dtype="float32")
    with pytest.raises(ConfigError, match="copy its files into .*image_encoder"):
        Helix4DPipeline.from_pretrained(out)


def test_missing_stage1_decoder_names_where_it_comes_from(tmp_path: Path) -> None:
    src = write_trellis2_folder(tmp_path / "t2", dict.fromkeys(CKPTS, 1), SMALL)
    (src / f"{SS_DEC}.json").unlink()
    with pytest.raises(ConfigError, match="microsoft/TRELLIS-image-large"):
        convert_trellis2(src, tmp_path / "out")


def test_fine_tuning_without_encoders_or_of_the_vaes_is_refused_clearly(small_folder: Path, tmp_path: Path) -> None:
    out = convert_trellis2(small_folder, tmp_path / "h4d", dtype="float32")
    with pytest.raises(ConfigError, match="fine-tuning needs TRELLIS.2's encoders. Download ckpts/shape_enc_next_dc"):
        encode_dataset(out, tmp_path / "data", tmp_path / "latents")
    config = TrainConfig(
        task="sc_vae",
        task_options={"model": str(out), "component": "geometry_vae"},
        out=str(tmp_path / "run"),
        steps=1,
        device="cpu",
        precision="fp32",
    )
    with pytest.raises(ConfigError, match="its VAEs are used as released"):
        train(config)


def test_fine_tune_the_temporal_copies_of_trellis2_on_new_data(dino_folder: Path, tmp_path: Path) -> None:
    src = write_trellis2_folder(
        tmp_path / "t2", dict.fromkeys(CKPTS, 1), {**SMALL, "cond_channels": 32}, decoders={"encoders": True}
    )
    model = convert_trellis2(src, tmp_path / "model", dtype="float32", dino=dino_folder)
    assert json.loads((model / "trellis2.json").read_text())["encoders"] == [
        "geometry_encoder",
        "material_encoder",
        "ss_encoder",
    ]
    build_synthetic(
        tmp_path / "data",
        count=1,
        frames=3,
        resolution=512,
        image_size=512,
        views=1,
        workers=0,
        kinds=["split"],
        progress=False,
    )
    stats = encode_dataset(model, tmp_path / "data", tmp_path / "latents")
    record = torch.load(next((tmp_path / "latents").glob("*.pt")), weights_only=True)
    assert record["ss"].shape == (3, 8, 16, 16, 16) and record["images"].shape == (3, 4, 512, 512)
    assert record["geometry"].shape[1] == record["material"].shape[1] == 32 and record["coarse"][:, 1:].max() < 32
    assert len(stats["geometry"].mean) == 32
    before = load_file(str(model / "geometry_flow" / "model.safetensors"))
    config = TrainConfig(
        task="flow",
        task_options={
            "model": str(model),
            "stage": "geometry",
            "temporal": True,
            "clip_frames": 3,
            "latents": str(tmp_path / "latents"),
        },
        out=str(tmp_path / "run"),
        steps=2,
        batch_size=1,
        lr=1e-3,
        warmup_steps=0,
        log_every=1,
        ema_decay=0.0,
        checkpoint_every=1000,
        device="cpu",
        precision="fp32",
    )
    train(config)
    after = load_file(str(model / "geometry_flow" / "model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".temporal_attn." in k for k in changed)  # only the temporal copies move
