"""Exact surface voxelisation: which voxels a triangle soup touches and which grid edges it crosses.

Everything here works in grid coordinates g = (p + 0.5) * R, where voxel q spans [q, q + 1] and lattice points
are the integers. Work is chunked over triangles so memory grows with the number of surface voxels, never with
R³.

Ties (a lattice point exactly on the surface, a grid line exactly through a mesh edge or vertex) are resolved by
symbolic perturbation: the lattice is treated as shifted by -(e1, e2, e3) with e1 >> e2 >> e3 > 0
infinitesimal (lattice points on the far faces of the cube are shifted outward instead, see
`edge_crossings`). Every predicate below uses that same shift, so each crossing is counted exactly once and crossing
parities agree with one consistent inside/outside labelling of the lattice points — which is what keeps dual
contouring of a closed mesh closed, even for boxes whose faces lie on lattice planes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

CHUNK = 1 << 19  # candidate (triangle, voxel) pairs per vectorised batch
MAX_EXTENT = 4.0  # triangles wider than this many voxels are subdivided before the box tests
SNAP = 1e-9  # predicates closer to zero than this (grid units) count as exact ties
PARALLEL = 1e-10  # normal components below this fraction of the largest count as zero (face parallel to the axis)


@dataclass
class Crossings:
    """Every (triangle, grid edge) intersection.

    axis (K,) int8 edge direction; lattice (K, 3) int64 the edge's start point (= its storage voxel);
    point (K, 3) float64 the intersection in grid coordinates; normal (K, 3) float64 the unit triangle normal;
    tri (K,) int64 the triangle.
    """

    axis: np.ndarray
    lattice: np.ndarray
    point: np.ndarray
    normal: np.ndarray
    tri: np.ndarray


def surface_voxels(tris: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Voxels whose closed box overlaps a triangle (separating-axis test) and one such triangle per voxel.

    tris: (F, 3, 3) grid coordinates. Returns sorted unique voxel keys (V,) int64 (`voxel_key`) and (V,) int64
    the index of a triangle touching each voxel.
    """
    sub, src = _subdivide(tris, MAX_EXTENT)
    lo = np.clip(np.ceil(sub.min(axis=1)).astype(np.int64) - 1, 0, resolution - 1)  # (S, 3)
    hi = np.clip(np.floor(sub.max(axis=1)).astype(np.int64), 0, resolution - 1)
    keys, owners = [], []
    normal = np.cross(sub[:, 1] - sub[:, 0], sub[:, 2] - sub[:, 0])  # (S, 3)
    offset = (normal * sub[:, 0]).sum(axis=1)  # (S,) plane: normal·x = offset
    radius = 0.5 * np.abs(normal).sum(axis=1)  # (S,) half-extent of a voxel along the normal
    for t, q in _candidates(lo, hi - lo + 1):
        # The plane test first (cheap, rejects most of the bounding box), then the 9 edge axes on survivors.
        near = np.abs((normal[t] * (q + 0.5)).sum(axis=1) - offset[t]) <= radius[t]
        t, q = t[near], q[near]
        hit = _triangle_box_overlap(sub[t] - (q + 0.5)[:, None, :])  # triangle relative to the box centre
        k, first = np.unique(voxel_key(q[hit], resolution), return_index=True)
        keys.append(k)
        owners.append(src[t[hit][first]])
    k, first = np.unique(np.concatenate(keys), return_index=True)
    return k, np.concatenate(owners)[first]


