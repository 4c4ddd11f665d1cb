"""Rigs (`helix4d.export.rig`, `.rigged`, `.fbx`): bones and skin weights fitted to tracked segments, written as
rigged.glb (replayed here from the file's own skin and joint animation, checked by the Khronos validator and played
by three.js in node: tests/js, installed on first use, skipped without node/npm) and asset.fbx (read back by
Blender; skipped without bpy).

The truths are the procedural world's rigid and articulated sequences (`helix4d.data.synthetic`), whose meshes keep
one topology: every vertex's true trajectory is known, and so is the number of rigid parts.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation
from test_export import accessor_reader, assert_valid, gltf_validator, pbr_mesh, stretching_clip  # noqa: F401 (a fixture)

from helix4d.bench.tracking import measure, subdivided
from helix4d.data.synthetic import build_frames, sample_scene
from helix4d.errors import BackendUnavailableError
from helix4d.export import RigConfig, bake_textures, export_asset, fit_rig, require_formats, write_fbx
from helix4d.export.animated import MORPH_TOLERANCE, MorphSegment
from helix4d.export.rig import skin
from helix4d.export.rigged import RiggedSegment, write_rigged_glb
from helix4d.export.tracking import TrackingConfig

JS_DIR = Path(__file__).parent / "js"
R = 32  # the O-Voxel grid the budgets are written for
FPS = 8.0
TRACKING = TrackingConfig(iterations=20, samples=500)


def truth(kind: str, seed: int, frames: int = 12) -> tuple[list[trimesh.Trimesh], int]:
    """A procedural sequence's meshes (one topology) and its number of rigidly moving parts: an arm's base, upper
    and lower link (with the tool); a box and its lid or door; each rigid body."""
    spec = sample_scene(seed, kind, frames)
    meshes = build_frames(spec)
    assert len({len(m.vertices) for m in meshes}) == 1
    if kind == "rigid":
        return meshes, len(spec.params["bodies"])
    return meshes, 3 if spec.params["variant"] == "arm" else 2


def positions_of(meshes: list[trimesh.Trimesh]) -> np.ndarray:
    return np.stack([np.asarray(m.vertices) for m in meshes])  # (K, V, 3)


@pytest.mark.parametrize(
    ("kind", "seed"),
    [("articulated", 0), ("articulated", 1), ("articulated", 11), ("rigid", 1), ("rigid", 4)],
    ids=["arm", "door", "lid", "one-body", "two-bodies"],
)
def test_rig_finds_one_bone_a_rigid_part_and_reproduces_the_motion(kind: str, seed: int) -> None:
    meshes, parts = truth(kind, seed)
    positions = positions_of(meshes)
    rig = fit_rig(positions, np.asarray(meshes[0].faces), RigConfig(resolution=R))
    assert rig.bones == parts
    assert rig.joints.shape[1] <= 4 and np.allclose(rig.weights.sum(axis=1), 1.0) and (rig.weights >= 0).all()
    error = np.linalg.norm(skin(rig.rest, rig.joints, rig.weights, rig.transforms) - positions, axis=2)  # (K, V)
    assert error.max() <= 0.5 / R and rig.max_error == pytest.approx(error.max()) and rig.fits(RigConfig())
    rotations = rig.transforms[..., :3, :3]  # rigid bones: rotations, no scale or shear
    assert np.allclose(rotations @ rotations.transpose(0, 1, 3, 2), np.eye(3), atol=1e-6)


def test_tracking_follows_a_rigid_body_without_sliding() -> None:
    """Tracked on a rigid body's true meshes (subdivided to generated meshes' density), every vertex stays near its
    true trajectory, not only near the surface: vertices that slid along the surface (6.7 voxels on average, 16 at
    most, with point-to-point Chamfer fitted by Adam) are a motion no rigid bone follows."""
    meshes = subdivided(build_frames(sample_scene(100023, "rigid", 12)), 3.0 / R)
    drift = measure("one body", meshes, TrackingConfig())
    assert drift.pieces == 1  # tracked through the whole clip
    assert drift.drift_mean < 1.0 and drift.drift_max < 3.0  # voxels of R = 32
    assert drift.surface_mean < 0.1


def test_a_stretch_misses_the_budget_of_few_bones() -> None:
    clip = stretching_clip(4)
    fixed = [clip[0].copy() for _ in clip]  # one topology, stretched like the clip
    for k, mesh in enumerate(fixed):
        mesh.vertices = mesh.vertices * [1.0 + 0.08 * k, 1.0, 1.0 - 0.03 * k]
    positions = positions_of(fixed)
    one = fit_rig(positions, np.asarray(fixed[0].faces), RigConfig(max_bones=1))
    assert one.bones == 1 and not one.fits(RigConfig()) and one.max_error > 1.0 / R
    more = fit_rig(positions, np.asarray(fixed[0].faces), RigConfig())
    assert more.fits(RigConfig()) and 1 < more.bones <= 32  # blended bones follow a stretch


def _sample(read, animation: pygltflib.Animation, node: int, path: str, t: float) -> np.ndarray:
    """The value of `node`'s `path` channel at time t (STEP: the key at or before t; LINEAR at a key: that key)."""
    channel = next(c for c in animation.channels if c.target.node == node and c.target.path == path)
    sampler = animation.samplers[channel.sampler]
    times, values = read(sampler.input)[:, 0], read(sampler.output)
    return values[max(np.searchsorted(times, t + 1e-6, side="right") - 1, 0)]


