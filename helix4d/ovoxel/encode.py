"""Mesh → O-Voxel: exact voxel set and edge flags, QEF dual vertices, area-weighted PBR attributes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from helix4d.errors import InputError
from helix4d.ovoxel.attributes import surface_attributes
from helix4d.ovoxel.mesh_input import MeshParts, flatten
from helix4d.ovoxel.representation import QUAD_OFFSETS, OVoxel
from helix4d.ovoxel.voxelize import edge_crossings, key_to_voxel, surface_voxels, voxel_key


@dataclass
class EncodeConfig:
    """Knobs of `mesh_to_ovoxel`; the voxel set and edge flags are exact and do not depend on them.

    samples_per_voxel: stratified surface samples per voxel-face of area (at least one per face); they give the
                       attributes, the split weights and the mass point the dual vertex is pulled toward.
    max_samples:       cap on the total sample count (the density is lowered to fit).
    regularisation:    QEF pull toward the mass point, relative to the mean Hermite-plane weight; keeps the dual
                       vertex well-defined on flat patches where the planes do not pin it down.
    """

    samples_per_voxel: float = 4.0
    max_samples: int = 4_000_000
    regularisation: float = 0.02


def mesh_to_ovoxel(
    mesh: trimesh.Trimesh | trimesh.Scene, resolution: int, config: EncodeConfig | None = None
) -> OVoxel:
    """Encode a mesh or scene that already lies in the unit cube [-0.5, 0.5]^3 as an O-Voxel at `resolution`.

    Active voxels are those whose closed box meets the surface (exact triangle–box test) plus the 4 voxels
    around every crossed edge; edge flags are exact crossing parities. Dual vertices minimise a QEF over the
    intersection points and normals on each voxel's 12 edges, regularised toward the voxel's surface mass
    point and clamped inside the voxel. Attributes are area-weighted averages of surface samples in the voxel.
    """
    cfg = config or EncodeConfig()
    if int(resolution) != resolution or resolution < 2:
        raise InputError(f"resolution must be an integer >= 2, got {resolution}")
    r = int(resolution)
    src = flatten(mesh)
    tris = (src.triangles + 0.5) * r  # (F, 3, 3) grid coordinates

    sat_keys, sat_owner = surface_voxels(tris, r)
    hits = edge_crossings(tris, r)
    k = hits.axis.shape[0]
    edge_id, first, inv = np.unique(voxel_key(hits.lattice, r) * 3 + hits.axis, return_index=True,
                                    return_inverse=True)
    crossed = np.bincount(inv) % 2 == 1  # (E,) odd number of crossings
    positive = np.bincount(inv, weights=np.sign(hits.normal[np.arange(k), hits.axis])) > 0  # (E,)
    e_axis, e_lattice = edge_id % 3, key_to_voxel(edge_id // 3, r)

    # Active set: the exact box-overlap set plus the 4 voxels around each crossed edge (they overlap the
    # surface in exact arithmetic; the union guards against rounding).
    ring, ring_src = _around(e_lattice[crossed], e_axis[crossed], r)
    keys, pick = np.unique(np.concatenate([sat_keys, ring]), return_index=True)
    owner = np.concatenate([sat_owner, hits.tri[first[crossed]][ring_src]])[pick]  # (N,) a touching triangle
    coords = key_to_voxel(keys, r)  # (N, 3)
    n = keys.shape[0]

    edges = np.zeros((n, 3), bool)
    sign = np.zeros((n, 3), bool)
    slot = np.searchsorted(keys, edge_id[crossed] // 3)
    edges[slot, e_axis[crossed]] = True
    sign[slot, e_axis[crossed]] = positive[crossed]

    mass, attrs, split = _surface_statistics(src, tris, keys, coords, owner, r, cfg)
    dual = _solve_qef(hits, keys, coords, mass, r, cfg.regularisation)
    return OVoxel(resolution=r, coords=coords, dual=dual, edges=edges, edge_sign=sign, split=split, attrs=attrs)


# ---------------------------------------------------------------------------------------------- internals
def _around(lattice: np.ndarray, axis: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys of the in-grid voxels among the 4 around each edge (`QUAD_OFFSETS`) and the index of their edge.

    lattice (E, 3) in [0, R-1], axis (E,). Only the -1 offsets can leave the grid, where the coordinate is 0.
    """
    e = np.arange(lattice.shape[0])
    axis = axis.astype(np.int64)
    step = QUAD_OFFSETS @ np.array([r * r, r, 1])  # (3, 4) key offset of each ring voxel
    ring = voxel_key(lattice, r)[:, None] + step[axis]  # (E, 4)
    zb, zc = lattice[e, (axis + 1) % 3] == 0, lattice[e, (axis + 2) % 3] == 0
    valid = np.stack([np.ones_like(zb), ~zb, ~(zb | zc), ~zc], axis=1)  # (E, 4)
    return ring[valid], np.nonzero(valid)[0]


