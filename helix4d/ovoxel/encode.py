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

SAMPLE_CHUNK = 1 << 20  # surface samples reduced per batch


@dataclass
class EncodeConfig:
    """Knobs of `mesh_to_ovoxel`; the voxel set and edge flags are exact and do not depend on them.

    samples_per_voxel: stratified surface samples per voxel-face of area (at least one per face); they give the
                       attributes, the split weights and the mass point the dual vertex is pulled toward.
    max_samples:       cap on the total sample count, i.e. on time (the density is lowered to fit).
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

    A surface lying exactly on a voxel face touches the closed boxes on both sides, so both are active, but only
    one side gets crossed edges (see `voxelize`): the other layer carries no quads. Features thinner than a
    voxel edge whose two sides cross the same edge cancel there (even parity); a single open sheet does not.
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
    edge_id, first, inv = np.unique(voxel_key(hits.lattice, r) * 3 + hits.axis, return_index=True, return_inverse=True)
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
    slot = np.searchsorted(keys, edge_id[crossed] // 3)  # every crossed edge's own voxel is in the ring
    edges[slot, e_axis[crossed]] = True
    sign[slot, e_axis[crossed]] = positive[crossed]

    mass, attrs, split = _surface_statistics(src, tris, keys, coords, owner, r, cfg)
    dual = _solve_qef(hits, keys, coords, mass, r, cfg.regularisation)
    return OVoxel(resolution=r, coords=coords, dual=dual, edges=edges, edge_sign=sign, split=split, attrs=attrs)


# ---------------------------------------------------------------------------------------------- internals
def _ring(lattice: np.ndarray, axis: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys (E, 4) of the 4 voxels around each edge (`QUAD_OFFSETS` order) and whether each is in the grid.

    lattice (E, 3) in [0, R-1], axis (E,). Only the -1 offsets can leave the grid, where the coordinate is 0.
    """
    e = np.arange(lattice.shape[0])
    axis = axis.astype(np.int64)
    step = QUAD_OFFSETS @ np.array([r * r, r, 1])  # (3, 4) key offset of each ring voxel
    ring = voxel_key(lattice, r)[:, None] + step[axis]  # (E, 4)
    zb, zc = lattice[e, (axis + 1) % 3] == 0, lattice[e, (axis + 2) % 3] == 0
    return ring, np.stack([np.ones_like(zb), ~zb, ~(zb | zc), ~zc], axis=1)  # (E, 4), (E, 4)


