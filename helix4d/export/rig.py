"""Rigs: a skeleton with skin weights fitted to each tracked segment, so the segment plays as skeletal animation.

A tracked segment (`tracking.py`) is one vertex set moving through K frames, positions (K, V, 3). Linear blend
skinning writes frame k as  p_kv = Σ_b w_vb (R_kb u_v + t_kb):  the rest vertices u (the segment's first frame),
at most `influences` convex weights a vertex, and one rigid transform (R_kb, t_kb) per bone and frame. Finding
bones, weights and transforms together is Smooth Skinning Decomposition with Rigid Bones (Le & Deng 2012), which
EA's Dem Bones solves (`py-dem-bones`) by alternating transforms and weights from an initial clustering.

The clustering is done here, not by Dem Bones: its own (split clusters, reassign) often cuts a rigid part in two
and leaves two parts in one bone, so the rig then needs more bones than the object has parts. `RigidClusters`
splits one cluster at a time where the current bones explain the motion worst (the worst vertex and its
rest-pose neighbours), then alternates fitting each cluster's rigid motion (Kabsch, per frame) and moving each
vertex to the cluster whose motion explains its trajectory best. On a rigid or articulated object the clusters
are its parts. Dem Bones starts from those labels (one-hot weights) and adds the blended weights that soft
regions need.

How many bones: the budget is in voxels of the asset's O-Voxel grid (resolution R): mean vertex error <= 1/(2R)
and max <= 1/R over the segment's frames and vertices, against the tracked mesh. Bone counts 1, 2, 4, ...
`max_bones` are tried until one fits; the counts between the last that missed and the first that fit are then
bisected, so the rig has the fewest bones that fit (a rigid part: one bone). A segment that no count fits is
written as morph targets instead (`RigReport.fell_back`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from helix4d.errors import InputError
from helix4d.export.tracking import TrackedSegment

MIN_CLUSTER = 3  # vertices a bone needs for its rigid fit (Kabsch needs three points off a line)


@dataclass(frozen=True)
class RigConfig:
    """resolution: the asset's O-Voxel grid R. A rig fits when its mean vertex error is at most mean_voxels / R
    and its largest at most max_voxels / R (unit-cube units). max_bones: the most bones a segment may get;
    influences: bones a vertex may follow (glTF's JOINTS_0 holds 4); iterations: Dem Bones' global iterations
    (transforms, then weights); cluster_iterations: fit / reassign rounds after each split of the clustering."""

    resolution: int = 32
    mean_voxels: float = 0.5
    max_voxels: float = 1.0
    max_bones: int = 32
    influences: int = 4
    iterations: int = 10
    cluster_iterations: int = 8

    def __post_init__(self) -> None:
        if (
            min(self.resolution, self.max_bones, self.influences) < 1
            or min(self.iterations, self.cluster_iterations) < 0
        ):
            raise InputError("a rig needs resolution, max_bones, influences >= 1 and iterations >= 0")
        if not (self.mean_voxels > 0 and self.max_voxels > 0):
            raise InputError(f"the rig's budget must be > 0, got {self.mean_voxels}, {self.max_voxels} voxels")

    @property
    def mean_budget(self) -> float:
        return self.mean_voxels / self.resolution

    @property
    def max_budget(self) -> float:
        return self.max_voxels / self.resolution


@dataclass
class Rig:
    """Linear blend skinning of one segment. rest (V, 3): the vertices the weights bind (the segment's first
    frame); joints (V, I) int64 bone indices and weights (V, I) float64 (rows sum to 1, unused slots weigh 0);
    transforms (K, B, 4, 4): bone b's rigid motion from the rest pose to frame k (column vectors); mean_error /
    max_error: vertex distances (unit-cube units) of the skinned frames to the tracked ones."""

    rest: np.ndarray
    joints: np.ndarray
    weights: np.ndarray
    transforms: np.ndarray
    mean_error: float = 0.0
    max_error: float = 0.0

    @property
    def bones(self) -> int:
        return self.transforms.shape[1]

    def fits(self, config: RigConfig) -> bool:
        return self.mean_error <= config.mean_budget and self.max_error <= config.max_budget

    def deformed(self) -> np.ndarray:
        """(K, V, 3) the skinned vertices in every frame."""
        return skin(self.rest, self.joints, self.weights, self.transforms)


@dataclass
class RigReport:
    """What `result.json` says of one segment's rig: frames [start, stop), its bones and its vertex errors against
    the tracked mesh (unit-cube units, and in voxels of the grid): the rig written, or where none fits the budget
    the best one tried; whether the segment is written as morph targets instead (`fell_back`; an empty frame has 0
    bones and falls back)."""

    start: int
    stop: int
    bones: int
    mean_error: float
    max_error: float
    mean_voxels: float
    max_voxels: float
    fell_back: bool


def skin(rest: np.ndarray, joints: np.ndarray, weights: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """(K, V, 3) linear blend skinning of rest (V, 3) by joints / weights (V, I) and transforms (K, B, 4, 4)."""
    out = np.zeros((len(transforms), len(rest), 3))
    for slot in range(joints.shape[1]):
        moved = transforms[:, joints[:, slot]]  # (K, V, 4, 4)
        placed = np.einsum("kvij,vj->kvi", moved[..., :3, :3], rest) + moved[..., :3, 3]  # (K, V, 3)
        out += weights[None, :, slot, None] * placed
    return out


def rig_segments(tracked: Sequence[TrackedSegment], config: RigConfig = RigConfig()) -> list[Rig | None]:
    """The fitted rig of each tracked segment (None for an empty frame: nothing to skin); a rig that misses the
    budget (`Rig.fits`) is kept, so its errors can be reported, and the writers show that segment by morph
    targets."""
    return [
        fit_rig(t.positions, np.asarray(t.template.faces), config) if len(t.template.faces) else None for t in tracked
    ]


def rig_report(segment: TrackedSegment, rig: Rig | None, config: RigConfig) -> RigReport:
    """The `RigReport` of one segment and its rig."""
    if rig is None:
        return RigReport(segment.start, segment.stop, 0, 0.0, 0.0, 0.0, 0.0, True)
    voxels = config.resolution
    mean, most = rig.mean_error, rig.max_error
    return RigReport(
        segment.start, segment.stop, rig.bones, mean, most, mean * voxels, most * voxels, not rig.fits(config)
    )


def fit_rig(positions: np.ndarray, faces: np.ndarray, config: RigConfig = RigConfig()) -> Rig:
    """The rig with the fewest bones that fits the budget (module docstring) for vertices (K, V, 3) moving on
    faces (F, 3); where none of up to `config.max_bones` bones fits, the best one tried (it misses the budget:
    check `Rig.fits`)."""
    positions = np.asarray(positions, np.float64)
    if positions.ndim != 3 or positions.shape[2] != 3 or positions.shape[1] == 0:
        raise InputError(f"fit_rig needs positions of shape (K, V, 3), got {positions.shape}")
    rest = positions[0]
    if len(positions) == 1 or len(rest) < MIN_CLUSTER or np.ptp(rest, axis=0).max() == 0.0:
        return _still_rig(positions)
    clusters = RigidClusters(rest, positions, config.cluster_iterations)
    tried: dict[int, Rig] = {}

    def attempt(count: int) -> Rig:
        labels = clusters.labels(count)
        bones = int(labels.max()) + 1
        if bones not in tried:
            tried[bones] = _dem_bones(positions, faces, labels, config)
        return tried[bones]

    count, missed = 1, 0
    while not attempt(count).fits(config):
        missed = count
        if count >= config.max_bones or clusters.saturated(count):
            return min(tried.values(), key=lambda r: (r.mean_error / config.mean_budget, r.max_error))
        count = min(2 * count, config.max_bones)
    while count - missed > 1:  # the fewest bones that fit: bisect between a count that missed and one that fit
        middle = (count + missed) // 2
        if attempt(middle).fits(config):
            count = middle
        else:
            missed = middle
    return attempt(count)


def _still_rig(positions: np.ndarray) -> Rig:
    """One bone at rest: a single frame, or too few vertices to skin."""
    rest = positions[0]
    rig = Rig(
        rest,
        np.zeros((len(rest), 1), np.int64),
        np.ones((len(rest), 1)),
        np.broadcast_to(np.eye(4), (len(positions), 1, 4, 4)).copy(),
    )
    return _measured(rig, positions)


def _measured(rig: Rig, positions: np.ndarray) -> Rig:
    """`rig` with its mean / max vertex error against `positions` (K, V, 3)."""
    error = np.linalg.norm(rig.deformed() - positions, axis=2)  # (K, V)
    rig.mean_error, rig.max_error = float(error.mean()), float(error.max())
    return rig


def _dem_bones(positions: np.ndarray, faces: np.ndarray, labels: np.ndarray, config: RigConfig) -> Rig:
    """Dem Bones' alternation of transforms and weights for positions (K, V, 3), started from the clusters `labels`
    (V,) as one-hot weights; the rig's errors measured."""
    from py_dem_bones import DemBones

    frames, count = positions.shape[:2]
    bones = int(labels.max()) + 1
    solver = DemBones()
    solver.nV, solver.nF, solver.nS, solver.nB = count, frames, 1, bones
    solver.nnz = min(config.influences, bones)
    solver.nIters = config.iterations
    solver.fStart = np.array([0, frames], np.int32)
    solver.subjectID = np.zeros(frames, np.int32)
    solver.u = np.ascontiguousarray(positions[0].T)  # (3, V)
    solver.v = np.ascontiguousarray(positions.transpose(0, 2, 1).reshape(3 * frames, count))  # (3K, V)
    solver.fv = np.asarray(faces, np.int64).tolist()
    one_hot = np.zeros((bones, count))
    one_hot[labels, np.arange(count)] = 1.0
    solver.set_weights(one_hot)  # with weights and no transforms, Dem Bones starts by fitting the transforms
    solver.compute()
    weights = np.asarray(solver.get_weights(), np.float64).T  # (V, B)
    blocks = np.asarray(solver.m, np.float64)  # (4K, 4B): block (k, b) is bone b's motion to frame k
    transforms = blocks.reshape(frames, 4, bones, 4).transpose(0, 2, 1, 3)  # (K, B, 4, 4)
    slots = min(config.influences, bones)
    joints = np.argsort(-weights, axis=1, kind="stable")[:, :slots]  # (V, I) the largest weights
    kept = np.take_along_axis(weights, joints, axis=1).clip(min=0.0)
    total = kept.sum(axis=1, keepdims=True)
    kept = np.where(total > 0, kept / np.maximum(total, 1e-12), np.eye(slots)[:1])  # a weightless vertex: 1 bone
    return _measured(Rig(positions[0], joints, kept, transforms), positions)


class RigidClusters:
    """Nested clusterings of a segment's vertices into rigidly moving groups, one more group per split
    (module docstring). `labels(count)` returns (V,) cluster indices with at most `count` clusters; splits run
    on demand and are kept, so asking for 8 after 4 costs four more splits."""

    def __init__(self, rest: np.ndarray, positions: np.ndarray, iterations: int) -> None:
        self.rest = rest  # (V, 3)
        self.positions = positions  # (K, V, 3)
        self.iterations = iterations
        self.tree = cKDTree(rest)
        self.found = [np.zeros(len(rest), np.int64)]  # found[c - 1]: the clustering into c groups
        self.stopped = False  # no split adds a group any more (all explained, or the new group was pruned)

    def labels(self, count: int) -> np.ndarray:
        while len(self.found) < count and not self.stopped:
            self._split()
        return self.found[min(count, len(self.found)) - 1]

    def saturated(self, count: int) -> bool:
        """Whether asking for more than `count` groups can give more than the clustering at `count`."""
        return self.stopped and len(self.found) <= count

    def _split(self) -> None:
        labels = self.found[-1].copy()
        groups = int(labels.max()) + 1
        error = rigid_errors(self.rest, self.positions, *rigid_motions(self.rest, self.positions, labels, groups))
        own = error[np.arange(len(labels)), labels]  # (V,) each vertex's error under its group's motion
        if own.max() <= 1e-14 * len(self.positions):
            self.stopped = True
            return
        seed = int(own.argmax())
        members = np.flatnonzero(labels == labels[seed])
        if len(members) < 2 * MIN_CLUSTER:
            self.stopped = True
            return
        size = max(MIN_CLUSTER, len(members) // 8)
        _, near = cKDTree(self.rest[members]).query(self.rest[seed], k=size)
        labels[members[np.atleast_1d(near)]] = groups
        groups += 1
        for _ in range(self.iterations):
            error = rigid_errors(self.rest, self.positions, *rigid_motions(self.rest, self.positions, labels, groups))
            labels = _compact(error.argmin(axis=1), error)
            groups = int(labels.max()) + 1
        if groups <= len(self.found):
            self.stopped = True
            return
        self.found.append(labels)


def _compact(labels: np.ndarray, error: np.ndarray) -> np.ndarray:
    """Labels (V,) with groups of fewer than MIN_CLUSTER vertices dissolved (their vertices go to their best
    remaining group) and the groups renumbered 0..G-1."""
    counts = np.bincount(labels, minlength=error.shape[1])
    keep = counts >= MIN_CLUSTER
    if not keep.all():
        labels = np.where(keep[labels], labels, np.where(keep, error, np.inf).argmin(axis=1))
    _, labels = np.unique(labels, return_inverse=True)
    return labels.astype(np.int64)


def rigid_motions(
    rest: np.ndarray, positions: np.ndarray, labels: np.ndarray, groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best rigid motion of each group of vertices in each frame (Kabsch): rotations (K, G, 3, 3) and
    translations (K, G, 3) taking rest (V, 3) closest to positions (K, V, 3) over the group's vertices."""
    one_hot = np.zeros((len(rest), groups))
    one_hot[np.arange(len(rest)), labels] = 1.0
    count = np.maximum(one_hot.sum(axis=0), 1.0)  # (G,)
    centre = one_hot.T @ rest / count[:, None]  # (G, 3)
    moved = one_hot.T @ positions / count[:, None]  # (K, G, 3)
    products = (positions[..., :, None] * rest[None, :, None, :]).reshape(len(positions), len(rest), 9)  # (K, V, 9)
    covariance = (one_hot.T @ products).reshape(len(positions), groups, 3, 3)  # (K, G, 3, 3)
    covariance -= count[None, :, None, None] * moved[..., :, None] * centre[None, :, None, :]
    u, _, vt = np.linalg.svd(covariance)  # (K, G, 3, 3)
    flip = np.sign(np.linalg.det(u @ vt))  # (K, G): no reflections
    u[..., :, 2] *= np.where(flip == 0, 1.0, flip)[..., None]
    rotation = u @ vt  # (K, G, 3, 3)
    translation = moved - np.einsum("kgij,gj->kgi", rotation, centre)  # (K, G, 3)
    return rotation, translation


def rigid_errors(rest: np.ndarray, positions: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """(V, G) Σ_k |R_kg u_v + t_kg - p_kv|²: how badly group g's motion explains vertex v's trajectory, expanded
    into matrix products so no (K, G, V, 3) array is formed."""
    frames, count = positions.shape[:2]
    groups = rotation.shape[1]
    along = positions.transpose(1, 0, 2)  # (V, K, 3)
    error = frames * np.square(rest).sum(1)[:, None] + np.square(along).sum((1, 2))[:, None]  # (V, 1)
    error = error + np.square(translation).sum((0, 2))[None, :]  # |t|², (V, G)
    error += 2.0 * rest @ np.einsum("kgji,kgj->ig", rotation, translation)  # 2 u · Σ_k R^T t
    products = (along[..., :, None] * rest[:, None, None, :]).reshape(count, frames * 9)  # (V, 9K): p_i u_j
    error -= 2.0 * products @ rotation.transpose(0, 2, 3, 1).reshape(frames * 9, groups)  # 2 Σ_k p · R u
    error -= 2.0 * along.reshape(count, frames * 3) @ translation.transpose(0, 2, 1).reshape(frames * 3, groups)
    return np.maximum(error, 0.0)