def test_rigged_glb_is_valid_and_replays_the_rig(tmp_path, gltf_validator) -> None:  # noqa: F811
    meshes, _ = truth("articulated", 0)
    positions = positions_of(meshes)
    rig = fit_rig(positions[:8], np.asarray(meshes[0].faces), RigConfig(resolution=R))
    first = bake_textures(meshes[0], size=32)  # textured: written vertices are split at UV seams
    segments = [RiggedSegment(0, first, rig), MorphSegment(8, meshes[8], positions[8:].astype(np.float32))]
    path = write_rigged_glb(segments, tmp_path / "rigged.glb", FPS)
    assert_valid(gltf_validator, path)

    gltf = pygltflib.GLTF2().load(str(path))
    read = accessor_reader(gltf)
    (animation,) = gltf.animations
    (skin_,) = gltf.skins
    mesh_node = next(i for i, n in enumerate(gltf.nodes) if n.skin == 0)
    assert mesh_node in gltf.scenes[0].nodes and gltf.nodes[mesh_node].matrix is None  # a root, no transform
    primitive = gltf.meshes[gltf.nodes[mesh_node].mesh].primitives[0]
    rest = read(primitive.attributes.POSITION)  # (V', 3) the written vertices
    joints = read(primitive.attributes.JOINTS_0).astype(int)  # (V', 4)
    weights = read(primitive.attributes.WEIGHTS_0)  # (V', 4)
    assert np.allclose(weights.sum(axis=1), 1.0, atol=1e-6) and len(skin_.joints) == 1 + rig.bones == 4
    unbind = read(skin_.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)  # column-major in the file
    switch = skin_.skeleton  # the root joint: its scale shows and hides the segment
    assert skin_.joints[0] == switch and gltf.nodes[switch].children == skin_.joints[1:]
    for k in range(8):  # at frame k's key every written vertex is where the tracked vertex it copies is
        t = k / FPS
        assert _sample(read, animation, switch, "scale", t).tolist() == [1.0, 1.0, 1.0]
        world = np.zeros((len(skin_.joints), 4, 4))
        world[0] = np.eye(4)  # the root joint at rest, shown
        for b, joint in enumerate(skin_.joints[1:], start=1):
            world[b] = np.eye(4)
            world[b, :3, :3] = Rotation.from_quat(_sample(read, animation, joint, "rotation", t)).as_matrix()
            world[b, :3, 3] = _sample(read, animation, joint, "translation", t)
        matrices = np.einsum("bij,bjk->bik", world, unbind)[joints]  # (V', 4, 4, 4)
        moved = np.einsum("vs,vsij,vj->vi", weights, matrices, np.c_[rest, np.ones(len(rest))])[:, :3]
        assert np.abs(moved - positions[k][first.source_vertex]).max() < 0.5 / R
    morph_node = next(i for i, n in enumerate(gltf.nodes) if n.name == "frames_0008")
    assert _sample(read, animation, switch, "scale", 8.5 / FPS).tolist() == [0.0, 0.0, 0.0]  # segment 1 shows
    assert _sample(read, animation, morph_node, "scale", 8.5 / FPS).tolist() == [1.0, 1.0, 1.0]
    assert _sample(read, animation, morph_node, "scale", 3.5 / FPS).tolist() == [0.0, 0.0, 0.0]
    assert gltf.nodes[switch].scale is None and gltf.nodes[morph_node].scale == [0.0, 0.0, 0.0]  # rest: frame 0