def edge_crossings(tris: np.ndarray, resolution: int) -> Crossings:
    """Intersections of triangles with the grid edges that start at lattice points in [0, R-1]^3.

    For edge direction a the test is a 2-D point-in-triangle test of the lattice line (q_b, q_c) against the
    triangle projected along a, plus the line's parameter at the plane; both honour the perturbation rule.
    """
    normal = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])  # (F, 3)
    # A face within rounding of being parallel to an axis is treated as exactly parallel (skipped for that
    # axis), as it would be for exact coordinates; its projection is a sliver that gives no stable answer.
    normal[np.abs(normal) <= PARALLEL * np.abs(normal).max(axis=1, keepdims=True)] = 0.0
    unit = normal / np.linalg.norm(normal, axis=1, keepdims=True)
    lex = _lex_sign(normal)  # (F,) sign of normal·(e1, e2, e3)
    out: list[tuple[np.ndarray, ...]] = []
    for a in range(3):
        b, c = (a + 1) % 3, (a + 2) % 3
        faces = np.flatnonzero(normal[:, a] != 0)
        if faces.size == 0:
            continue
        bc = tris[faces][:, :, [b, c]]  # (F', 3, 2)
        # Widened by a hair so that lines the snapped predicates treat as ties are always tested.
        lo = np.clip(np.ceil(bc.min(axis=1) - 1e-6).astype(np.int64), 0, resolution - 1)
        hi = np.clip(np.floor(bc.max(axis=1) + 1e-6).astype(np.int64), 0, resolution - 1)
        for t_local, q in _candidates(lo, hi - lo + 1):
            t = faces[t_local]
            hit, w = _line_hits(tris[t], q, a, b < c)
            t, q = t[hit], q[hit]
            w = np.clip(w[hit], tris[t, :, a].min(axis=1), tris[t, :, a].max(axis=1))
            k = np.rint(w)
            tie = np.abs(w - k) <= SNAP
            start = np.where(tie, k - (lex[t] * np.sign(normal[t, a]) < 0), np.floor(w)).astype(np.int64)
            # Lattice points on the far face of the cube are perturbed outward (+e) instead: geometry never
            # lies beyond them, and this keeps a face lying exactly on that boundary (a mesh normalised to
            # fill the cube) inside the last edge rather than dropping it.
            start[tie & (k == resolution)] = resolution - 1
            ok = (start >= 0) & (start < resolution)
            lattice = np.empty((int(ok.sum()), 3), np.int64)
            lattice[:, a], lattice[:, b], lattice[:, c] = start[ok], q[ok, 0], q[ok, 1]
            point = lattice.astype(np.float64)
            point[:, a] = w[ok]
            out.append((np.full(lattice.shape[0], a, np.int8), lattice, point, unit[t[ok]], t[ok]))
    if not out:
        z = np.zeros((0, 3))
        return Crossings(np.zeros(0, np.int8), z.astype(np.int64), z, z, np.zeros(0, np.int64))
    return Crossings(*(np.concatenate(parts) for parts in zip(*out)))


def voxel_key(q: np.ndarray, resolution: int) -> np.ndarray:
    """(M,) int64 linear key x·R² + y·R + z of voxel indices q (M, 3); sorting keys sorts by x, y, z."""
    q = q.astype(np.int64)
    return (q[:, 0] * resolution + q[:, 1]) * resolution + q[:, 2]