def _solve_qef(hits, keys: np.ndarray, coords: np.ndarray, mass: np.ndarray, r: int, reg: float) -> np.ndarray:
    """(N, 3) dual offsets in [0, 1]: argmin Σ (n·(x - p))² + λ|x - m|² over the hits on each voxel's edges."""
    n = keys.shape[0]
    ring, src = _around(hits.lattice, hits.axis, r)
    slot = np.minimum(np.searchsorted(keys, ring), n - 1)
    ok = keys[slot] == ring
    slot, nrm, pnt = slot[ok], hits.normal[src[ok]], hits.point[src[ok]]
    ata = np.zeros((n, 3, 3))
    atb = np.zeros((n, 3))
    d = (nrm * pnt).sum(axis=1)  # (K',) plane offsets
    for i in range(3):
        atb[:, i] = np.bincount(slot, weights=nrm[:, i] * d, minlength=n)
        for j in range(i, 3):
            ata[:, i, j] = ata[:, j, i] = np.bincount(slot, weights=nrm[:, i] * nrm[:, j], minlength=n)
    lam = reg * np.trace(ata, axis1=1, axis2=2) / 3.0 + 1e-9  # (N,)
    lhs = ata + lam[:, None, None] * np.eye(3)
    rhs = atb - np.einsum("nij,nj->ni", ata, mass)
    x = mass + np.linalg.solve(lhs, rhs[..., None])[..., 0]  # (N, 3) grid coordinates
    return np.clip(x - coords, 0.0, 1.0).astype(np.float32)


def _surface_statistics(src: MeshParts, tris: np.ndarray, keys: np.ndarray, coords: np.ndarray, owner: np.ndarray,
                        r: int, cfg: EncodeConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per voxel: mass point (N, 3) grid coords, attributes (N, 6), split weight (N,) from surface samples."""
    n = keys.shape[0]
    face, bary, weight = _stratified_samples(tris, cfg)
    t = tris[face]  # (K, 3, 3)
    points = bary[:, 0:1] * t[:, 0] + bary[:, 1:2] * t[:, 1] + bary[:, 2:3] * t[:, 2]  # (K, 3)
    del t
    sample_key = voxel_key(np.clip(np.floor(points), 0, r - 1), r)
    slot = np.minimum(np.searchsorted(keys, sample_key), n - 1)
    ok = keys[slot] == sample_key
    face, bary, weight, points, slot = face[ok], bary[ok], weight[ok], points[ok], slot[ok]

    # Voxels that no sample landed in (the surface only grazes them): one sample at the point of a touching
    # triangle closest to the voxel centre, so every voxel gets a mass point and attributes.
    empty = np.flatnonzero(np.bincount(slot, minlength=n) == 0)
    if empty.size:
        t = tris[owner[empty]]
        near = trimesh.triangles.closest_point(t, coords[empty] + 0.5)
        nb = np.clip(trimesh.triangles.points_to_barycentric(t, near), 0.0, 1.0)
        nb /= nb.sum(axis=1, keepdims=True)
        face = np.concatenate([face, owner[empty]])
        bary = np.concatenate([bary, nb])
        weight = np.concatenate([weight, np.ones(empty.size)])
        points = np.concatenate([points, near])
        slot = np.concatenate([slot, empty])

    values = np.empty((face.shape[0], 6), np.float32)
    part = src.part_of[face]
    for p, mesh in enumerate(src.parts):
        sel = np.flatnonzero(part == p)
        if sel.size:
            values[sel] = surface_attributes(mesh, src.face_of[face[sel]], bary[sel])

    total = np.bincount(slot, weights=weight, minlength=n)  # (N,) > 0 everywhere
    normal = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    mass = np.stack([np.bincount(slot, weights=weight * points[:, i], minlength=n) for i in range(3)], 1)
    attrs = np.stack([np.bincount(slot, weights=weight * values[:, i], minlength=n) for i in range(6)], 1)
    mean_n = np.stack([np.bincount(slot, weights=weight * normal[face, i], minlength=n) for i in range(3)], 1)
    mass /= total[:, None]
    mass = np.clip(mass, coords, coords + 1)
    split = 1.0 - np.linalg.norm(mean_n, axis=1) / total  # 0 on flat patches, larger where the surface bends
    return mass, (attrs / total[:, None]).astype(np.float32), np.clip(split, 0.0, 1.0).astype(np.float32)


def _stratified_samples(tris: np.ndarray, cfg: EncodeConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic stratified samples: each face is cut into m² equal sub-triangles (m from its area) and
    sampled at their centroids. Returns face (K,), barycentrics (K, 3), area weight (K,)."""
    area = 0.5 * np.linalg.norm(np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]), axis=1)  # voxel units
    density = min(cfg.samples_per_voxel, cfg.max_samples / max(float(area.sum()), 1e-12))
    m = np.maximum(1, np.ceil(np.sqrt(area * density))).astype(np.int64)  # (F,) sub-division level
    faces, barys = [], []
    for level in np.unique(m):
        ids = np.flatnonzero(m == level)
        pattern = _centroid_pattern(int(level))  # (level², 3)
        faces.append(np.repeat(ids, pattern.shape[0]))
        barys.append(np.tile(pattern, (ids.shape[0], 1)))
    face = np.concatenate(faces)
    return face, np.concatenate(barys), (area / (m * m))[face]


def _centroid_pattern(m: int) -> np.ndarray:
    """(m², 3) barycentric centroids of the m² congruent sub-triangles of a triangle cut m times per side."""
    i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    i, j = i.ravel(), j.ravel()
    up = i + j <= m - 1  # upward triangles: i + j + k = m - 1
    down = i + j <= m - 2  # downward triangles: i + j + k = m - 2
    a = np.concatenate([i[up] + 1 / 3, i[down] + 2 / 3])
    b = np.concatenate([j[up] + 1 / 3, j[down] + 2 / 3])
    return np.stack([a, b, m - a - b], axis=1) / m