@pytest.fixture(scope="session")
def three_player():
    """Callable(path, times) -> per time, the meshes' vertices as three.js plays the GLB (tests/js/three_play.mjs);
    skips when node/npm cannot provide three.js."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        pytest.skip("node is not installed: three.js (npm three) cannot run")
    if not (JS_DIR / "node_modules" / "three").is_dir():
        if npm is None:
            pytest.skip("npm is not installed: cannot install three (npm ci --prefix tests/js)")
        done = subprocess.run(
            [npm, "ci", "--prefix", str(JS_DIR), "--no-audit", "--no-fund"], capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            pytest.skip(f"npm ci --prefix tests/js failed (offline?): {done.stderr.strip()[-300:]}")

    def play(path: Path, times: list[float]) -> list[dict]:
        command = [node, str(JS_DIR / "three_play.mjs"), str(path), *map(str, times)]
        return json.loads(subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout)

    return play


def test_rigged_glb_plays_in_three_js(tmp_path, three_player) -> None:
    """three.js (GLTFLoader, AnimationMixer, SkinnedMesh) puts every vertex where the tracked one is at each frame's
    time: the rigged segment through its bones, then the fall-back segment through its morph targets, the hidden one
    collapsed to a point."""
    meshes, _ = truth("articulated", 0)
    positions = positions_of(meshes)
    rig = fit_rig(positions[:8], np.asarray(meshes[0].faces), RigConfig(resolution=R))
    segments = [RiggedSegment(0, meshes[0], rig), MorphSegment(8, meshes[8], positions[8:].astype(np.float32))]
    path = write_rigged_glb(segments, tmp_path / "rigged.glb", FPS)
    for k, frame in enumerate(three_player(path, [k / FPS for k in range(12)])):
        shown = {m["name"]: np.asarray(m["positions"]).reshape(-1, 3) for m in frame["meshes"]}
        assert {m["name"]: m["skinned"] for m in frame["meshes"]} == {"frames_0000": True, "frames_0008": False}
        visible, hidden = ("frames_0000", "frames_0008") if k < 8 else ("frames_0008", "frames_0000")
        bound = 1e-5 if k < 8 else MORPH_TOLERANCE + 1e-5  # float32 bones; 8- or 16-bit morph targets
        assert np.abs(shown[visible] - positions[k]).max() < bound
        assert np.ptp(shown[hidden], axis=0).max() == 0.0


def test_export_rigs_what_fits_and_falls_back_on_the_rest(tmp_path, gltf_validator) -> None:  # noqa: F811
    """A one-frame segment (one bone at rest), then two parts, one of them stretching, which one bone cannot follow:
    that segment stays morph targets in rigged.glb, and the report says so. (Tracked vertices slide along the
    surface as the tracker fits each frame, which rigid bones do not follow: motion through `export_asset` is
    measured in docs/rig.md; the rigs themselves are tested on true trajectories above.)"""
    capsule = pbr_mesh(trimesh.creation.capsule(0.3, 0.1, count=[12, 12]))
    small = trimesh.creation.icosphere(1, radius=0.08).apply_translation([0.0, 0.35, 0.0])
    clip = [capsule] + [pbr_mesh(trimesh.util.concatenate([m, small])) for m in stretching_clip(4)]
    files = export_asset(
        clip, tmp_path, FPS, formats={"rig"}, texture_size=None, tracking=TRACKING, rig=RigConfig(max_bones=1)
    )
    assert [(s.start, s.stop) for s in files.segments] == [(0, 1), (1, 5)]
    first, second = files.rigs
    assert (first.bones, first.fell_back, first.max_error) == (1, False, 0.0)
    assert (second.bones, second.fell_back) == (1, True) and second.max_error > 1.0 / R
    assert second.mean_voxels == pytest.approx(second.mean_error * RigConfig().resolution)
    assert files.rigged == tmp_path / "rigged.glb" and files.animated is None
    assert_valid(gltf_validator, files.rigged)
    gltf = pygltflib.GLTF2().load(str(files.rigged))
    assert len(gltf.skins) == 1 and len(gltf.meshes) == 2
    morph = gltf.meshes[1].primitives[0]
    assert morph.attributes.JOINTS_0 is None and len(morph.targets) == 2 * 3  # a shape and a shading target a frame


def test_result_json_lists_the_rigs_in_voxels_of_the_asset_grid(tmp_path) -> None:
    from helix4d.ovoxel import OVoxel
    from helix4d.pipeline.helix4d import Asset4D
    from helix4d.pipeline.options import GenerateOptions
    from helix4d.pipeline.output import write_asset

    meshes, _ = truth("articulated", 1, frames=4)
    empty = OVoxel(16, np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3), bool), np.zeros((0, 3), bool), [], [])
    asset = Asset4D([empty] * 4, meshes, np.arange(4) / FPS, FPS, np.zeros((4, 4, 8, 8), np.float32))
    files = write_asset(asset, tmp_path / "out", {}, GenerateOptions(formats=("rig",), texture_size=None))
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["rigs"] == [asdict(r) for r in files.rigs] and len(result["rigs"]) == len(result["segments"])
    rig = result["rigs"][0]
    assert rig["mean_voxels"] == pytest.approx(16 * rig["mean_error"])  # R = 16: the O-Voxels' grid
    assert "rigged.glb" in result["files"]


def test_fbx_needs_blender(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bpy" else real(name, *a))
    with pytest.raises(BackendUnavailableError, match=r"helix4d\[blender\]"):
        require_formats(("glb", "fbx"))
    require_formats(("glb", "rig"))  # the rig itself needs no extra


_BLENDER_FBX = """
import bpy, json, sys
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.fbx(filepath=sys.argv[1], anim_offset=0.0)  # keys at the file's own times
scene = bpy.context.scene
armatures = [o for o in scene.objects if o.type == "ARMATURE"]
meshes = [o for o in scene.objects if o.type == "MESH"]
frames = []
for f in range(int(sys.argv[2])):
    scene.frame_set(f)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    shown = {}
    for o in meshes:
        evaluated = o.evaluated_get(depsgraph)
        points = [list(evaluated.matrix_world @ v.co) for v in evaluated.data.vertices]
        if max(max(c) - min(c) for c in zip(*points)) > 1e-6:  # a hidden segment is collapsed to a point
            shown[o.name] = points
    frames.append(shown)
