"""Tracked vertices: inside a topology segment, one vertex set (the segment's first mesh) moves through every frame.

Each next frame's surface is fitted by an embedded deformation (Sumner et al. 2007): `nodes` graph nodes sampled
on the template (farthest points), each with a rotation (axis-angle) and a translation; a vertex follows its
`neighbours` nearest nodes, blended by the usual (1 - d / d_max)² weights. The fit minimises, with Adam in torch
(vectorised over all vertices and nodes),

    E = chamfer²(deformed vertices, target samples) + rigidity · Σ_edges |R_a (g_b - g_a) + g_a + t_a - (g_b + t_b)|²

where the second term is as-rigid-as-possible between neighbouring nodes, so the surface moves as a whole instead
of each vertex snapping to the nearest target point; the data term reads at most `samples` of the template's
vertices (all of them move), so a large mesh costs no more to fit than a small one. Frame k starts from frame k-1's
solution, so a segment is tracked in order. The graph moves the surface as a whole but cannot follow a generated
frame's own bumps, a voxel high, that change from frame to frame; `refine` steps then pull every vertex onto the
frame's surface (its closest point), the pull smoothed over the template's edges (`smoothing` rounds of neighbour
averaging), so the detail follows while the triangles keep their shape, and at most `max_cd` long, so only detail
is pulled: a shape the graph could not reach is not faked by collapsing the template onto it. These displacements
are per frame and do not carry to the next frame's start. Where the tracked mesh ends up farther than `max_cd`
(`mesh_chamfer`: the mean vertex-to-surface distances both ways, summed) from the frame's own mesh, tracking has
failed: the segment is cut there and the frame's own mesh starts a new one (the per-frame fallback). The fit has
no per-vertex gathers (the blend is a matrix product): their gradients were summed in a thread-dependent order, and
the same clip came out as different segments from one run to the next on two threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import trimesh
from scipy import sparse
from scipy.spatial import cKDTree

from helix4d.errors import InputError
from helix4d.export.sampling import SurfaceQuery
from helix4d.export.segments import Segment


@dataclass(frozen=True)
class TrackingConfig:
    """nodes / neighbours: the deformation graph's size and each vertex's (and node's) neighbour count;
    iterations, learning_rate: Adam steps per frame; samples: points drawn on each target surface;
    rigidity: weight of the as-rigid-as-possible term; refine / smoothing: closest-point steps per frame after the
    graph fit and the neighbour-averaging rounds of each step's pull (module docstring); max_cd: the largest
    Chamfer distance (unit-cube units) between tracked and per-frame mesh that still counts as tracked (1/R: one
    voxel at R = 32)."""

    nodes: int = 96
    neighbours: int = 4
    iterations: int = 40
    learning_rate: float = 0.01
    samples: int = 2000
    rigidity: float = 1.0
    refine: int = 2
    smoothing: int = 3
    max_cd: float = 1.0 / 32
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.nodes, self.neighbours, self.iterations, self.samples) < 1 or self.max_cd <= 0.0:
            raise InputError("tracking needs nodes, neighbours, iterations, samples >= 1 and max_cd > 0")
        if min(self.refine, self.smoothing) < 0:
            raise InputError("tracking needs refine, smoothing >= 0")


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
    graph = _DeformationGraph(vertices, config)
    smooth = _neighbour_mean(template)
    for target in meshes[1:]:
        if len(target.faces) == 0:
            break
        points = _surface_points(target, config.samples, config.seed)
        moved = graph.fit(points, config)  # (V, 3)
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

    def __init__(self, vertices: np.ndarray, config: TrackingConfig) -> None:
        nodes = vertices[_farthest_points(vertices, min(config.nodes, len(vertices)))]  # (N, 3)
        k = min(config.neighbours, len(nodes))
        dist, idx = cKDTree(nodes).query(vertices, k=min(k + 1, len(nodes)))  # (V, k+1)
        dist, idx = np.asarray(dist).reshape(len(vertices), -1), np.asarray(idx).reshape(len(vertices), -1)
        d_max = dist[:, -1:] + 1e-9
        weight = (1.0 - dist[:, :k] / d_max) ** 2 if idx.shape[1] > k else np.ones((len(vertices), k))
        weight /= np.maximum(weight.sum(axis=1, keepdims=True), 1e-12)
        _, edges = cKDTree(nodes).query(nodes, k=min(k + 1, len(nodes)))
        edges = np.asarray(edges).reshape(len(nodes), -1)
        pairs = np.stack([np.repeat(np.arange(len(nodes)), edges.shape[1] - 1), edges[:, 1:].reshape(-1)], 1)
        blend = np.zeros((len(vertices), len(nodes)))  # (V, N): vertex v's weight of node n (k nonzeros a row)
        np.put_along_axis(blend, idx[:, :k], weight, axis=1)
        self.vertices = torch.from_numpy(vertices).float()  # (V, 3)
        self.nodes = torch.from_numpy(nodes).float()  # (N, 3)
        self.blend = torch.from_numpy(blend).float()  # (V, N)
        self.pairs = torch.from_numpy(pairs).long()  # (P, 2) node graph edges
        rng = np.random.default_rng(config.seed)
        probe = np.sort(rng.permutation(len(vertices))[: config.samples])  # the vertices the data term reads
        self.probe = torch.from_numpy(probe).long()  # (P,)
        self.rotation = torch.zeros(len(nodes), 3)  # (N, 3) axis-angle
        self.translation = torch.zeros(len(nodes), 3)  # (N, 3)
        self._previous = (self.rotation.clone(), self.translation.clone())

    def deform(
        self, rotation: torch.Tensor, translation: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(V, 3) deformed vertices (or those of `rows` only) for node parameters (N, 3), (N, 3).

        Σ_n w_vn (R_n (v - g_n) + g_n + t_n) is written as blend-matrix products, (Σ_n w_vn R_n) v + Σ_n w_vn (g_n +
        t_n - R_n g_n): the same sum without per-vertex gathers, whose gradients (index accumulation) cost most of
        the fit's time."""
        blend, vertices = (self.blend, self.vertices) if rows is None else (self.blend[rows], self.vertices[rows])
        r = _rodrigues(rotation)  # (N, 3, 3)
        offset = self.nodes + translation - torch.einsum("nij,nj->ni", r, self.nodes)  # (N, 3)
        mixed = (blend @ r.reshape(-1, 9)).view(-1, 3, 3)  # (V, 3, 3)
        return torch.einsum("vij,vj->vi", mixed, vertices) + blend @ offset

    def fit(self, points: np.ndarray, config: TrackingConfig) -> np.ndarray:
        """Fit the graph to target `points` (M, 3), starting from the current parameters; returns (V, 3)."""
        self._previous = (self.rotation.clone(), self.translation.clone())
        target = torch.from_numpy(points).float()  # (M, 3)
        target_tree = cKDTree(points)
        rotation = self.rotation.clone().requires_grad_(True)
        translation = self.translation.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([rotation, translation], lr=config.learning_rate)
        a, b = self.pairs[:, 0], self.pairs[:, 1]
        for _ in range(config.iterations):
            optimiser.zero_grad()
            moved = self.deform(rotation, translation, self.probe)  # (P, 3)
            # chamfer²: each side's squared distance to its nearest point on the other. The nearest points are
            # found without gradients (exact, by k-d trees); the gradient of a min is that of the pair it picks.
            fixed = moved.detach().double().numpy()
            to_target = torch.from_numpy(target_tree.query(fixed)[1])  # (P,)
            to_moved = torch.from_numpy(cKDTree(fixed).query(points)[1])  # (M,)
            ahead = (moved - target[to_target]).square().sum(1).mean()
            data = ahead + (moved[to_moved] - target).square().sum(1).mean()
            r = _rodrigues(rotation)
            predicted = torch.einsum("pij,pj->pi", r[a], self.nodes[b] - self.nodes[a]) + self.nodes[a] + translation[a]
            rigid = (predicted - self.nodes[b] - translation[b]).square().sum(1).mean()
            (data + config.rigidity * rigid).backward()
            optimiser.step()
        self.rotation, self.translation = rotation.detach(), translation.detach()
        with torch.no_grad():
            return self.deform(self.rotation, self.translation).double().numpy()

    def undo(self) -> None:
        """Forget the last fit (it failed), so nothing leaks into a later use."""
        self.rotation, self.translation = self._previous


def _rodrigues(axis_angle: torch.Tensor) -> torch.Tensor:
    """(N, 3) axis-angle -> (N, 3, 3) rotation matrices, smooth at zero."""
    theta = torch.sqrt(axis_angle.square().sum(-1, keepdim=True) + 1e-12)  # (N, 1)
    k = axis_angle / theta
    zero = torch.zeros_like(k[:, 0])
    skew = torch.stack([zero, -k[:, 2], k[:, 1], k[:, 2], zero, -k[:, 0], -k[:, 1], k[:, 0], zero], 1).view(-1, 3, 3)
    eye = torch.eye(3).expand_as(skew)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    return eye + s * skew + (1.0 - c) * skew @ skew


def _farthest_points(points: np.ndarray, count: int) -> np.ndarray:
    """Indices (count,) of farthest-point samples of points (P, 3), starting from the first point."""
    chosen = np.zeros(count, np.int64)
    distance = np.full(len(points), np.inf)
    for i in range(1, count):
        distance = np.minimum(distance, np.square(points - points[chosen[i - 1]]).sum(1))
        chosen[i] = int(distance.argmax())
    return chosen


def _surface_points(mesh: trimesh.Trimesh, count: int, seed: int) -> np.ndarray:
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points, dtype=np.float64)


def _with_vertices(mesh: trimesh.Trimesh, vertices: np.ndarray) -> trimesh.Trimesh:
    return trimesh.Trimesh(vertices, np.asarray(mesh.faces), process=False)


def mesh_chamfer(a: trimesh.Trimesh, b: trimesh.Trimesh) -> float:
    """Chamfer distance between two meshes: the mean distance of a's vertices to b's surface plus that of b's
    vertices to a's surface. Point-to-surface distances have no sampling floor, so the 1/R test stays sharp."""
    to_b = np.linalg.norm(SurfaceQuery(b).closest(a.vertices)[0] - a.vertices, axis=1).mean()
    to_a = np.linalg.norm(SurfaceQuery(a).closest(b.vertices)[0] - b.vertices, axis=1).mean()
    return float(to_b + to_a)
