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


class SurfaceQuery:
    """Closest points of a mesh's surface to query points. The closest triangle is searched among the `candidates`
    triangles with the nearest centroids (exact for well-shaped meshes, no spatial-index dependency)."""

    def __init__(self, mesh: trimesh.Trimesh, candidates: int = 16) -> None:
        if len(mesh.faces) == 0:
            raise InputError("cannot query the surface of a mesh with no faces: drop empty frames or pass attribute_fn")
        self.triangles = np.asarray(mesh.triangles, dtype=np.float64)  # (F, 3, 3)
        self.tree = cKDTree(self.triangles.mean(axis=1))
        self.k = min(candidates, len(self.triangles))

    def closest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """points (M, 3) -> closest surface points (M, 3) and the face (M,) each lies on, in chunks of _CHUNK."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        closest, faces = np.empty_like(points), np.empty(len(points), np.int64)
        for start in range(0, len(points), _CHUNK):
            p = points[start : start + _CHUNK]  # (m, 3)
            _, cand = self.tree.query(p, k=self.k)
            cand = np.asarray(cand).reshape(len(p), self.k)  # (m, k)
            near = trimesh.triangles.closest_point(self.triangles[cand].reshape(-1, 3, 3), np.repeat(p, self.k, 0))
            near = near.reshape(len(p), self.k, 3)
            best = np.square(near - p[:, None]).sum(-1).argmin(axis=1)  # (m,)
            rows = np.arange(len(p))
            closest[start : start + len(p)], faces[start : start + len(p)] = near[rows, best], cand[rows, best]
        return closest, faces


def mesh_sampler(mesh: trimesh.Trimesh, candidates: int = 16) -> AttributeFn:
    """Attributes of `mesh` at the closest point of its surface to each query point.

    Used to carry colours across simplification: the simplified surface lies near the original, so each new
    vertex / texel takes the material of the original surface right next to it.
    """
    query = SurfaceQuery(mesh, candidates)

    def sample(points: np.ndarray) -> np.ndarray:
        closest, face = query.closest(points)
        bary = trimesh.triangles.points_to_barycentric(query.triangles[face], closest)  # (M, 3)
        bary = np.clip(np.nan_to_num(bary, nan=1.0 / 3.0), 0.0, None)
        bary /= np.maximum(bary.sum(axis=1, keepdims=True), 1e-12)
        return surface_attributes(mesh, face, bary).astype(np.float32)

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