print("RESULT" + json.dumps({
    "bones": {a.name: [b.name for b in a.data.bones] for a in armatures},
    "deform": {o.name: [m.type for m in o.modifiers] for o in meshes},
    "shape_keys": {o.name: len(o.data.shape_keys.key_blocks) if o.data.shape_keys else 0 for o in meshes},
    "range": list(armatures[0].animation_data.action.frame_range),
    "fps": scene.render.fps / scene.render.fps_base,
    "images": [i.has_data or i.packed_file is not None for i in bpy.data.images],
    "frames": frames,
}))
"""


def test_blender_imports_the_fbx_with_an_armature_and_its_action(tmp_path) -> None:
    """Two rigged segments around a fall-back one: one armature, skinned meshes that follow the true motion
    frame by frame, the fall-back segment's shape keys, each segment shown during its own frames only."""
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("bpy (Blender as a Python module, the blender extra) is not installed")
    meshes, parts = truth("articulated", 0, frames=16)
    positions = positions_of(meshes)
    faces = np.asarray(meshes[0].faces)
    segments = [
        RiggedSegment(0, meshes[0], fit_rig(positions[:6], faces, RigConfig(resolution=R))),
        MorphSegment(6, meshes[6], positions[6:10].astype(np.float32)),
        RiggedSegment(10, bake_textures(meshes[10], size=32), fit_rig(positions[10:], faces, RigConfig(resolution=R))),
    ]
    rigged = write_rigged_glb(segments, tmp_path / "rigged.glb", FPS)
    fbx = write_fbx(rigged, tmp_path / "asset.fbx", FPS, frames=16)
    done = subprocess.run(
        [sys.executable, "-c", _BLENDER_FBX, str(fbx), "16"], capture_output=True, text=True, timeout=300
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line is not None, done.stderr[-2000:]
    result = json.loads(line[len("RESULT") :])
    ((_, bones),) = result["bones"].items()  # every segment's skeleton in one armature
    assert sorted(bones) == sorted(
        f"frames_{s:04d}_{b}" for s in (0, 10) for b in ["shown", "bone_00", "bone_01", "bone_02"]
    )
    assert result["deform"] == {"frames_0000": ["ARMATURE"], "frames_0006": [], "frames_0010": ["ARMATURE"]}
    assert result["shape_keys"]["frames_0006"] > 3  # the fall-back segment: a basis and keys for its frames
    assert result["range"] == [0.0, 15.0] and result["fps"] == pytest.approx(FPS)
    assert result["images"] and all(result["images"])  # the textures came inside the file
    turn = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # Blender's z-up -> glTF's y-up
    for k, shown in enumerate(result["frames"]):
        expected = "frames_0000" if k < 6 else "frames_0006" if k < 10 else "frames_0010"
        assert list(shown) == [expected]
        distance, _ = cKDTree(positions[k]).query(np.asarray(shown[expected]) @ turn)
        assert distance.max() < 1.0 / R  # frame k's own pose: bones (or shape keys) move the mesh
