"""One frame of an asset as the file writers see it: plain arrays, whether it is vertex-coloured or textured.

A frame is either a `trimesh.Trimesh` with per-vertex PBR (project convention) or a `TexturedMesh` from
`bake_textures`. Writers call `surface_arrays` once and never look at trimesh visuals themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from helix4d.errors import InputError
from helix4d.export.bake import TexturedMesh
from helix4d.ovoxel import vertex_pbr

Frame = trimesh.Trimesh | TexturedMesh


@dataclass
class SurfaceArrays:
    """positions (V, 3) float32, faces (F, 3) uint32, normals (V, 3) float32 unit length, rgba (V, 4) float32
    (colour sRGB-encoded as stored, alpha linear), metallic / roughness (V,) float32; uv (V, 2) float32 and
    `textured` (the baked textures) for textured frames, else None."""

    positions: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    rgba: np.ndarray
    metallic: np.ndarray
    roughness: np.ndarray
    uv: np.ndarray | None
    textured: TexturedMesh | None

    @property
    def empty(self) -> bool:
        return len(self.faces) == 0

    @property
    def transparent(self) -> bool:
        """Whether any part of the surface has alpha < 1 (the material then needs alpha blending)."""
        if self.textured is not None:
            return bool((self.textured.base_color[..., 3] < 255).any())
        return bool((self.rgba[:, 3] < 1.0 - 0.5 / 255.0).any())


def surface_arrays(frame: Frame) -> SurfaceArrays:
    """The arrays a writer needs from one frame (see `SurfaceArrays`)."""
    if isinstance(frame, TexturedMesh):
        mesh, normals, uv, textured = frame.mesh, frame.normals, frame.uv, frame
    elif isinstance(frame, trimesh.Trimesh):
        mesh, uv, textured = frame, None, None
        normals = frame.vertex_normals if len(frame.faces) else np.zeros((len(frame.vertices), 3))
    else:
        raise InputError(f"export frames must be trimesh.Trimesh or TexturedMesh, got {type(frame).__name__}")
    pbr = vertex_pbr(mesh)  # (V, 6)
    return SurfaceArrays(
        positions=np.asarray(mesh.vertices, dtype=np.float32),
        faces=np.asarray(mesh.faces, dtype=np.uint32).reshape(-1, 3),
        normals=_unit(np.asarray(normals, dtype=np.float64)),
        rgba=np.ascontiguousarray(pbr[:, [0, 1, 2, 5]]),
        metallic=np.ascontiguousarray(pbr[:, 3]),
        roughness=np.ascontiguousarray(pbr[:, 4]),
        uv=None if uv is None else np.asarray(uv, dtype=np.float32),
        textured=textured,
    )


def _unit(n: np.ndarray) -> np.ndarray:
    """Unit normals; zero normals (degenerate faces, isolated vertices) become +y so file validators accept them."""
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-12, n / np.maximum(length, 1e-12), np.array([0.0, 1.0, 0.0]))
    return n.astype(np.float32)
