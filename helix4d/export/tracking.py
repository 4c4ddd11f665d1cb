"""Tracked vertices: inside a topology segment, one vertex set (the segment's first mesh) moves through every frame.

Each next frame's surface is fitted by an embedded deformation (Sumner et al. 2007): `nodes` graph nodes sampled
on the template (farthest points), each with a rotation and a translation; a vertex follows its `neighbours`
nearest nodes, blended by the usual (1 - d / d_max)² weights. The fit minimises

    E = mean_v (n_s · (x_v - s))² + mean_s (n_v · (x_v - s))²
        + rigidity · mean_ab |R_a (g_b - g_a) + g_a + t_a - g_b - t_b|²

The data terms are point-to-plane, both ways: each deformed vertex x_v to the tangent plane of its nearest target
sample s (n_s: the normal of the face it was drawn on), and each target sample to the tangent plane of its nearest
vertex (n_v: the template's vertex normal turned by the vertex's blended rotation); a pair whose normals are more
than 60° apart is no pair (the far side of a thin wall). The last term is as-rigid-as-possible between
neighbouring nodes (Sumner's E_reg; the rotations stay rotations, so E_rot is not needed). Point-to-plane, because
a point-to-point term pulls each vertex towards the samples around it along the surface as much as across it:
fitted that way (Chamfer, with Adam), the vertices of a rigid body's true meshes slid 6.7 voxels from their true
places on average (16 at most) while every frame lay within a voxel of its surface, a motion no rigid bone of a
rig (`rig.py`) can follow and a texture swims with. Moving along the surface changes no point-to-plane distance,
so nothing pulls a vertex that way; only the surface's shape and the graph's rigidity move it.

E is minimised by Gauss-Newton (Levenberg-Marquardt): each step linearises the rotations as R ← exp([δ]×) R and
the translations as t ← t + τ, solves the 6N normal equations, each block (turns, shifts) damped by `damping`
times its mean diagonal, then pairs the points anew; `iterations` steps at most, fewer once no entry of a
step exceeds `tolerance`.
The graph is stiffer than the Chamfer fit's was (`rigidity` 3, not 1): with 0.1 the fit follows a generated frame's
own change of shape as closely as Chamfer did, but a still capsule's vertices wander off and an ellipsoid is bent
onto a box instead of falling back.
The damping holds still what the surface does not pin down (a patch turning about its own normal, a sphere's
spin), so vertices stay where the previous frame put them rather than wander. Frame k starts from frame k-1's
nodes, each moved once more by its own last motion (constant velocity), so a steady turn is not a frame behind
when the nearest points are paired. The data terms read at most `samples` of the template's vertices (all of
them move), so a large mesh costs no more to fit than a small one; `python -m helix4d.bench.tracking` measures the
drift and the surface fit on ground-truth sequences.

The graph moves the surface as a whole but cannot follow a generated frame's own bumps, a voxel high, that change
from frame to frame; `refine` steps then pull every vertex onto the frame's surface (its closest point), the pull
smoothed over the template's edges (`smoothing` rounds of neighbour averaging), so the detail follows while the
triangles keep their shape, and at most `max_cd` long, so only detail is pulled: a shape the graph could not reach
is not faked by collapsing the template onto it. These displacements are per frame and do not carry to the next
frame's start. Where the tracked mesh ends up farther than `max_cd` (`mesh_chamfer`: the mean vertex-to-surface
distances both ways, summed) from the frame's own mesh, tracking has failed: the segment is cut there and the
frame's own mesh starts a new one (the per-frame fallback). The fit is numpy and scipy, one thread's work, so a
clip gives the same segments on any number of torch threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import trimesh
from scipy import linalg, sparse
from scipy.spatial import cKDTree

from helix4d.errors import InputError
from helix4d.export.sampling import SurfaceQuery
from helix4d.export.segments import Segment

_FACING = 0.5  # a vertex and a target point pair up only if their normals are within 60° (not a thin wall's far side)


@dataclass(frozen=True)
class TrackingConfig:
    """nodes / neighbours: the deformation graph's size and each vertex's (and node's) neighbour count;
    iterations: Gauss-Newton steps per frame (at most: the fit stops once a step is below tolerance: 1e-3, a
    thirtieth of a voxel at R = 32 or 0.06°, stopped the ground-truth sequences of `helix4d.bench.tracking` with the
    same drift and surface fit as 1e-6, in two thirds of the time); samples: points
    drawn on each target surface and vertices the data term reads; rigidity: weight of the as-rigid-as-possible
    term; damping: Levenberg-Marquardt damping, a fraction of the normal equations' diagonal; refine / smoothing:
    closest-point steps per frame after the graph fit and the neighbour-averaging rounds of each step's pull (module
    docstring); max_cd: the largest Chamfer distance (unit-cube units) between tracked and per-frame mesh that
    still counts as tracked (1/R: one voxel at R = 32)."""

    nodes: int = 96
    neighbours: int = 4
    iterations: int = 10
    samples: int = 2000
    rigidity: float = 3.0
    damping: float = 0.03
    refine: int = 2
    smoothing: int = 3
    max_cd: float = 1.0 / 32
    tolerance: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.nodes, self.neighbours, self.iterations, self.samples) < 1 or self.max_cd <= 0.0:
            raise InputError("tracking needs nodes, neighbours, iterations, samples >= 1 and max_cd > 0")
        if min(self.refine, self.smoothing) < 0 or min(self.rigidity, self.damping, self.tolerance) < 0.0:
            raise InputError("tracking needs refine, smoothing, rigidity, damping, tolerance >= 0")


@dataclass
class TrackedSegment:
    """Frames [start, start + K) shown by one vertex set: `template` (topology and per-vertex PBR of the first
    frame's mesh) at `positions` (K, V, 3) float32; `cd` (K,) the Chamfer distance of each tracked frame to that
    frame's own mesh (0 for the first)."""

    start: int
    template: trimesh.Trimesh
    positions: np.ndarray
    cd: list[float] = field(default_factory=list)

    @property
    def stop(self) -> int:
        return self.start + len(self.positions)

    def mesh(self, frame: int) -> trimesh.Trimesh:
        """The tracked mesh at clip frame `frame` (template topology and attributes, that frame's positions)."""
        mesh = self.template.copy()
        mesh.vertices = self.positions[frame - self.start].astype(np.float64)
        return mesh


def track_clip(
    meshes: Sequence[trimesh.Trimesh], segments: Sequence[Segment], config: TrackingConfig = TrackingConfig()
) -> list[TrackedSegment]:
    """Track every topology segment of the clip; a segment whose tracking fails at some frame is cut there, so the
    result may hold more segments than `segments` (and an empty frame is a segment of its own)."""
    if not segments or segments[0].start != 0 or segments[-1].stop != len(meshes):
        raise InputError("segments must cover the clip's frames in order")
    tracked = []
    for segment in segments:
        start = segment.start
        while start < segment.stop:
            piece = track_segment(meshes[start : segment.stop], config)
            piece.start = start
            tracked.append(piece)
            start = piece.stop
    return tracked


def track_segment(meshes: Sequence[trimesh.Trimesh], config: TrackingConfig = TrackingConfig()) -> TrackedSegment:
    """Track meshes[0] through meshes[1:] until the fit fails (see the module docstring); returns the tracked run
    from frame 0 (start 0, at least one frame)."""
    template = meshes[0]
    vertices = np.asarray(template.vertices, dtype=np.float64)
    positions, cds = [vertices.astype(np.float32)], [0.0]
    if len(template.faces) == 0 or len(meshes) == 1:
        return TrackedSegment(0, template, np.stack(positions), cds)
    graph = _DeformationGraph(vertices, np.asarray(template.vertex_normals, dtype=np.float64), config)
    smooth = _neighbour_mean(template)
    for target in meshes[1:]:
        if len(target.faces) == 0:
            break
        points, normals = _surface_points(target, config.samples, config.seed)
        moved = graph.fit(points, normals, config)  # (V, 3)
        moved = _refine(moved, SurfaceQuery(target), smooth, config)
        cd = mesh_chamfer(_with_vertices(template, moved), target)
        if cd > config.max_cd:
            graph.undo()
            break
        positions.append(moved.astype(np.float32))
        cds.append(cd)
    return TrackedSegment(0, template, np.stack(positions), cds)


def _refine(moved: np.ndarray, target: SurfaceQuery, smooth: sparse.csr_matrix, config: TrackingConfig) -> np.ndarray:
    """(V, 3) vertices pulled onto the target surface in `config.refine` steps, each pull smoothed by `smooth`
    (the neighbour mean) `config.smoothing` times, so neighbouring vertices move alike, and cut to `config.max_cd`."""
    for _ in range(config.refine):
        pull = target.closest(moved)[0] - moved  # (V, 3)
        for _ in range(config.smoothing):
            pull = 0.5 * (pull + smooth @ pull)
        length = np.linalg.norm(pull, axis=1, keepdims=True)
        moved = moved + pull * np.minimum(1.0, config.max_cd / np.maximum(length, 1e-12))
    return moved


def _neighbour_mean(mesh: trimesh.Trimesh) -> sparse.csr_matrix:
    """(V, V) sparse: row v averages v's neighbours along the mesh's edges (a vertex without any keeps itself)."""
    n = len(mesh.vertices)
    edges = np.asarray(mesh.edges_unique, dtype=np.int64).reshape(-1, 2)
    rows, cols = (
        np.concatenate([edges[:, 0], edges[:, 1], np.arange(n)]),
        np.concatenate([edges[:, 1], edges[:, 0], np.arange(n)]),
    )
    weights = np.concatenate([np.ones(2 * len(edges)), np.full(n, 1e-6)])  # the self-loop only counts when alone
    adjacency = sparse.csr_matrix((weights, (rows, cols)), shape=(n, n))
    return sparse.diags(1.0 / np.asarray(adjacency.sum(axis=1)).ravel()) @ adjacency


class _DeformationGraph:
    """Embedded deformation of fixed template vertices; keeps its parameters between frames (warm start)."""

    def __init__(self, vertices: np.ndarray, normals: np.ndarray, config: TrackingConfig) -> None:
        nodes = vertices[_farthest_points(vertices, min(config.nodes, len(vertices)))]  # (N, 3)
        k = min(config.neighbours, len(nodes))
        dist, idx = cKDTree(nodes).query(vertices, k=min(k + 1, len(nodes)))  # (V, k+1)
        dist, idx = np.asarray(dist).reshape(len(vertices), -1), np.asarray(idx).reshape(len(vertices), -1)
        d_max = dist[:, -1:] + 1e-9
        weight = (1.0 - dist[:, :k] / d_max) ** 2 if idx.shape[1] > k else np.ones((len(vertices), k))
        weight /= np.maximum(weight.sum(axis=1, keepdims=True), 1e-12)
        _, edges = cKDTree(nodes).query(nodes, k=min(k + 1, len(nodes)))
        edges = np.asarray(edges).reshape(len(nodes), -1)
        blend = np.zeros((len(vertices), len(nodes)))  # (V, N): vertex v's weight of node n (k nonzeros a row)
        np.put_along_axis(blend, idx[:, :k], weight, axis=1)
        self.vertices, self.normals, self.nodes = vertices, normals, nodes  # (V, 3), (V, 3) unit, (N, 3)
        self.index, self.weight, self.blend = idx[:, :k], weight, blend  # (V, k), (V, k), (V, N)
        self.pairs = np.stack([np.repeat(np.arange(len(nodes)), edges.shape[1] - 1), edges[:, 1:].reshape(-1)], 1)
        rng = np.random.default_rng(config.seed)
        self.probe = np.sort(rng.permutation(len(vertices))[: config.samples])  # (P,) the vertices the data reads
        self.rotation = np.tile(np.eye(3), (len(nodes), 1, 1))  # (N, 3, 3)
        self.translation = np.zeros((len(nodes), 3))  # (N, 3)
        self._previous = (self.rotation, self.translation)
        self._before = self._previous  # the fit of the frame before the current one: the motion's velocity

    def deform(self, rotation: np.ndarray, translation: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """(V, 3) deformed vertices (or those of `rows` only) for node rotations (N, 3, 3) and translations (N, 3).

        Σ_n w_vn (R_n (v - g_n) + g_n + t_n) is written as blend-matrix products, (Σ_n w_vn R_n) v + Σ_n w_vn (g_n +
        t_n - R_n g_n)."""
        blend, vertices = (self.blend, self.vertices) if rows is None else (self.blend[rows], self.vertices[rows])
        offset = self.nodes + translation - np.einsum("nij,nj->ni", rotation, self.nodes)  # (N, 3)
        mixed = (blend @ rotation.reshape(-1, 9)).reshape(-1, 3, 3)  # (V, 3, 3)
        return np.einsum("vij,vj->vi", mixed, vertices) + blend @ offset

    def turn(self, rotation: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(P, 3) unit normals of the vertices `rows`, turned by their blended rotation."""
        mixed = (self.blend[rows] @ rotation.reshape(-1, 9)).reshape(-1, 3, 3)  # (P, 3, 3)
        turned = np.einsum("vij,vj->vi", mixed, self.normals[rows])
        return turned / np.maximum(np.linalg.norm(turned, axis=1, keepdims=True), 1e-12)

    def fit(self, points: np.ndarray, normals: np.ndarray, config: TrackingConfig) -> np.ndarray:
        """Fit the graph to target `points` (M, 3) with unit `normals` (M, 3) by Gauss-Newton (module docstring),
        starting from the previous frame's motion repeated; returns the (V, 3) deformed vertices."""
        self._previous = (self.rotation, self.translation)
        pose = self._predict()
        target_tree = cKDTree(points)
        for _ in range(config.iterations):
            pose, step = self._step(pose, points, normals, target_tree, config.rigidity, config.damping)
            if step < config.tolerance:
                break
        self._before, (self.rotation, self.translation) = self._previous, pose
        return self.deform(*pose)

    def _step(
        self,
        pose: tuple[np.ndarray, np.ndarray],
        points: np.ndarray,
        normals: np.ndarray,
        target_tree: cKDTree,
        rigidity: float,
        damping: float,
    ) -> tuple[tuple[np.ndarray, np.ndarray], float]:
        """One damped Gauss-Newton step from `pose` (rotations (N, 3, 3), translations (N, 3)) with the nearest
        pairs found anew; returns the new pose and the step's largest entry."""
        rotation, translation = pose
        count = 6 * len(self.nodes)
        vertices, index, weight = self.vertices[self.probe], self.index[self.probe], self.weight[self.probe]
        moved, turned = self.deform(rotation, translation, self.probe), self.turn(rotation, self.probe)  # (P, 3)
        ahead = target_tree.query(moved)[1]  # (P,) each vertex's nearest target sample
        behind = cKDTree(moved).query(points)[1]  # (M,) each target sample's nearest vertex
        keep_ahead = np.einsum("pi,pi->p", turned, normals[ahead]) > _FACING
        keep_behind = np.einsum("mi,mi->m", turned[behind], normals) > _FACING
        # point-to-plane pairs (probe vertex, plane point, plane normal): vertex to sample's plane, then sample to
        # vertex's plane; each direction a mean over its pairs
        vertex = np.concatenate([np.flatnonzero(keep_ahead), behind[keep_behind]])  # (D,)
        plane = np.concatenate([points[ahead[keep_ahead]], points[keep_behind]])  # (D, 3)
        normal = np.concatenate([normals[ahead[keep_ahead]], turned[behind[keep_behind]]])  # (D, 3)
        share = [1.0 / max(int(keep.sum()), 1) for keep in (keep_ahead, keep_behind)]
        scale = np.repeat(share, [int(keep_ahead.sum()), int(keep_behind.sum())])  # (D,)
        residual = np.einsum("di,di->d", moved[vertex] - plane, normal)  # (D,)
        # d residual: node n's turn δ moves the vertex by w (δ × R_n (v - g_n)), its shift τ by w τ
        lever = np.einsum("pkij,pkj->pki", rotation[index], vertices[:, None] - self.nodes[index])  # (P, k, 3)
        values = weight[vertex][..., None] * np.concatenate(
            [np.cross(lever[vertex], normal[:, None]), np.broadcast_to(normal[:, None], lever[vertex].shape)], 2
        )  # (D, k, 6)
        columns = 6 * index[vertex][..., None] + np.arange(6)  # (D, k, 6)
        rows = np.repeat(np.arange(len(vertex)), values.shape[1] * 6)
        data = sparse.csr_matrix((values.ravel(), (rows, columns.ravel())), shape=(len(vertex), count))
        rigid, stretch = self._rigidity_rows(rotation, translation)  # (3E, 6N), (3E,)
        rigidity = rigidity / max(len(self.pairs), 1)  # a mean over the edges
        hessian = (data.T @ (sparse.diags(scale) @ data) + rigidity * (rigid.T @ rigid)).toarray()  # (6N, 6N)
        gradient = data.T @ (scale * residual) + rigidity * (rigid.T @ stretch)  # (6N,)
        # damping: each block (turns, shifts) by its mean curvature, so directions the surface hardly constrains
        # (a patch turning about its normal, sliding along itself) stay put instead of taking long steps
        diagonal = np.diag(hessian).reshape(-1, 2, 3)  # (N, 2, 3)
        damped = damping * diagonal.mean(axis=(0, 2), keepdims=True) + 1e-12  # (1, 2, 1)
        hessian[np.diag_indices(count)] += np.broadcast_to(damped, diagonal.shape).ravel()
        factor = linalg.cho_factor(hessian, overwrite_a=True, check_finite=False)  # damped: positive definite
        step = -linalg.cho_solve(factor, gradient, check_finite=False).reshape(-1, 6)  # (N, 6): turn δ, shift τ
        return (_rodrigues(step[:, :3]) @ rotation, translation + step[:, 3:]), float(np.abs(step).max())

    def _predict(self) -> tuple[np.ndarray, np.ndarray]:
        """The next frame's start: each node's last motion repeated (constant velocity), M_next = M_k M_{k-1}⁻¹ M_k
        for the node's map M(x) = R (x - g) + g + t, so a steady turn or glide starts where it will be rather than
        one frame's motion behind, which nearest-point pairs could not always bridge."""
        (r_before, t_before), (r_now, t_now) = self._before, (self.rotation, self.translation)
        offset_before = self.nodes + t_before - np.einsum("nij,nj->ni", r_before, self.nodes)  # (N, 3)
        offset_now = self.nodes + t_now - np.einsum("nij,nj->ni", r_now, self.nodes)  # (N, 3)
        step = r_now @ r_before.transpose(0, 2, 1)  # (N, 3, 3) M_k M_{k-1}⁻¹ = (step, offset_now - step offset_before)
        rotation = step @ r_now
        offset = np.einsum("nij,nj->ni", step, offset_now) + offset_now - np.einsum("nij,nj->ni", step, offset_before)
        return rotation, offset - self.nodes + np.einsum("nij,nj->ni", rotation, self.nodes)

    def _rigidity_rows(self, rotation: np.ndarray, translation: np.ndarray) -> tuple[sparse.csr_matrix, np.ndarray]:
        """The as-rigid-as-possible residuals of the node edges (a, b), e = R_a (g_b - g_a) + g_a + t_a - g_b - t_b
        (3E,), and their Jacobian (3E, 6N) in the nodes' turns and shifts: de = δ_a × h + τ_a - τ_b, h = R_a (g_b -
        g_a)."""
        a, b = self.pairs[:, 0], self.pairs[:, 1]
        arm = np.einsum("eij,ej->ei", rotation[a], self.nodes[b] - self.nodes[a])  # (E, 3)
        stretch = arm + self.nodes[a] + translation[a] - self.nodes[b] - translation[b]  # (E, 3)
        eye = np.broadcast_to(np.eye(3), (len(a), 3, 3))
        values = np.concatenate([-_skew(arm), eye, -eye], axis=2)  # (E, 3, 9): row i of d e / d (δ_a, τ_a, τ_b)
        columns = np.concatenate([6 * a[:, None] + np.arange(6), 6 * b[:, None] + 3 + np.arange(3)], 1)  # (E, 9)
        columns = np.broadcast_to(columns[:, None], values.shape)
        rows = np.repeat(np.arange(3 * len(a)), 9)
        shape = (3 * len(a), 6 * len(self.nodes))
        return sparse.csr_matrix((values.ravel(), (rows, columns.ravel())), shape=shape), stretch.ravel()

    def undo(self) -> None:
        """Forget the last fit (it failed), so nothing leaks into a later use."""
        (self.rotation, self.translation), self._before = self._previous, self._previous


def _skew(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) cross-product matrices: _skew(a) @ b = a × b."""
    zero = np.zeros_like(v[..., 0])
    rows = [zero, -v[..., 2], v[..., 1], v[..., 2], zero, -v[..., 0], -v[..., 1], v[..., 0], zero]
    return np.stack(rows, -1).reshape(*v.shape[:-1], 3, 3)


def _rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """(N, 3) axis-angle -> (N, 3, 3) rotation matrices (the identity at zero)."""
    theta = np.linalg.norm(axis_angle, axis=1)[:, None, None]  # (N, 1, 1)
    skew = _skew(axis_angle) / np.maximum(theta, 1e-12)
    return np.eye(3) + np.sin(theta) * skew + (1.0 - np.cos(theta)) * skew @ skew


def _farthest_points(points: np.ndarray, count: int) -> np.ndarray:
    """Indices (count,) of farthest-point samples of points (P, 3), starting from the first point."""
    chosen = np.zeros(count, np.int64)
    distance = np.full(len(points), np.inf)
    for i in range(1, count):
        distance = np.minimum(distance, np.square(points - points[chosen[i - 1]]).sum(1))
        chosen[i] = int(distance.argmax())
    return chosen


def _surface_points(mesh: trimesh.Trimesh, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, 3) points drawn on the mesh's surface and (count, 3) the unit normals of the faces they lie on."""
    points, faces = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points, dtype=np.float64), np.asarray(mesh.face_normals, dtype=np.float64)[faces]


def _with_vertices(mesh: trimesh.Trimesh, vertices: np.ndarray) -> trimesh.Trimesh:
    return trimesh.Trimesh(vertices, np.asarray(mesh.faces), process=False)


def mesh_chamfer(a: trimesh.Trimesh, b: trimesh.Trimesh) -> float:
    """Chamfer distance between two meshes: the mean distance of a's vertices to b's surface plus that of b's
    vertices to a's surface. Point-to-surface distances have no sampling floor, so the 1/R test stays sharp."""
    to_b = np.linalg.norm(SurfaceQuery(b).closest(a.vertices)[0] - a.vertices, axis=1).mean()
    to_a = np.linalg.norm(SurfaceQuery(a).closest(b.vertices)[0] - b.vertices, axis=1).mean()
    return float(to_b + to_a)
