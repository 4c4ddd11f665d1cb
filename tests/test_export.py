"""Export: GLB (per frame, animated), USD, texture baking, preview video and the folder layout.

GLBs are checked with the Khronos glTF validator (node + npm package `gltf-validator` under tests/js, installed
on first use with `npm ci --prefix tests/js`); those checks skip when node/npm are unavailable.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh

from helix4d.errors import BackendUnavailableError, InputError
from helix4d.export import (
    bake_textures,
    check_usd,
    export_asset,
    ovoxel_sampler,
    preview_frame_count,
    render_preview,
    simplify_mesh,
    write_animated_glb,
    write_glb,
    write_usd,
)
from helix4d.export.animated import MORPH_TOLERANCE, MorphSegment, frame_keys, write_segments_glb
from helix4d.export.surface import surface_arrays
from helix4d.export.tracking import TrackingConfig
from helix4d.export.usd import usd_writer
from helix4d.ovoxel import OVoxel, set_vertex_pbr

JS_DIR = Path(__file__).parent / "js"
FPS = 8.0


# ---------------------------------------------------------------------------------------------- helpers
def gradient(points: np.ndarray) -> np.ndarray:
    """An attribute function that varies over the surface: colour = position, metallic 0.25, roughness 0.75."""
    points = np.asarray(points, dtype=np.float32)
    out = np.empty((len(points), 6), np.float32)
    out[:, :3] = np.clip(points + 0.5, 0.0, 1.0)
    out[:, 3], out[:, 4], out[:, 5] = 0.25, 0.75, 1.0
    return out


def pbr_mesh(mesh: trimesh.Trimesh, alpha: float = 1.0) -> trimesh.Trimesh:
    attrs = gradient(mesh.vertices)
    attrs[:, 5] = alpha
    return set_vertex_pbr(mesh, attrs)


@pytest.fixture
def frames() -> list[trimesh.Trimesh]:
    """Three frames with different topologies (vertex and face counts all differ); frame 1 is translucent."""
    return [
        pbr_mesh(trimesh.creation.icosphere(1, radius=0.3)),
        pbr_mesh(trimesh.creation.icosphere(2, radius=0.35), alpha=0.5),
        pbr_mesh(trimesh.creation.box((0.5, 0.4, 0.3))),
    ]


@pytest.fixture(scope="session")
def gltf_validator():
    """Callable(paths) -> list of validator reports; skips when node/npm cannot provide the Khronos validator."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        pytest.skip("node is not installed: the Khronos glTF validator (npm gltf-validator) cannot run")
    if not (JS_DIR / "node_modules" / "gltf-validator").is_dir():
        if npm is None:
            pytest.skip("npm is not installed: cannot install gltf-validator (npm ci --prefix tests/js)")
        done = subprocess.run(
            [npm, "ci", "--prefix", str(JS_DIR), "--no-audit", "--no-fund"], capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            pytest.skip(f"npm ci --prefix tests/js failed (offline?): {done.stderr.strip()[-300:]}")

    def validate(*paths: Path) -> list[dict]:
        done = subprocess.run(
            [node, str(JS_DIR / "gltf_validate.mjs"), *map(str, paths)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return json.loads(done.stdout)

    return validate


def assert_valid(validate, *paths: Path) -> None:
    for report in validate(*paths):
        assert report["numErrors"] == 0, report["errors"]
        assert report["numWarnings"] == 0, report["warnings"]


def accessor_reader(gltf: pygltflib.GLTF2):
    """Callable(accessor index) -> (count, width) float32 array of a loaded GLB's binary chunk (float32 or, as
    KHR_mesh_quantization stores morph targets, normalised BYTE / SHORT with a byte stride, or unsigned integers as
    skins' joints are; zeros without a buffer view, as the specification reads them)."""
    blob = gltf.binary_blob()
    kinds = {pygltflib.FLOAT: (np.float32, 1.0), pygltflib.SHORT: (np.int16, 32767.0), pygltflib.BYTE: (np.int8, 127.0)}
    kinds |= {pygltflib.UNSIGNED_BYTE: (np.uint8, 255.0), pygltflib.UNSIGNED_SHORT: (np.uint16, 65535.0)}  # JOINTS_0

    def read(index: int) -> np.ndarray:
        acc = gltf.accessors[index]
        width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}[acc.type]
        if acc.bufferView is None:
            return np.zeros((acc.count, width), np.float32)
        view = gltf.bufferViews[acc.bufferView]
        dtype, one = kinds[acc.componentType]
        stride = (view.byteStride or width * np.dtype(dtype).itemsize) // np.dtype(dtype).itemsize
        start = view.byteOffset + (acc.byteOffset or 0)
        data = np.frombuffer(blob, dtype, (acc.count - 1) * stride + width, start)
        rows = np.lib.stride_tricks.as_strided(data, (acc.count, width), (stride * data.itemsize, data.itemsize))
        values = rows.astype(np.float32)
        return np.maximum(values / one, -1.0) if acc.normalized else values

    return read


def sample_bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(N, C) float values of an (S, S, C) uint8 texture at glTF UVs (origin = first pixel), clamped bilinear."""
    size = image.shape[0]
    x, y = uv[:, 0] * size - 0.5, uv[:, 1] * size - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    px = lambda yy, xx: image[np.clip(yy, 0, size - 1), np.clip(xx, 0, size - 1)].astype(np.float64)  # noqa: E731
    top = px(y0, x0) * (1 - fx) + px(y0, x0 + 1) * fx
    bottom = px(y0 + 1, x0) * (1 - fx) + px(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


# ---------------------------------------------------------------------------------------------- baking
def test_bake_reproduces_a_constant_colour(frames):
    mesh = frames[0].copy()
    set_vertex_pbr(mesh, np.tile(np.float32([[0.8, 0.4, 0.2, 0.3, 0.6, 1.0]]), (len(mesh.vertices), 1)))
    baked = bake_textures(mesh, size=64)
    assert baked.base_color.shape == (64, 64, 4) and baked.metallic_roughness.shape == (64, 64, 3)
    assert baked.coverage.mean() > 0.2  # charts cover a fair part of the atlas
    expected = np.array([0.8, 0.4, 0.2, 1.0]) * 255
    covered = baked.base_color[baked.coverage].astype(np.float64)
    assert np.abs(covered - expected).mean() < 2.0
    at_uv = sample_bilinear(baked.base_color, baked.uv)  # what a viewer shows at the vertices
    assert np.abs(at_uv - expected).mean() < 2.0
    mr = sample_bilinear(baked.metallic_roughness, baked.uv)
    assert np.abs(mr[:, 1] - 0.6 * 255).max() < 1.0 and np.abs(mr[:, 2] - 0.3 * 255).max() < 1.0  # G rough, B metal


def test_bake_samples_attribute_fn_at_the_surface(frames):
    mesh = frames[1]
    baked = bake_textures(mesh, attribute_fn=gradient, size=128)
    # the unwrapped mesh splits vertices at seams but keeps positions and faces' geometry
    assert len(baked.mesh.faces) == len(mesh.faces) and len(baked.uv) == len(baked.mesh.vertices)
    assert np.allclose(baked.mesh.area, mesh.area)
    at_uv = sample_bilinear(baked.base_color, baked.uv)[:, :3] / 255.0
    err = np.abs(at_uv - gradient(baked.mesh.vertices)[:, :3])
    assert err.mean() < 2.0 / 255.0 and err.max() < 0.05
    # the vertical flip would put colours of the wrong place at the vertices
    flipped = sample_bilinear(baked.base_color, baked.uv * [1, -1] + [0, 1])[:, :3] / 255.0
    assert np.abs(flipped - gradient(baked.mesh.vertices)[:, :3]).mean() > 10 * err.mean()


def test_simplify_meets_the_budget_and_keeps_colours(frames):
    mesh = pbr_mesh(trimesh.creation.icosphere(3, radius=0.4))
    simple = simplify_mesh(mesh, max_faces=200)
    assert len(simple.faces) <= 200 and len(simple.faces) > 100
    colours = np.asarray(simple.visual.vertex_colors[:, :3], np.float64) / 255.0
    assert np.abs(colours - gradient(simple.vertices)[:, :3]).mean() < 0.02
    assert np.allclose(simple.vertex_attributes["roughness"], 0.75, atol=1e-3)
    assert simplify_mesh(mesh, max_faces=10**6) is mesh


def test_ovoxel_sampler_returns_voxel_attributes():
    vox = OVoxel(
        resolution=4,
        coords=np.array([[0, 0, 0], [3, 3, 3]]),
        dual=np.full((2, 3), 0.5),
        edges=np.zeros((2, 3), bool),
        edge_sign=np.zeros((2, 3), bool),
        split=np.zeros(2),
        attrs=np.array([[1, 0, 0, 0.1, 0.2, 1.0], [0, 0, 1, 0.9, 0.8, 0.5]]),
    )
    got = ovoxel_sampler(vox)(vox.positions() + 0.01)
    assert np.allclose(got, vox.attrs, atol=1e-3)


# ---------------------------------------------------------------------------------------------- GLB
def test_vertex_colour_glb_is_valid(tmp_path, frames, gltf_validator):
    opaque, translucent = write_glb(frames[0], tmp_path / "a.glb"), write_glb(frames[1], tmp_path / "b.glb")
    assert_valid(gltf_validator, opaque, translucent)
    for path, mode in ((opaque, "OPAQUE"), (translucent, "BLEND")):
        gltf = pygltflib.GLTF2().load(str(path))
        primitive = gltf.meshes[0].primitives[0]
        assert primitive.attributes.COLOR_0 is not None and primitive.attributes.TEXCOORD_0 is None
        material = gltf.materials[primitive.material]
        assert material.alphaMode == mode
        assert material.pbrMetallicRoughness.metallicFactor == pytest.approx(0.25, abs=1e-3)
        assert material.pbrMetallicRoughness.roughnessFactor == pytest.approx(0.75, abs=1e-3)


def test_textured_glb_is_valid_and_reads_back(tmp_path, frames, gltf_validator):
    opaque = write_glb(bake_textures(frames[0], size=64), tmp_path / "a.glb")
    translucent = write_glb(bake_textures(frames[1], size=64), tmp_path / "b.glb")
    assert_valid(gltf_validator, opaque, translucent)
    assert pygltflib.GLTF2().load(str(translucent)).materials[0].alphaMode == "BLEND"
    gltf = pygltflib.GLTF2().load(str(opaque))
    assert gltf.materials[0].alphaMode == "OPAQUE" and len(gltf.images) == 2
    # an independent reader (trimesh) maps the texture back onto the vertices with the right colours
    mesh = trimesh.load(opaque, force="mesh")
    colours = np.asarray(mesh.visual.to_color().vertex_colors[:, :3], np.float64) / 255.0
    assert np.abs(colours - gradient(mesh.vertices)[:, :3]).mean() < 3.0 / 255.0


def test_empty_frame_glb_is_valid(tmp_path, gltf_validator):
    assert_valid(gltf_validator, write_glb(trimesh.Trimesh(), tmp_path / "empty.glb"))


def test_animated_glb_shows_each_frame_in_its_slot(tmp_path, frames, gltf_validator):
    mixed = [frames[0], bake_textures(frames[1], size=64), frames[2]]
    path = write_animated_glb(mixed, tmp_path / "animated.glb", FPS)
    assert_valid(gltf_validator, path)

    gltf = pygltflib.GLTF2().load(str(path))
    read = accessor_reader(gltf)
    (animation,) = gltf.animations
    nodes = [c.target.node for c in animation.channels]
    assert len(set(nodes)) == len(mixed) and all(c.target.path == "scale" for c in animation.channels)
    assert all(s.interpolation == "STEP" for s in animation.samplers)
    positions = [gltf.meshes[gltf.nodes[n].mesh].primitives[0].attributes.POSITION for n in nodes]
    vertex_counts = [gltf.accessors[p].count for p in positions]
    assert vertex_counts == [len(frames[0].vertices), len(mixed[1].mesh.vertices), len(frames[2].vertices)]
    for k in range(len(mixed)):  # at the middle of slot k exactly node k has scale 1
        t = (k + 0.5) / FPS
        visible = []
        for channel in animation.channels:
            sampler = animation.samplers[channel.sampler]
            times, scales = read(sampler.input)[:, 0], read(sampler.output)
            visible.append(scales[np.searchsorted(times, t, side="right") - 1][0])
        assert visible == [float(j == k) for j in range(len(mixed))]
    assert max(read(s.input).max() for s in animation.samplers) == pytest.approx(len(mixed) / FPS)


def stretching_clip(count: int = 4) -> list[trimesh.Trimesh]:
    """An ellipsoid stretching along x, meshed anew every frame (alternating resolutions: no shared vertices)."""
    clip = []
    for k in range(count):
        mesh = trimesh.creation.icosphere(2 + k % 2, radius=0.2)
        mesh.vertices = mesh.vertices * [1.0 + 0.08 * k, 1.0, 1.0 - 0.03 * k]
        clip.append(pbr_mesh(mesh))
    return clip


def test_morph_target_glb_plays_a_tracked_segment(tmp_path, gltf_validator):
    clip = stretching_clip()
    tracking = TrackingConfig(iterations=30, samples=500)
    files = export_asset(clip, tmp_path / "morph", FPS, formats={"animated"}, texture_size=32, tracking=tracking)
    legacy = export_asset(clip, tmp_path / "nodes", FPS, formats={"animated"}, texture_size=32, tracking=None)
    assert_valid(gltf_validator, files.animated)
    assert [(s.start, s.stop) for s in files.segments] == [(0, 4)] and files.segments[0].max_cd <= 1 / 32
    gltf = pygltflib.GLTF2().load(str(files.animated))
    read = accessor_reader(gltf)
    (mesh,) = gltf.meshes
    (primitive,) = mesh.primitives
    assert len(primitive.targets) == 6 and mesh.weights == [0.0] * 6 and len(gltf.images) == 2  # one texture pair
    (animation,) = gltf.animations
    weights = next(c for c in animation.channels if c.target.path == "weights")
    times, values = (
        read(animation.samplers[weights.sampler].input)[:, 0],
        read(animation.samplers[weights.sampler].output).reshape(4, 6),
    )
    assert times.tolist() == pytest.approx([0.0, 1 / FPS, 2 / FPS, 3 / FPS])
    assert np.array_equal(values != 0, np.eye(4, 3, k=-1).repeat(2, axis=1) != 0)  # frame k: its pair alone
    assert 0 < values[1:, 1::2].max() <= 2.0  # shading targets: their scale too (a unit normal turns by at most 2)
    assert {gltf.accessors[t["NORMAL"]].componentType for t in primitive.targets[1::2]} == {pygltflib.BYTE}
    base = read(primitive.attributes.POSITION)
    shape, shading = primitive.targets[4], primitive.targets[5]  # frame 3's pair
    last = base + values[3, 4] * read(shape["POSITION"]) + read(shading["POSITION"])
    assert np.abs(read(shape["NORMAL"])).max() == 0 and np.abs(read(shading["POSITION"])).max() == 0
    assert gltf.accessors[shape["NORMAL"]].bufferView is None  # a still attribute takes no bytes
    assert last[:, 0].max() == pytest.approx(clip[3].vertices[:, 0].max(), abs=0.02)
    assert files.animated.stat().st_size * 2.5 < legacy.animated.stat().st_size  # 4 frames: one mesh + textures


def test_morph_targets_round_each_vertex_within_the_tolerance(tmp_path):
    """A small motion fits 8-bit shape targets, a large one needs 16 bits; both rebuild every vertex within
    MORPH_TOLERANCE, and the 8-bit shading targets rebuild every normal, even one turned around, within 2 degrees."""
    mesh = pbr_mesh(trimesh.creation.icosphere(2, radius=0.3))
    rng = np.random.default_rng(0)
    small = mesh.vertices + rng.uniform(-0.004, 0.004, mesh.vertices.shape)  # |shift| well under a voxel
    large = mesh.vertices * [3.0, 1.0, 0.7] + rng.uniform(-0.01, 0.01, mesh.vertices.shape)
    turned = mesh.vertices * [-1.0, 1.0, -1.0]  # half a turn about y: normals turn by up to 180 degrees
    positions = np.stack([mesh.vertices, small, large, turned])  # (4, V, 3)
    path = write_segments_glb([MorphSegment(0, mesh, positions)], tmp_path / "a.glb", FPS)
    gltf = pygltflib.GLTF2().load(str(path))
    read = accessor_reader(gltf)
    (primitive,) = gltf.meshes[0].primitives
    (animation,) = gltf.animations
    weights = next(c for c in animation.channels if c.target.path == "weights")
    values = read(animation.samplers[weights.sampler].output).reshape(4, 6)
    components = [gltf.accessors[t["POSITION"]].componentType for t in primitive.targets[::2]]
    assert components == [pygltflib.BYTE, pygltflib.SHORT, pygltflib.SHORT]
    assert {gltf.accessors[t["NORMAL"]].componentType for t in primitive.targets[1::2]} == {pygltflib.BYTE}
    base, base_normals = read(primitive.attributes.POSITION), read(primitive.attributes.NORMAL)
    for k, expected in ((1, small), (2, large), (3, turned)):
        rebuilt = base + sum(w * read(t["POSITION"]) for w, t in zip(values[k], primitive.targets))
        assert np.linalg.norm(rebuilt - expected, axis=1).max() <= MORPH_TOLERANCE
        normals = base_normals + sum(w * read(t["NORMAL"]) for w, t in zip(values[k], primitive.targets))
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        truth = trimesh.Trimesh(expected, mesh.faces, process=False).vertex_normals
        assert np.degrees(np.arccos(np.clip((normals * truth).sum(1), -1, 1))).max() < 2.0


def test_quantized_morph_targets_play_in_blender(tmp_path, gltf_validator):
    """The morph targets are stored as normalised integers (KHR_mesh_quantization); Blender's glTF importer reads
    them back to the tracked motion."""
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("bpy (Blender as a Python module, the blender extra) is not installed")
    from helix4d.data import blender

    clip = stretching_clip()
    tracking = TrackingConfig(iterations=30, samples=500)
    files = export_asset(clip, tmp_path, FPS, formats={"animated"}, texture_size=None, tracking=tracking)
    assert_valid(gltf_validator, files.animated)
    gltf = pygltflib.GLTF2().load(str(files.animated))
    assert gltf.extensionsRequired == ["KHR_mesh_quantization"]
    shape = gltf.meshes[0].primitives[0].targets[-2]
    assert gltf.accessors[shape["POSITION"]].componentType == pygltflib.BYTE
    asset = blender.import_animated(files.animated, frames=len(clip))
    width = [np.ptp(m.vertices[:, 0]) / np.ptp(m.vertices[:, 2]) for m in asset.meshes]  # x over z: scale-free
    expected = [np.ptp(m.vertices[:, 0]) / np.ptp(m.vertices[:, 2]) for m in clip]
    assert width[-1] == pytest.approx(expected[-1], rel=0.05) and width[0] == pytest.approx(expected[0], rel=0.05)


_BLENDER_ABC = """
import bpy, json, sys
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.fps = int(sys.argv[2])
bpy.ops.wm.alembic_import(filepath=sys.argv[1], as_background_job=False)
(obj,) = [o for o in scene.objects if o.type == "MESH"]
counts = []
for f in range(scene.frame_start, scene.frame_end + 1):
    scene.frame_set(f)
    counts.append(len(obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.vertices))
print("RESULT" + json.dumps({"frames": [scene.frame_start, scene.frame_end], "counts": counts}))
"""


def test_alembic_cache_opens_in_blender(tmp_path):
    """Blender's own Alembic importer reads the cache: one sample per frame, a segment's vertex count per frame."""
    pytest.importorskip("alembic3d")
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("bpy (Blender as a Python module, the blender extra) is not installed")
    box = pbr_mesh(trimesh.creation.box((0.1, 0.5, 0.1)).apply_translation([0.3, 0.0, 0.0]))
    clip = [*stretching_clip(3), box]  # three tracked frames, then a mesh the tracking cannot reach
    tracking = TrackingConfig(iterations=30, samples=500)
    files = export_asset(clip, tmp_path, FPS, formats={"abc"}, texture_size=32, tracking=tracking)
    assert [(s.start, s.stop) for s in files.segments] == [(0, 3), (3, 4)]
    done = subprocess.run(
        [sys.executable, "-c", _BLENDER_ABC, str(files.abc), str(int(FPS))], capture_output=True, text=True, timeout=300
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line is not None, done.stderr[-2000:]
    result = json.loads(line[len("RESULT") :])
    sizes = [s.vertices for s in files.segments]
    assert result["frames"] == [0, len(clip) - 1]
    assert result["counts"][:3] == [result["counts"][0]] * 3 and result["counts"][0] >= sizes[0]  # UV seams split
    assert result["counts"][3] >= len(box.vertices) and result["counts"][3] != result["counts"][0]


def test_frame_keys_cover_the_clip():
    assert frame_keys(0, 1, 10.0)[1].tolist() == [1.0, 1.0]
    times, visible = frame_keys(2, 5, 10.0)
    assert times.tolist() == pytest.approx([0.0, 0.2, 0.3]) and visible.tolist() == [0.0, 1.0, 0.0]


# ---------------------------------------------------------------------------------------------- USD
def _read_usd_counts(path: Path, count: int) -> tuple[list[int], list[int]]:
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(path))
    assert stage.GetTimeCodesPerSecond() == FPS and UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    assert (stage.GetStartTimeCode(), stage.GetEndTimeCode()) == (0, count - 1)
    mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/Asset/Mesh"))
    points = [len(mesh.GetPointsAttr().Get(k)) for k in range(count)]
    faces = [len(mesh.GetFaceVertexCountsAttr().Get(k)) for k in range(count)]
    return points, faces


def test_usd_vertex_colour_has_time_sampled_topology(tmp_path, frames):
    paths = write_usd(frames, tmp_path / "asset.usdc", FPS, usdz_path=tmp_path / "asset.usdz")
    assert [p.name for p in paths] == ["asset.usdc", "asset.usdz"]
    for path in paths:
        assert check_usd(path) == []
        points, faces = _read_usd_counts(path, len(frames))
        assert points == [len(f.vertices) for f in frames] and faces == [len(f.faces) for f in frames]
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(paths[0]))
    opacity = UsdGeom.Mesh(stage.GetPrimAtPath("/Asset/Mesh")).GetDisplayOpacityPrimvar()
    assert min(opacity.Get(1)) == pytest.approx(0.5, abs=0.01) and min(opacity.Get(0)) == 1.0


def test_usd_textured_packs_per_frame_textures(tmp_path, frames):
    baked = [bake_textures(f, size=64) for f in frames]
    usdc, usdz = write_usd(baked, tmp_path / "asset.usdc", FPS, usdz_path=tmp_path / "asset.usdz")
    assert check_usd(usdc) == [] and check_usd(usdz) == []
    points, _ = _read_usd_counts(usdz, len(frames))
    assert points == [len(b.mesh.vertices) for b in baked]
    from pxr import Usd, UsdGeom, UsdShade

    stage = Usd.Stage.Open(str(usdc))
    st = UsdGeom.PrimvarsAPI(stage.GetPrimAtPath("/Asset/Mesh")).GetPrimvar("st")
    assert np.allclose(np.asarray(st.Get(2))[:, 1], 1.0 - baked[2].uv[:, 1])  # USD's texture origin is bottom-left
    file_input = UsdShade.Shader(stage.GetPrimAtPath("/Asset/Materials/Surface/BaseColor")).GetInput("file")
    files = [file_input.Get(k).path for k in range(len(frames))]
    assert len(set(files)) == len(frames) and all((tmp_path / f).is_file() for f in files)
    with zipfile.ZipFile(usdz) as package:
        names = package.namelist()
    assert names[0] == "asset.usdc" and sum(n.endswith(".png") for n in names) == 2 * len(frames)
    assert not any(p.name.startswith(".") for p in tmp_path.rglob("*"))  # no staging leftovers


def test_usd_rejects_mixed_frames_without_leaving_files(tmp_path, frames):
    with pytest.raises(InputError, match="all non-empty frames"):
        write_usd([frames[0], bake_textures(frames[1], size=32)], tmp_path / "asset.usdc", FPS)
    assert list(tmp_path.iterdir()) == []


def test_usd_written_frame_by_frame_matches_and_a_failure_leaves_nothing(tmp_path, frames):
    whole = write_usd(frames, tmp_path / "a" / "asset.usdc", FPS)[0]
    with usd_writer(tmp_path / "b" / "asset.usdc", FPS, textured=False) as writer:
        for frame in frames:
            writer.add(surface_arrays(frame))
    assert writer.written == [tmp_path / "b" / "asset.usdc"] and check_usd(writer.written[0]) == []
    assert _read_usd_counts(writer.written[0], len(frames)) == _read_usd_counts(whole, len(frames))
    with pytest.raises(RuntimeError, match="interrupted"):
        with usd_writer(tmp_path / "c" / "asset.usdc", FPS, textured=False) as writer:
            writer.add(surface_arrays(frames[0]))
            raise RuntimeError("interrupted")
    assert list((tmp_path / "c").iterdir()) == []


# ---------------------------------------------------------------------------------------------- folder layout
def test_export_asset_writes_the_layout(tmp_path, frames):
    video = np.zeros((5, 40, 60, 4), np.uint8)
    video[..., 0], video[..., 3] = 200, 255
    try:
        files = export_asset(frames, tmp_path, FPS, texture_size=64, max_faces=200, input_frames=video, preview_size=48)
    except BackendUnavailableError as exc:
        pytest.skip(f"no headless OpenGL for the preview: {exc}")
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert [n for n in names if not n.startswith("textures/")] == [
        "animated.glb",
        "asset.usdc",
        "asset.usdz",
        "frames/frame_0000.glb",
        "frames/frame_0001.glb",
        "frames/frame_0002.glb",
        "preview.mp4",
    ]
    assert len(files.frames) == len(frames) and files.preview == tmp_path / "preview.mp4"
    from helix4d.io import read_video

    preview = read_video(files.preview)
    assert preview.frames.shape[:3] == (preview_frame_count(len(frames), FPS), 48, 96)  # input | result
    left, right = preview.frames[0, :, :48, :3].astype(int), preview.frames[0, :, 48:, :3].astype(int)
    assert abs(left[24, 24] - [200, 0, 0]).max() < 12  # the input video sits in the left half
    assert (np.abs(right - 255).sum(-1) > 30).any()  # and the rendered object in the right one


def test_preview_draws_the_result_at_the_input_objects_place_and_scale(tmp_path, frames):
    video = np.full((3, 60, 120, 3), 255, np.uint8)  # a wide frame: the panel is letterboxed
    box = (70, 20, 100, 50)  # the object sits right of centre, a quarter of the frame wide
    try:
        path = render_preview(frames, video, tmp_path / "p.mp4", FPS, size=96, input_box=box)
    except BackendUnavailableError as exc:
        pytest.skip(f"no headless OpenGL for the preview: {exc}")
    from helix4d.io import read_video

    result = read_video(path).frames[: len(frames), :, 96:, :3].astype(int)  # the input camera's part
    ys, xs = np.nonzero((np.abs(result - 255).sum(-1) > 60).any(axis=0))  # union over the clip, as the box is
    scale, top = 96 / 120, (96 - 48) // 2  # input pixels -> panel pixels
    expected = np.array([box[0] * scale, box[1] * scale + top, box[2] * scale, box[3] * scale + top])
    found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    assert np.abs(found - expected).max() <= 3, (found, expected)


def test_export_asset_vertex_colour_subset(tmp_path, frames):
    files = export_asset(frames, tmp_path, FPS, formats={"animated", "usdz"}, texture_size=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["animated.glb", "asset.usdz"]
    assert files.usdc is None and check_usd(files.usdz) == []
    gltf = pygltflib.GLTF2().load(str(files.animated))
    assert len(gltf.images) == 0 and len(gltf.meshes) == len(files.segments)  # one mesh per tracked segment
    assert files.segments[0].start == 0 and files.segments[-1].stop == len(frames)
    assert all(a.stop == b.start for a, b in zip(files.segments, files.segments[1:]))
    assert all(s.max_cd <= 1 / 32 for s in files.segments)


def test_export_asset_rejects_unknown_formats(tmp_path, frames):
    with pytest.raises(InputError, match="unknown export formats"):
        export_asset(frames, tmp_path / "out", FPS, formats={"obj"})
    assert not (tmp_path / "out").exists()


def test_empty_frames_keep_their_slot(tmp_path, frames, gltf_validator):
    """A frame where the object vanished (no faces) still takes its time slot in every format."""
    clip = [bake_textures(frames[0], size=32), trimesh.Trimesh(), bake_textures(frames[2], size=32)]
    animated = write_animated_glb(clip, tmp_path / "animated.glb", FPS)
    assert_valid(gltf_validator, animated)
    gltf = pygltflib.GLTF2().load(str(animated))
    assert [n.mesh is None for n in gltf.nodes if n.name.startswith("frame_")] == [False, True, False]
    usdc, usdz = write_usd(clip, tmp_path / "asset.usdc", FPS, usdz_path=tmp_path / "asset.usdz")
    assert check_usd(usdc) == [] and check_usd(usdz) == []
    assert _read_usd_counts(usdc, 3)[0] == [len(clip[0].mesh.vertices), 0, len(clip[2].mesh.vertices)]
