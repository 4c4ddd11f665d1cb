"""Blender import of animated assets: glTF files written here, so the expected motion and materials are known."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from helix4d.data import blender
from helix4d.errors import BackendUnavailableError, InputError

CUBE_VERTICES = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], np.float32)
CUBE_FACES = np.array(
    [
        [0, 1, 3],
        [0, 3, 2],
        [4, 6, 7],
        [4, 7, 5],
        [0, 4, 5],
        [0, 5, 1],
        [2, 3, 7],
        [2, 7, 6],
        [0, 2, 6],
        [0, 6, 4],
        [1, 5, 7],
        [1, 7, 3],
    ],
    np.uint16,
)


def _gltf(path: Path, arrays: list[np.ndarray], doc: dict) -> Path:
    """Write `doc` with one embedded buffer holding `arrays` (accessor i reads buffer view i)."""
    data, views = b"", []
    for a in arrays:
        views.append({"buffer": 0, "byteOffset": len(data), "byteLength": a.nbytes})
        data += a.tobytes() + b"\0" * (-a.nbytes % 4)
    doc.update(
        asset={"version": "2.0"},
        scene=0,
        bufferViews=views,
        buffers=[
            {"byteLength": len(data), "uri": "data:application/octet-stream;base64," + base64.b64encode(data).decode()}
        ],
    )
    path.write_text(json.dumps(doc))
    return path


def _accessor(i: int, a: np.ndarray, kind: str, bounds: bool = False) -> dict:
    """Accessor of buffer view i; glTF requires min/max (`bounds`) on positions and animation inputs."""
    ctype = {np.float32: 5126, np.uint16: 5123}[a.dtype.type]
    acc = {"bufferView": i, "componentType": ctype, "count": len(a), "type": kind}
    if bounds:
        acc.update(min=np.atleast_1d(a.min(0)).tolist(), max=np.atleast_1d(a.max(0)).tolist())
    return acc


def write_morph_cube(path: Path, shift: float = 1.0, duration: float = 1.0) -> Path:
    """A unit cube whose morph target moves every vertex by +`shift` in x; its weight goes 0 -> 1 over `duration`
    seconds (linear). Material: base colour (1, 0.2, 0.1) linear, metallic 0.3, roughness 0.6."""
    delta = np.tile(np.array([[shift, 0.0, 0.0]], np.float32), (8, 1))
    times, weights = np.array([0.0, duration], np.float32), np.array([0.0, 1.0], np.float32)
    arrays = [CUBE_VERTICES, CUBE_FACES.reshape(-1), delta, times, weights]
    accessors = [
        _accessor(0, arrays[0], "VEC3", True),
        _accessor(1, arrays[1], "SCALAR"),
        _accessor(2, delta, "VEC3", True),
        _accessor(3, times, "SCALAR", True),
        _accessor(4, weights, "SCALAR"),
    ]
    return _gltf(
        path,
        arrays,
        {
            "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0}],
            "accessors": accessors,
            "meshes": [
                {
                    "primitives": [
                        {"attributes": {"POSITION": 0}, "indices": 1, "targets": [{"POSITION": 2}], "material": 0}
                    ],
                    "weights": [0.0],
                }
            ],
            "materials": [
                {
                    "pbrMetallicRoughness": {
                        "baseColorFactor": [1.0, 0.2, 0.1, 1.0],
                        "metallicFactor": 0.3,
                        "roughnessFactor": 0.6,
                    }
                }
            ],
            "animations": [
                {
                    "samplers": [{"input": 3, "output": 4, "interpolation": "LINEAR"}],
                    "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}],
                }
            ],
        },
    )


def write_textured_quad(path: Path) -> Path:
    """A static quad in the xy plane: its left vertices sample the red texel of a 2x1 texture, its right the blue."""
    verts = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]], np.float32)
    faces = np.array([0, 1, 2, 0, 2, 3], np.uint16)
    uv = np.array([[0.25, 0.5], [0.75, 0.5], [0.75, 0.5], [0.25, 0.5]], np.float32)
    png = io.BytesIO()
    Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)).save(png, format="PNG")
    doc = {
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "accessors": [_accessor(0, verts, "VEC3", True), _accessor(1, faces, "SCALAR"), _accessor(2, uv, "VEC2")],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 2}, "indices": 1, "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}, "doubleSided": True}],
        "textures": [{"source": 0, "sampler": 0}],
        "samplers": [{"magFilter": 9728, "minFilter": 9728}],
        "images": [{"uri": "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()}],
    }
    return _gltf(path, [verts, faces, uv], doc)


def test_morph_target_animation_moves_the_mesh(tmp_path: Path) -> None:
    pytest.importorskip("bpy")
    asset = blender.import_animated(write_morph_cube(tmp_path / "cube.gltf"), frames=3)
    np.testing.assert_allclose(asset.times, [0.0, 0.5, 1.0], atol=1e-6)
    # all frames span x in [-0.5, 1.5] (longest side 2) -> one scale of 0.9 / 2 (the 0.05 margin each side); the
    # centre moves 1 unit * 0.45 over the second
    np.testing.assert_allclose(np.diag(asset.normalization)[:3], 0.45, atol=1e-6)
    centres = np.array([m.vertices.mean(axis=0) for m in asset.meshes])
    np.testing.assert_allclose(centres[:, 0], [-0.225, 0.0, 0.225], atol=1e-5)
    np.testing.assert_allclose(centres[:, 1:], 0.0, atol=1e-5)
    for mesh in asset.meshes:
        assert len(mesh.vertices) == 8 and len(mesh.faces) == 12
        np.testing.assert_allclose(mesh.extents, [0.45, 0.45, 0.45], atol=1e-5)
        assert mesh.is_watertight and mesh.volume > 0  # outward winding survived the axis change
        # linear (1, 0.2, 0.1) in sRGB: (1, 0.484, 0.349)
        np.testing.assert_allclose(mesh.visual.vertex_colors[:, :3], [[255, 124, 89]] * 8, atol=1)
        np.testing.assert_allclose(mesh.vertex_attributes["metallic"], 0.3, atol=1e-6)
        np.testing.assert_allclose(mesh.vertex_attributes["roughness"], 0.6, atol=1e-6)


RIGGED_CUBE_SCRIPT = """
import sys, bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_cube_add(size=1)
cube = bpy.context.active_object
bpy.ops.object.armature_add()
rig = bpy.context.active_object
cube.select_set(True)
bpy.ops.object.parent_set(type="ARMATURE_AUTO")
bone = rig.pose.bones[0]
bone.keyframe_insert("location", frame=1)
bone.location = (0, 2, 0)  # along the bone, which points up (Blender +z)
bone.keyframe_insert("location", frame=25)
bpy.ops.export_scene.gltf(filepath=sys.argv[-1])
"""


def test_skinned_animation_follows_the_bone(tmp_path: Path) -> None:
    pytest.importorskip("bpy")
    glb = tmp_path / "rig.glb"
    subprocess.run([sys.executable, "-c", RIGGED_CUBE_SCRIPT, str(glb)], check=True, capture_output=True)
    asset = blender.import_animated(glb, frames=3)
    np.testing.assert_allclose(asset.times, [0.0, 0.5, 1.0], atol=1e-6)  # 24 frames at 24 fps
    # the cube rises by 2 (union box 3 high -> scale 0.3): its centre goes -0.3 -> 0 -> 0.3 along +y (up)
    centres = np.array([m.vertices.mean(axis=0) for m in asset.meshes])
    np.testing.assert_allclose(centres, [[0, -0.3, 0], [0, 0, 0], [0, 0.3, 0]], atol=1e-4)


def test_base_colour_texture_is_sampled_at_the_uvs(tmp_path: Path) -> None:
    pytest.importorskip("bpy")
    asset = blender.import_animated(write_textured_quad(tmp_path / "quad.gltf"), frames=2)
    mesh = asset.meshes[0]
    left = mesh.vertices[:, 0] < 0
    assert left.sum() == 2
    np.testing.assert_array_equal(mesh.visual.vertex_colors[left, :3], [[255, 0, 0]] * 2)
    np.testing.assert_array_equal(mesh.visual.vertex_colors[~left, :3], [[0, 0, 255]] * 2)
    # glTF +y up stays up, glTF +z (the quad's normal) stays towards the front camera
    np.testing.assert_allclose(mesh.bounds, [[-0.45, -0.45, 0.0], [0.45, 0.45, 0.0]], atol=1e-6)


def test_broken_file_is_an_input_error(tmp_path: Path) -> None:
    pytest.importorskip("bpy")
    bad = tmp_path / "bad.glb"
    bad.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(InputError, match="Blender could not import"):
        blender.import_animated(bad, frames=2)


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        blender.import_animated(tmp_path / "nope.glb")
    (tmp_path / "mesh.obj").write_text("v 0 0 0\n")
    with pytest.raises(InputError, match=r"\.glb"):
        blender.import_animated(tmp_path / "mesh.obj")


def test_without_bpy_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    asset = tmp_path / "asset.glb"
    asset.touch()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "bpy" else real(name))
    with pytest.raises(BackendUnavailableError, match=r"importing animated assets needs Blender: .*helix4d\[blender\]"):
        blender.import_animated(asset)


def test_normalize_sequence_uses_one_box_for_all_frames() -> None:
    a = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    b = a.copy()
    b.apply_translation((3.0, 0.0, 0.0))
    (na, nb), matrix = blender.normalize_sequence([a, b], margin=0.0)
    # union box x in [-0.5, 3.5]: longest side 4 -> scale 0.25, centre x = 1.5
    np.testing.assert_allclose(matrix[:3, :3], np.eye(3) * 0.25)
    np.testing.assert_allclose(na.bounds, [[-0.5, -0.125, -0.125], [-0.25, 0.125, 0.125]])
    np.testing.assert_allclose(nb.bounds, [[0.25, -0.125, -0.125], [0.5, 0.125, 0.125]])
    np.testing.assert_allclose(a.bounds, [[-0.5] * 3, [0.5] * 3])  # inputs untouched