def key_to_voxel(keys: np.ndarray, resolution: int) -> np.ndarray:
    """Inverse of `voxel_key`: (M, 3) int64."""
    return np.stack([keys // (resolution * resolution), (keys // resolution) % resolution, keys % resolution], 1)


# ---------------------------------------------------------------------------------------------- internals
def _line_hits(tri: np.ndarray, q: np.ndarray, a: int, b_dominates: bool) -> tuple[np.ndarray, np.ndarray]:
    """Does the lattice line along axis a through (q_b, q_c) pierce each triangle, and where (its coordinate w)?

    tri (M, 3, 3) grid coordinates, q (M, 2) integer (b, c). The line is perturbed by -(e_b, e_c); `b_dominates`
    says e_b >> e_c. Returns (M,) bool and (M,) float64 w (meaningful where hit).
    """
    b, c = (a + 1) % 3, (a + 2) % 3
    vb, vc = tri[:, :, b], tri[:, :, c]  # (M, 3)
    db, dc = np.roll(vb, -1, axis=1) - vb, np.roll(vc, -1, axis=1) - vc  # edge i runs v_i -> v_{i+1}
    edge_fn = db * (q[:, 1:2] - vc) - dc * (q[:, 0:1] - vb)  # (M, 3) twice the signed sub-areas
    # Sign of the perturbation term -d_b·e_c + d_c·e_b, decided by the dominant infinitesimal; an edge within
    # rounding of an axis direction counts as exactly along it, like the normals in `edge_crossings`.
    flat = PARALLEL * np.maximum(np.abs(db), np.abs(dc))
    sb, sc = np.where(np.abs(db) > flat, np.sign(db), 0.0), np.where(np.abs(dc) > flat, np.sign(dc), 0.0)
    tie = np.where(sc != 0, sc, -sb) if b_dominates else np.where(sb != 0, -sb, sc)
    snap = np.abs(edge_fn) <= SNAP * (np.abs(db) + np.abs(dc))
    side = np.where(snap, tie, np.sign(edge_fn))  # (M, 3)
    area = edge_fn.sum(axis=1)  # (M,) twice the projected area = normal_a
    hit = np.all(side == np.sign(area)[:, None], axis=1)
    va = tri[:, :, a]
    with np.errstate(invalid="ignore", divide="ignore"):
        # barycentric weight of vertex j is the sub-area of the edge opposite to it
        w = (edge_fn[:, 1] * va[:, 0] + edge_fn[:, 2] * va[:, 1] + edge_fn[:, 0] * va[:, 2]) / area
    return hit & np.isfinite(w), w


def _triangle_box_overlap(v: np.ndarray) -> np.ndarray:
    """Closed triangle vs. closed box [-0.5, 0.5]^3 by the separating-axis theorem (Akenine-Möller).

    v: (M, 3, 3) triangle vertices relative to the box centre. The 3 box-face axes are already satisfied by the
    candidate ranges and the plane by the caller; this checks the 9 edge-cross axes. Returns (M,) bool.
    """
    ok = np.ones(v.shape[0], bool)
    f = np.roll(v, -1, axis=1) - v  # (M, 3, 3) edges
    for j in range(3):
        fx, fy, fz = f[:, j, 0], f[:, j, 1], f[:, j, 2]
        p, r = v[:, j], v[:, (j + 2) % 3]  # the edge's own vertex and the opposite one (the third projects like p)
        # axes e_x × f = (0, -fz, fy), e_y × f = (fz, 0, -fx), e_z × f = (-fy, fx, 0): two non-zero components
        for s0, s1, i0, i1 in ((-fz, fy, 1, 2), (fz, -fx, 0, 2), (-fy, fx, 0, 1)):
            pa = s0 * p[:, i0] + s1 * p[:, i1]
            pb = s0 * r[:, i0] + s1 * r[:, i1]
            rad = 0.5 * (np.abs(s0) + np.abs(s1))
            ok &= (np.minimum(pa, pb) <= rad) & (np.maximum(pa, pb) >= -rad)
    return ok


def _subdivide(tris: np.ndarray, max_extent: float) -> tuple[np.ndarray, np.ndarray]:
    """Split triangles 1→4 at edge midpoints until each bounding box is at most `max_extent` wide.

    Midpoints of float32-derived coordinates are exact in float64, so the union of the pieces is exactly the
    original triangle. Returns (S, 3, 3) pieces and (S,) index of the source triangle.
    """
    src = np.arange(tris.shape[0])
    done_t, done_s = [], []
    while tris.shape[0]:
        big = np.ptp(tris, axis=1).max(axis=1) > max_extent
        done_t.append(tris[~big])
        done_s.append(src[~big])
        t, src = tris[big], src[big]
        m01, m12, m20 = (t[:, 0] + t[:, 1]) / 2, (t[:, 1] + t[:, 2]) / 2, (t[:, 2] + t[:, 0]) / 2
        tris = np.concatenate(
            [
                np.stack([t[:, 0], m01, m20], 1),
                np.stack([m01, t[:, 1], m12], 1),
                np.stack([m20, m12, t[:, 2]], 1),
                np.stack([m01, m12, m20], 1),
            ]
        )
        src = np.tile(src, 4)
    return np.concatenate(done_t), np.concatenate(done_s)


def _candidates(lo: np.ndarray, dims: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Enumerate the integer boxes lo + [0, dims) of many triangles in chunks of about `CHUNK` points.

    lo, dims: (F, D) int64. Yields (M,) triangle index and (M, D) integer point.
    """
    dims = np.maximum(dims, 0)
    counts = dims.prod(axis=1)  # (F,)
    ends = np.cumsum(counts)
    start = 0
    while start < counts.shape[0]:
        base = ends[start] - counts[start]
        stop = max(int(np.searchsorted(ends, base + CHUNK, side="right")), start + 1)
        idx = np.arange(start, stop)
        n = counts[idx]
        if n.sum():
            t = np.repeat(idx, n)
            local = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
            q = np.empty((t.shape[0], lo.shape[1]), np.int64)
            for d in range(lo.shape[1] - 1, -1, -1):
                q[:, d] = lo[t, d] + local % dims[t, d]
                local //= dims[t, d]
            yield t, q
        start = stop


def _lex_sign(n: np.ndarray) -> np.ndarray:
    """(F,) sign of the first non-zero component of each (snapped) normal: the sign of n·(e1, e2, e3)."""
    first = np.argmax(n != 0, axis=1)
    return np.sign(n[np.arange(n.shape[0]), first])
