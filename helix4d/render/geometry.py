"""Meshes with per-vertex PBR -> one interleaved vertex array plus opaque / transparent triangle lists.

Pure numpy (no GL) so it is cheap to test. Several meshes are packed into one buffer so a scene draws in one call
per pass. Faces are split by alpha: opaque faces take the fast depth-tested path, faces with any vertex alpha < 1
go through depth peeling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import trimesh

from helix4d.errors import InputError

# Interleaved layout per vertex: position 3, normal 3, rgba 4, metallic 1, roughness 1, flat 1 (floats).
VERTEX_FORMAT = "3f 3f 4f 1f 1f 1f"
VERTEX_ATTRIBUTES = ("in_pos", "in_normal", "in_color", "in_metallic", "in_roughness", "in_flat")
VERTEX_FLOATS = 13
POSITION_FORMAT = "3f 40x"  # the same buffer read as positions only (depth-peeling pass)

DEFAULT_METALLIC = 0.0
DEFAULT_ROUGHNESS = 0.5
# A vertex whose normal is further than this from an adjacent face's normal is shaded with face normals
# (hard edges of boxes, cylinders' rims): cos(35 deg).
_SMOOTH_COS = float(np.cos(np.radians(35.0)))


@dataclass
class PackedGeometry:
    """CPU side of a scene: `vertices` (V, 13) float32, `opaque_faces` / `transparent_faces` (F, 3) uint32."""

    vertices: np.ndarray
    opaque_faces: np.ndarray
    transparent_faces: np.ndarray


def _linear_to_srgb255(rgba: np.ndarray) -> np.ndarray:
    """Linear RGBA in [0, 1] -> sRGB-encoded RGBA in [0, 255] (alpha stays linear)."""
    rgb = np.clip(rgba[:, :3], 0.0, 1.0)
    srgb = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * np.power(rgb, 1 / 2.4) - 0.055)
    return np.concatenate([srgb, np.clip(rgba[:, 3:4], 0.0, 1.0)], axis=1) * 255.0


def mesh_pbr(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-vertex (rgba (V, 4) float32 in [0, 1], metallic (V,), roughness (V,)) by the project convention.

    Textured meshes are converted to vertex colours (`visual.to_color()`); a glTF file's COLOR_0 (linear, as
    trimesh loads it) is converted back to sRGB; one material colour applies to every vertex. Missing metallic /
    roughness default to 0 / 0.5.
    """
    visual = mesh.visual
    count = len(mesh.vertices)
    color0 = (
        getattr(visual, "vertex_attributes", {}).get("color")
        if isinstance(visual, trimesh.visual.TextureVisuals)
        else None
    )
    if color0 is not None and len(color0) == count:
        rgba = _linear_to_srgb255(
            np.asarray(color0, dtype=np.float32) / (255.0 if np.asarray(color0).dtype == np.uint8 else 1.0)
        )
    else:
        if isinstance(visual, trimesh.visual.TextureVisuals):
            visual = visual.to_color()
        rgba = np.asarray(visual.vertex_colors, dtype=np.float32).reshape(-1, 4)
        if len(rgba) == 1:
            rgba = np.repeat(rgba, count, axis=0)
    if len(rgba) != count:
        raise InputError(
            f"mesh has {count} vertices but {len(rgba)} vertex colours: rebuild it with one RGBA per vertex."
        )
    attrs = getattr(mesh, "vertex_attributes", {}) or {}
    metallic = _vertex_scalar(attrs.get("metallic"), count, DEFAULT_METALLIC, "metallic")
    roughness = _vertex_scalar(attrs.get("roughness"), count, DEFAULT_ROUGHNESS, "roughness")
    return rgba / 255.0, metallic, roughness


def _vertex_scalar(values: object, count: int, default: float, name: str) -> np.ndarray:
    if values is None:
        return np.full(count, default, dtype=np.float32)
    arr = np.asarray(values, dtype=np.float32).reshape(-1)
    if len(arr) != count:
        raise InputError(
            f"vertex_attributes['{name}'] has {len(arr)} values for {count} vertices: give one per vertex."
        )
    return np.clip(arr, 0.0, 1.0)


def flat_shading_flags(mesh: trimesh.Trimesh) -> np.ndarray:
    """(V,) float32: 1 where the vertex normal is a poor stand-in for an adjacent face's normal (a hard edge)."""
    faces = np.asarray(mesh.faces)
    face_normals = np.asarray(mesh.face_normals)  # (F, 3)
    valid = np.linalg.norm(face_normals, axis=1) > 0.5  # degenerate faces have zero normals
    agreement = np.einsum("fkc,fc->fk", np.asarray(mesh.vertex_normals)[faces], face_normals)  # (F, 3)
    poor = (agreement < _SMOOTH_COS) & valid[:, None]
    flags = np.zeros(len(mesh.vertices), dtype=np.float32)
    flags[faces[poor]] = 1.0
    return flags


def pack_meshes(meshes: trimesh.Trimesh | Sequence[trimesh.Trimesh]) -> PackedGeometry:
    """Pack one or several meshes (per-vertex PBR) into one vertex array and alpha-split triangle lists."""
    if isinstance(meshes, trimesh.Trimesh):
        meshes = [meshes]
    blocks, opaque, transparent = [], [], []
    offset = 0
    for mesh in meshes:
        if not isinstance(mesh, trimesh.Trimesh):
            raise InputError(
                f"render expects trimesh.Trimesh meshes, got {type(mesh).__name__}: "
                "use scene.to_mesh() or trimesh.load(..., force='mesh')."
            )
        if len(mesh.faces) == 0:
            continue
        rgba, metallic, roughness = mesh_pbr(mesh)
        block = np.empty((len(mesh.vertices), VERTEX_FLOATS), dtype=np.float32)
        block[:, 0:3] = mesh.vertices
        block[:, 3:6] = mesh.vertex_normals
        block[:, 6:10] = rgba
        block[:, 10] = metallic
        block[:, 11] = roughness
        block[:, 12] = flat_shading_flags(mesh)
        faces = np.asarray(mesh.faces, dtype=np.int64)
        see_through = rgba[faces, 3].min(axis=1) < 1.0  # (F,)
        opaque.append(faces[~see_through] + offset)
        transparent.append(faces[see_through] + offset)
        blocks.append(block)
        offset += len(block)
    if not blocks:
        empty = np.zeros((0, 3), dtype=np.uint32)
        return PackedGeometry(np.zeros((0, VERTEX_FLOATS), dtype=np.float32), empty, empty.copy())
    return PackedGeometry(
        vertices=np.concatenate(blocks),
        opaque_faces=np.concatenate(opaque).astype(np.uint32),
        transparent_faces=np.concatenate(transparent).astype(np.uint32),
    )
