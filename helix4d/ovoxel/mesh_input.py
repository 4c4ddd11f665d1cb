"""Load and check meshes before voxelisation, so bad files fail with a clear message instead of deep in numpy."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from helix4d.errors import InputError

# Vertices may stick out of the unit cube by this much (float noise from normalisation) and are clamped.
CUBE_TOLERANCE = 1e-4


@dataclass
class MeshParts:
    """A mesh or scene flattened to world-space parts that keep their own materials.

    parts:     meshes in unit-cube coordinates (scene transforms applied), degenerate faces removed.
    triangles: (F, 3, 3) float64 all parts' triangles, concatenated in `parts` order.
    part_of:   (F,) int32 part index of each triangle; face_of (F,) int64 its face index inside that part.
    """

    parts: list[trimesh.Trimesh]
    triangles: np.ndarray
    part_of: np.ndarray
    face_of: np.ndarray


def load_mesh(path: str | Path) -> trimesh.Trimesh | trimesh.Scene:
    """Load a mesh or scene file (GLB/GLTF/OBJ/PLY/STL/OFF...) with trimesh, raising `InputError` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"mesh file not found: {path}")
    try:
        loaded = trimesh.load(path, process=False)
    except Exception as exc:  # trimesh raises many unrelated types for unreadable files
        raise InputError(
            f"cannot read {path} as a mesh ({type(exc).__name__}: {exc}); use a GLB, GLTF, OBJ, PLY, STL or OFF file"
        ) from exc
    if not isinstance(loaded, (trimesh.Trimesh, trimesh.Scene)):
        raise InputError(f"{path} holds a {type(loaded).__name__}, not a triangle mesh")
    return loaded


def flatten(mesh: trimesh.Trimesh | trimesh.Scene) -> MeshParts:
    """Validate `mesh` and flatten a scene into transformed parts; drop zero-area faces with a warning."""
    if isinstance(mesh, trimesh.Scene):
        parts = [g for g in mesh.dump(concatenate=False) if isinstance(g, trimesh.Trimesh)]
    elif isinstance(mesh, trimesh.Trimesh):
        parts = [mesh]
    else:
        raise InputError(f"expected a trimesh.Trimesh or trimesh.Scene, got {type(mesh).__name__}")
    clean, tris, part_of, face_of = [], [], [], []
    for part in parts:
        part, keep = _checked(part)
        if part is None:
            continue
        clean.append(part)
        tris.append(np.asarray(part.vertices, np.float64)[np.asarray(part.faces)[keep]])
        part_of.append(np.full(keep.shape[0], len(clean) - 1, np.int32))
        face_of.append(keep)
    if not clean or sum(t.shape[0] for t in tris) == 0:
        raise InputError("the mesh has no faces with non-zero area; nothing to voxelise")
    return MeshParts(clean, np.concatenate(tris), np.concatenate(part_of), np.concatenate(face_of))


def _checked(part: trimesh.Trimesh) -> tuple[trimesh.Trimesh | None, np.ndarray]:
    """Check one part; return it (vertices clamped into the cube) and the indices of its usable faces."""
    v = np.asarray(part.vertices, np.float64)
    f = np.asarray(part.faces)
    if f.size == 0 or v.size == 0:
        return None, np.zeros(0, np.int64)
    if f.ndim != 2 or f.shape[1] != 3:
        raise InputError(f"faces must be (F, 3) triangles, got shape {f.shape}")
    if not np.isfinite(v).all():
        raise InputError("the mesh has NaN or infinite vertex coordinates; repair or re-export it")
    if f.min() < 0 or f.max() >= v.shape[0]:
        raise InputError(
            f"face indices must lie in [0, {v.shape[0] - 1}], found {f.min()}..{f.max()}; the file is corrupt"
        )
    if np.abs(v).max() > 0.5 + CUBE_TOLERANCE:
        raise InputError(
            f"mesh extends to {np.abs(v).max():.4f}, outside the unit cube [-0.5, 0.5]^3; "
            "normalise it first (centre it and scale its longest side to at most 1)"
        )
    if np.abs(v).max() > 0.5:
        part = part.copy()
        part.vertices = np.clip(v, -0.5, 0.5)
        v = np.asarray(part.vertices, np.float64)
    tri = v[f]  # (F, 3, 3)
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)  # (F,)
    longest2 = (np.diff(tri, axis=1, append=tri[:, :1]) ** 2).sum(axis=2).max(axis=1)  # (F,) squared edge length
    # Zero area up to rounding: height below 1e-10 of the face's own longest edge (its normal is noise).
    keep = np.flatnonzero(area2 > 1e-10 * longest2)
    if keep.shape[0] < f.shape[0]:
        warnings.warn(
            f"dropped {f.shape[0] - keep.shape[0]} zero-area (degenerate) faces of {f.shape[0]}", stacklevel=3
        )
    return part, keep
