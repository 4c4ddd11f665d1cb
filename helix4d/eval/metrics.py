"""Distances between a predicted and a ground-truth 4D sequence of surfaces, measured on sampled points.

Every measure works on point sequences (F, N, 3) sampled from per-frame meshes, so nothing assumes that two
frames (or the prediction and the ground truth) share a topology. Definitions (docs/design.md §8):

- Chamfer distance: mean *unsquared* nearest-neighbour distance from A to B plus the same from B to A.
- F-score at τ: harmonic mean of precision (share of predicted points within τ of the ground truth) and
  recall (share of ground-truth points within τ of the prediction).
- Normal consistency: mean |cos| between each point's normal and its nearest neighbour's, both directions
  averaged; unsigned because a generated mesh's winding (inside/outside) is not what is being judged.
- Space-time Chamfer: Chamfer distance of 4D points (x, y, z, frame_step · f), see `space_time_chamfer`.
- Temporal jitter: per-frame Chamfer distance between consecutive frames, prediction against ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from helix4d.errors import InputError

WORKERS = -1  # threads per KD-tree query (-1: all cores)


@dataclass
class PointSequence:
    """Surface samples of F frames: `points` (F, N, 3) float64 and unit `normals` (F, N, 3).

    Every frame holds the same number of points, so per-frame means weigh frames equally and arrays stack.
    """

    points: np.ndarray
    normals: np.ndarray

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float64)
        self.normals = np.asarray(self.normals, dtype=np.float64)
        if self.points.ndim != 3 or self.points.shape[-1] != 3 or self.points.shape != self.normals.shape:
            raise InputError(
                f"points and normals must both be (F, N, 3), got {self.points.shape} and {self.normals.shape}"
            )

    @property
    def frames(self) -> int:
        return self.points.shape[0]


# ------------------------------------------------------------------------------------------------ sampling


def sample_surface(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` points drawn uniformly by area on `mesh`, with their face normals: (count, 3) each.

    Deterministic for a given `seed`: the same mesh always gives the same points, so an unchanged frame of a
    sequence is sampled identically and a static sequence has exactly zero frame-to-frame distance.
    """
    if not isinstance(mesh, trimesh.Trimesh):
        raise InputError(f"expected a trimesh.Trimesh, got {type(mesh).__name__}; flatten scenes first")
    if count < 1:
        raise InputError(f"the number of surface samples must be >= 1, got {count}")
    if len(mesh.faces) == 0 or not mesh.area > 0:
        raise InputError("cannot sample a mesh with no faces of non-zero area (an empty frame?)")
    points, face_index = trimesh.sample.sample_surface(mesh, count, seed=seed)
    normals = np.asarray(mesh.face_normals, dtype=np.float64)[face_index]
    return np.asarray(points, dtype=np.float64), normals


def sample_sequence(meshes: Sequence[trimesh.Trimesh], count: int, seed: int = 0, seed_step: int = 0) -> PointSequence:
    """Sample `count` points on every frame's mesh; frame f uses seed `seed + f * seed_step`.

    `seed_step = 0` (our protocol) samples identical frames identically, which keeps a static sequence's
    jitter at exactly 0; the ActionBench reference script uses `seed_step = 1`.
    """
    if not meshes:
        raise InputError("a sequence needs at least one frame")
    samples = []
    for f, mesh in enumerate(meshes):
        try:
            samples.append(sample_surface(mesh, count, seed + f * seed_step))
        except InputError as exc:
            raise InputError(f"frame {f}: {exc}") from None
    return PointSequence(np.stack([p for p, _ in samples]), np.stack([n for _, n in samples]))


# ------------------------------------------------------------------------------------------------ matching


def frame_trees(points: np.ndarray) -> list[cKDTree]:
    """One KD-tree per frame of `points` (F, N, 3)."""
    return [cKDTree(frame) for frame in points]


