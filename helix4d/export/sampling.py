"""Attribute functions: PBR attributes (base colour RGB, metallic, roughness, alpha) at arbitrary 3D points.

Texture baking and simplification ask "what material is at this surface point?" through one callable,
`AttributeFn(points (M, 3)) -> (M, 6)` float in [0, 1] (the O-Voxel channel order), so the pipeline can answer
from the O-Voxel itself (`ovoxel_sampler`) while plain meshes answer from their own surface (`mesh_sampler`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from helix4d.errors import InputError
from helix4d.ovoxel import OVoxel, surface_attributes

AttributeFn = Callable[[np.ndarray], np.ndarray]

_CHUNK = 32768  # points per batch: bounds the (chunk, candidates, 3) temporaries


def mesh_sampler(mesh: trimesh.Trimesh, candidates: int = 16) -> AttributeFn:
    """Attributes of `mesh` at the closest point of its surface to each query point.

    Used to carry colours across simplification: the simplified surface lies near the original, so each new
    vertex / texel takes the material of the original surface right next to it. The closest triangle is searched
    among the `candidates` triangles with the nearest centroids (exact for well-shaped meshes, no spatial-index
    dependency).
    """
    if len(mesh.faces) == 0:
        raise InputError("cannot sample attributes of a mesh with no faces: drop empty frames or pass attribute_fn")
    triangles = np.asarray(mesh.triangles, dtype=np.float64)  # (F, 3, 3)
    tree = cKDTree(triangles.mean(axis=1))
    k = min(candidates, len(triangles))

    def sample(points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.empty((len(points), 6), np.float32)
        for start in range(0, len(points), _CHUNK):
            p = points[start : start + _CHUNK]  # (m, 3)
            _, cand = tree.query(p, k=k)
            cand = np.asarray(cand).reshape(len(p), k)  # (m, k)
            closest = trimesh.triangles.closest_point(triangles[cand].reshape(-1, 3, 3), np.repeat(p, k, axis=0))
            closest = closest.reshape(len(p), k, 3)
            best = np.square(closest - p[:, None]).sum(-1).argmin(axis=1)  # (m,)
            rows = np.arange(len(p))
            face = cand[rows, best]
            bary = trimesh.triangles.points_to_barycentric(triangles[face], closest[rows, best])  # (m, 3)
            bary = np.clip(np.nan_to_num(bary, nan=1.0 / 3.0), 0.0, None)
            bary /= np.maximum(bary.sum(axis=1, keepdims=True), 1e-12)
            out[start : start + len(p)] = surface_attributes(mesh, face, bary)
        return out

    return sample


def ovoxel_sampler(ovoxel: OVoxel, neighbours: int = 4) -> AttributeFn:
    """Attributes of an O-Voxel at any point: inverse-squared-distance blend of the `neighbours` nearest active
    voxels' dual vertices (they lie on the surface, so the blend follows it; 1 = nearest voxel, blocky).

    This lets a baked texture carry the O-Voxel's material at texel resolution instead of the mesh's vertex
    resolution.
    """
    if len(ovoxel) == 0:
        raise InputError("cannot sample an empty O-Voxel: it has no active voxels")
    tree = cKDTree(ovoxel.positions())
    attrs = ovoxel.attrs
    k = min(neighbours, len(ovoxel))
    eps = (0.05 / ovoxel.resolution) ** 2  # keeps the weight finite on a dual vertex

    def sample(points: np.ndarray) -> np.ndarray:
        dist, idx = tree.query(np.asarray(points, dtype=np.float64).reshape(-1, 3), k=k)
        dist, idx = np.asarray(dist).reshape(-1, k), np.asarray(idx).reshape(-1, k)  # (M, k)
        weight = 1.0 / (dist**2 + eps)
        weight /= weight.sum(axis=1, keepdims=True)
        return np.einsum("mk,mkc->mc", weight, attrs[idx]).astype(np.float32)

    return sample