def _around(lattice: np.ndarray, axis: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys of the in-grid voxels around each edge, flattened, and the index of their edge."""
    ring, valid = _ring(lattice, axis, r)
    return ring[valid], np.nonzero(valid)[0]


def _lookup(keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of each query key in the sorted `keys` and whether it is there at all."""
    slot = np.minimum(np.searchsorted(keys, query), keys.shape[0] - 1)
    return slot, keys[slot] == query


def _solve_qef(hits, keys: np.ndarray, coords: np.ndarray, mass: np.ndarray, r: int, reg: float) -> np.ndarray:
    """(N, 3) dual offsets in [0, 1]: argmin Σ (n·(x - p))² + λ|x - m|² over the hits on each voxel's edges.

    Each hit counts for the 4 voxels around its edge; they are visited one ring position at a time so memory
    stays at a few arrays of the hit count.
    """
    n = keys.shape[0]
    nrm = hits.normal
    d = (nrm * hits.point).sum(axis=1)  # (K,) plane offsets n·p
    ring, valid = _ring(hits.lattice, hits.axis, r)
    ata = np.zeros((n, 3, 3))
    atb = np.zeros((n, 3))
    for j in range(4):
        slot, found = _lookup(keys, ring[:, j])
        ok = valid[:, j] & found
        slot = slot[ok]
        for i in range(3):
            atb[:, i] += np.bincount(slot, weights=nrm[ok, i] * d[ok], minlength=n)
            for k in range(i, 3):
                ata[:, i, k] += np.bincount(slot, weights=nrm[ok, i] * nrm[ok, k], minlength=n)
    ata[:, 1, 0], ata[:, 2, 0], ata[:, 2, 1] = ata[:, 0, 1], ata[:, 0, 2], ata[:, 1, 2]
    lam = reg * np.trace(ata, axis1=1, axis2=2) / 3.0 + 1e-9  # (N,)
    lhs = ata + lam[:, None, None] * np.eye(3)
    rhs = atb - np.einsum("nij,nj->ni", ata, mass)
    x = mass + np.linalg.solve(lhs, rhs[..., None])[..., 0]  # (N, 3) grid coordinates
    return np.clip(x - coords, 0.0, 1.0).astype(np.float32)


def _surface_statistics(
    src: MeshParts, tris: np.ndarray, keys: np.ndarray, coords: np.ndarray, owner: np.ndarray, r: int, cfg: EncodeConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per voxel: mass point (N, 3) grid coords, attributes (N, 6), split weight (N,) from surface samples.

    Samples are generated and reduced in chunks of faces, so memory does not grow with the sample count.
    """
    n = keys.shape[0]
    normal = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])  # (F, 3)
    area = 0.5 * np.linalg.norm(normal, axis=1)  # (F,) in voxel units
    normal /= 2.0 * area[:, None]
    density = min(cfg.samples_per_voxel, cfg.max_samples / max(float(area.sum()), 1e-12))
    level = np.maximum(1, np.ceil(np.sqrt(area * density))).astype(np.int64)  # (F,) m: m² samples per face
    weight_of = area / (level * level)  # (F,) area per sample
    acc = np.zeros((n, 13))  # Σw, Σw·point (3), Σw·attributes (6), Σw·normal (3)

    def accumulate(face: np.ndarray, bary: np.ndarray, points: np.ndarray, slot: np.ndarray) -> None:
        values = np.empty((face.shape[0], 6), np.float32)
        part = src.part_of[face]
        for p, mesh in enumerate(src.parts):
            sel = np.flatnonzero(part == p)
            if sel.size:
                values[sel] = surface_attributes(mesh, src.face_of[face[sel]], bary[sel])
        w = weight_of[face]
        columns = [np.ones_like(w), *points.T, *values.T, *normal[face].T]
        for c, col in enumerate(columns):
            acc[:, c] += np.bincount(slot, weights=w * col, minlength=n)

    ends = np.cumsum(level * level)
    first = 0
    while first < tris.shape[0]:
        stop = max(int(np.searchsorted(ends, ends[first] - level[first] ** 2 + SAMPLE_CHUNK, side="right")), first + 1)
        face, bary = _stratified_samples(np.arange(first, stop), level[first:stop])
        t = tris[face]  # (K, 3, 3)
        points = bary[:, 0:1] * t[:, 0] + bary[:, 1:2] * t[:, 1] + bary[:, 2:3] * t[:, 2]  # (K, 3)
        slot, found = _lookup(keys, voxel_key(np.clip(np.floor(points), 0, r - 1), r))
        accumulate(face[found], bary[found], points[found], slot[found])
        first = stop

    # Voxels that no sample landed in (the surface only grazes them): one sample at the point of a touching
    # triangle closest to the voxel centre, so every voxel gets a mass point and attributes.
    empty = np.flatnonzero(acc[:, 0] == 0)
    if empty.size:
        t = tris[owner[empty]]
        near = trimesh.triangles.closest_point(t, coords[empty] + 0.5)
        nb = np.clip(trimesh.triangles.points_to_barycentric(t, near), 0.0, 1.0)
        accumulate(owner[empty], nb / nb.sum(axis=1, keepdims=True), near, empty)

    total = acc[:, 0:1]  # (N, 1) > 0 everywhere
    mass = np.clip(acc[:, 1:4] / total, coords, coords + 1)
    attrs = (acc[:, 4:10] / total).astype(np.float32)
    split = 1.0 - np.linalg.norm(acc[:, 10:13], axis=1) / total[:, 0]  # 0 on flat patches, more where it bends
    return mass, attrs, np.clip(split, 0.0, 1.0).astype(np.float32)


def _stratified_samples(faces: np.ndarray, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified samples: face f is cut into level[f]² equal sub-triangles, sampled at their
    centroids. Returns face (K,) and barycentrics (K, 3)."""
    out_f, out_b = [], []
    for m in np.unique(level):
        ids = faces[level == m]
        pattern = _centroid_pattern(int(m))  # (m², 3)
        out_f.append(np.repeat(ids, pattern.shape[0]))
        out_b.append(np.tile(pattern, (ids.shape[0], 1)))
    return np.concatenate(out_f), np.concatenate(out_b)


def _centroid_pattern(m: int) -> np.ndarray:
    """(m², 3) barycentric centroids of the m² congruent sub-triangles of a triangle cut m times per side."""
    i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    i, j = i.ravel(), j.ravel()
    up = i + j <= m - 1  # upward triangles: i + j + k = m - 1
    down = i + j <= m - 2  # downward triangles: i + j + k = m - 2
    a = np.concatenate([i[up] + 1 / 3, i[down] + 2 / 3])
    b = np.concatenate([j[up] + 1 / 3, j[down] + 2 / 3])
    return np.stack([a, b, m - a - b], axis=1) / m