def nearest_in_frames(trees: Sequence[cKDTree], queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest neighbour of every query point among the points of *its own* frame.

    queries (..., F, M, 3) with F = len(trees) (leading axes batch several queries per frame, e.g. ICP starts).
    Returns distances (..., F, M) and indices into that frame's points (..., F, M).
    """
    frames = len(trees)
    if queries.shape[-3] != frames:
        raise InputError(f"queries hold {queries.shape[-3]} frames, the trees {frames}")
    moved = np.moveaxis(queries, -3, 0)  # (F, ..., M, 3)
    dist = np.empty(moved.shape[:-1])
    index = np.empty(moved.shape[:-1], dtype=np.int64)
    for f, tree in enumerate(trees):
        dist[f], index[f] = tree.query(moved[f], workers=WORKERS)
    return np.moveaxis(dist, 0, -2), np.moveaxis(index, 0, -2)


@dataclass
class FrameMatches:
    """Nearest neighbours between a predicted (F, N, 3) and a ground-truth (F, M, 3) point sequence, searched
    frame by frame: `pred_to_gt` (F, N) distances with `pred_to_gt_index` (F, N), and the reverse (F, M)."""

    pred_to_gt: np.ndarray
    pred_to_gt_index: np.ndarray
    gt_to_pred: np.ndarray
    gt_to_pred_index: np.ndarray

    def chamfer(self) -> np.ndarray:
        """(F,) Chamfer distance of each frame (mean NN distance each way, the two summed)."""
        return self.pred_to_gt.mean(axis=1) + self.gt_to_pred.mean(axis=1)

    def f_score(self, tau: float) -> np.ndarray:
        """(F,) F-score at distance threshold `tau` per frame (1 when both precision and recall are 1)."""
        precision = (self.pred_to_gt < tau).mean(axis=1)
        recall = (self.gt_to_pred < tau).mean(axis=1)
        total = precision + recall
        return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1.0), 0.0)

    def normal_consistency(self, pred_normals: np.ndarray, gt_normals: np.ndarray) -> np.ndarray:
        """(F,) mean |cos| between matched normals, both directions averaged; pred (F, N, 3), gt (F, M, 3)."""
        gt_at_pred = np.take_along_axis(gt_normals, self.pred_to_gt_index[..., None], axis=1)  # (F, N, 3)
        pred_at_gt = np.take_along_axis(pred_normals, self.gt_to_pred_index[..., None], axis=1)  # (F, M, 3)
        forward = np.abs((pred_normals * gt_at_pred).sum(-1)).mean(axis=1)
        backward = np.abs((gt_normals * pred_at_gt).sum(-1)).mean(axis=1)
        return 0.5 * (forward + backward)


def match_frames(pred: np.ndarray, gt: np.ndarray) -> FrameMatches:
    """Per-frame nearest neighbours both ways between pred (F, N, 3) and gt (F, M, 3)."""
    if pred.shape[0] != gt.shape[0]:
        raise InputError(
            f"the prediction has {pred.shape[0]} frames and the ground truth {gt.shape[0]}; "
            "frames are compared one to one"
        )
    d_pg, i_pg = nearest_in_frames(frame_trees(gt), pred)
    d_gp, i_gp = nearest_in_frames(frame_trees(pred), gt)
    return FrameMatches(d_pg, i_pg, d_gp, i_gp)


def chamfer_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Chamfer distance between two point clouds a (N, 3) and b (M, 3)."""
    return float(match_frames(np.asarray(a, np.float64)[None], np.asarray(b, np.float64)[None]).chamfer()[0])


# ------------------------------------------------------------------------------------------------ time


def space_time_chamfer(pred: np.ndarray, gt: np.ndarray, frame_step: float) -> float:
    """Chamfer distance between the space-time points (x, y, z, frame_step · f) of pred (F, N, 3), gt (F, M, 3).

    Each point may match any frame, but a match k frames away costs at least k · frame_step. So content shown
    at the wrong time is charged (up to k · frame_step), and a wrong shape shown at the right time is charged
    its spatial distance. With frame_step → ∞ this is the per-frame Chamfer mean; with frame_step = 0 it is the
    Chamfer distance of all frames pooled, which ignores frame order entirely.
    """
    if pred.shape[0] != gt.shape[0]:
        raise InputError(f"the prediction has {pred.shape[0]} frames and the ground truth {gt.shape[0]}")
    if frame_step < 0:
        raise InputError(f"frame_step must be >= 0, got {frame_step}")
    a, b = _with_time(pred, frame_step), _with_time(gt, frame_step)  # (F*N, 4), (F*M, 4)
    d_ab, _ = cKDTree(b).query(a, workers=WORKERS)
    d_ba, _ = cKDTree(a).query(b, workers=WORKERS)
    return float(d_ab.mean() + d_ba.mean())


def _with_time(points: np.ndarray, frame_step: float) -> np.ndarray:
    frames, count = points.shape[:2]
    time = np.repeat(np.arange(frames, dtype=np.float64) * frame_step, count)[:, None]
    return np.concatenate([points.reshape(-1, 3), time], axis=1)


def consecutive_chamfer(points: np.ndarray) -> np.ndarray:
    """(F-1,) Chamfer distance between frames f and f+1 of one sequence (F, N, 3): how much it moves."""
    if points.shape[0] < 2:
        return np.zeros(0)
    return match_frames(points[:-1], points[1:]).chamfer()


def temporal_jitter(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Frame-to-frame motion of the prediction against that of the ground truth, both (F, ·, 3).

    Returns (mean |m_pred − m_gt|, mean m_pred / mean m_gt) with m = `consecutive_chamfer`: the first is 0 when
    the prediction moves as much as the ground truth at every step, the second above 1 means the prediction
    flickers more than the object really moves. NaN where undefined (one frame; a static ground truth's ratio).
    """
    m_pred, m_gt = consecutive_chamfer(pred), consecutive_chamfer(gt)
    if m_pred.size == 0:
        return float("nan"), float("nan")
    gt_motion = m_gt.mean()
    ratio = m_pred.mean() / gt_motion if gt_motion > 0 else float("nan")
    return float(np.abs(m_pred - m_gt).mean()), float(ratio)


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CIE76 colour difference of (n, 3) sRGB-encoded colours in [0, 1]: Euclidean distance in CIELAB. Why: an
    error of 0.1 per channel can be a slightly darker red or a red turned orange; ΔE weighs hue as the eye does
    (about 2 is just noticeable, above 10 another colour)."""
    from skimage.color import rgb2lab

    lab_a = rgb2lab(np.clip(np.asarray(a, np.float64), 0, 1)[None])[0]  # (n, 3)
    lab_b = rgb2lab(np.clip(np.asarray(b, np.float64), 0, 1)[None])[0]
    return np.linalg.norm(lab_a - lab_b, axis=-1)  # (n,)
