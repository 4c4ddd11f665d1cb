"""Bring a predicted 4D sequence into the ground truth's pose and scale before distances are measured.

A generator picks its own object frame (any rotation, offset and size), so a raw Chamfer distance would mostly
measure that choice. Two ways to remove it (docs/design.md §8):

- ours (`normalisation` + `fit_sequence_alignment`): each sequence is first normalised by statistics of all
  its frames that do not depend on its orientation (centre = mean point, scale = RMS radius), then ONE rigid
  map (+ optional uniform scale) is fitted on all frames at once by ICP whose nearest neighbours are searched
  frame by frame while the Procrustes (Umeyama) solve pools every frame's pairs. Many starting rotations are
  tried and the best kept. A shape that is symmetric in frame 0 (a sphere) cannot fool it: later frames pin
  the rotation down, and one map for the whole sequence cannot hide drift.
- actionbench (`fit_frame_gradient_icp`): the reference script's gradient ICP (Adam over a 6D rotation,
  translation and per-axis scale, 24 axis-aligned starts, squared-Chamfer loss), fitted on one frame.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from helix4d.errors import InputError
from helix4d.eval.metrics import WORKERS, frame_trees, nearest_in_frames

# Our normalised frame: RMS radius 0.5, so an object that fills the project's unit cube keeps about its size
# (a sphere inscribed in the cube has RMS radius 0.5) and distances, F-score thresholds and the frame step read
# like unit-cube units.
NORMALISED_RMS_RADIUS = 0.5


@dataclass(frozen=True)
class AffineMap:
    """x -> matrix @ x + offset on points stored as rows (..., 3). Covers rigid, similarity and per-axis scale."""

    matrix: np.ndarray  # (3, 3)
    offset: np.ndarray  # (3,)

    @classmethod
    def identity(cls) -> AffineMap:
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def similarity(cls, rotation: np.ndarray, scale: float, translation: np.ndarray) -> AffineMap:
        """x -> scale * rotation @ x + translation."""
        return cls(scale * np.asarray(rotation, np.float64), np.asarray(translation, np.float64))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return points @ self.matrix.T + self.offset

    def normals(self, normals: np.ndarray) -> np.ndarray:
        """Map unit normals (..., 3): by the inverse transpose, renormalised (right for per-axis scale too)."""
        mapped = normals @ np.linalg.inv(self.matrix)
        return mapped / np.maximum(np.linalg.norm(mapped, axis=-1, keepdims=True), 1e-12)

    def __matmul__(self, other: AffineMap) -> AffineMap:
        """Composition: (self @ other)(x) = self(other(x))."""
        return AffineMap(self.matrix @ other.matrix, self.matrix @ other.offset + self.offset)

    def inverse(self) -> AffineMap:
        inv = np.linalg.inv(self.matrix)
        return AffineMap(inv, -inv @ self.offset)


def normalisation(points: np.ndarray) -> AffineMap:
    """The map that centres a whole sequence's points (F, N, 3) on their mean and scales their RMS radius to
    `NORMALISED_RMS_RADIUS`. Both statistics are rotation invariant, so the frame a generator picked cannot
    change them; pooling all frames keeps one scale for the whole sequence, so growth and motion survive."""
    flat = points.reshape(-1, 3)
    centre = flat.mean(axis=0)
    rms = float(np.sqrt(((flat - centre) ** 2).sum(axis=1).mean()))
    if not rms > 1e-12:
        raise InputError("the sequence collapses to a single point; cannot normalise its size")
    scale = NORMALISED_RMS_RADIUS / rms
    return AffineMap(scale * np.eye(3), -scale * centre)


# ------------------------------------------------------------------------------------------------ rotations


def axis_rotations() -> np.ndarray:
    """(24, 3, 3) the rotations that map coordinate axes onto coordinate axes (the cube's rotation group)."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            m[np.arange(3), perm] = signs
            if np.linalg.det(m) > 0:
                out.append(m)
    return np.stack(out)


def actionbench_rotations() -> np.ndarray:
    """(24, 3, 3) the ActionBench script's starting rotations, built as it builds them: Euler angles (azimuth,
    elevation, roll) composed as Rx(az) Ry(el) Rz(roll). Its list repeats two rotations and so misses two of the
    24 axis-aligned ones; it is kept exactly so that numbers compare with published ones."""
    azim = np.radians([0] * 4 + [90] * 4 + [180] * 4 + [270] * 4 + [0] * 4 + [90] * 4)
    elev = np.radians([0] * 16 + [90] * 2 + [-90] * 2 + [90] * 2 + [-90] * 2)
    roll = np.radians([0, 90, 180, 270] * 4 + [0, 90] * 4)

    def axis(a: np.ndarray, i: int, j: int) -> np.ndarray:  # rotation by angles a in the (i, j) plane
        m = np.tile(np.eye(3), (len(a), 1, 1))
        m[:, i, i], m[:, i, j], m[:, j, i], m[:, j, j] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a)
        return m

    return np.rint(axis(azim, 1, 2) @ axis(elev, 2, 0) @ axis(roll, 0, 1))


def random_rotations(count: int, seed: int) -> np.ndarray:
    """(count, 3, 3) rotations drawn uniformly (normalised Gaussian quaternions)."""
    q = np.random.default_rng(seed).normal(size=(count, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def _principal_axes(points: np.ndarray) -> np.ndarray:
    """(3, 3) right-handed eigenvectors (columns, largest variance first) of the pooled points' covariance."""
    flat = points.reshape(-1, 3)
    _, vectors = np.linalg.eigh(np.cov(flat.T))
    vectors = vectors[:, ::-1]
    if np.linalg.det(vectors) < 0:
        vectors[:, 2] *= -1
    return vectors


def initial_rotations(pred: np.ndarray, gt: np.ndarray, random_starts: int, seed: int) -> np.ndarray:
    """(S, 3, 3) ICP starting rotations for pred (F, N, 3) onto gt (F, M, 3): the 24 axis-aligned rotations
    (generators often work in axis-aligned frames), the 24 that map pred's principal axes onto gt's with every
    sign/order ambiguity (exact for a rotated copy with distinct variances), and `random_starts` random ones."""
    axes = axis_rotations()
    pca = _principal_axes(gt) @ axes @ _principal_axes(pred).T
    return np.concatenate([axes, pca, random_rotations(random_starts, seed)])


# ------------------------------------------------------------------------------------------------ our ICP


def fit_similarity(src: np.ndarray, dst: np.ndarray, with_scale: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares x -> s R x + t from src to dst (Umeyama 1991), batched: src, dst (S, K, 3).

    Returns R (S, 3, 3) proper rotations, s (S,) (ones unless `with_scale`), t (S, 3).
    """
    mu_src, mu_dst = src.mean(axis=1, keepdims=True), dst.mean(axis=1, keepdims=True)  # (S, 1, 3)
    x, y = src - mu_src, dst - mu_dst
    cov = np.einsum("ski,skj->sij", y, x) / src.shape[1]  # (S, 3, 3)
    u, d, vt = np.linalg.svd(cov)
    fix = np.ones((src.shape[0], 3))
    fix[:, 2] = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    fix[fix[:, 2] == 0, 2] = 1.0
    rotation = u @ (fix[:, :, None] * vt)
    if with_scale:
        var = (x**2).sum(axis=2).mean(axis=1)  # (S,)
        scale = (d * fix).sum(axis=1) / np.maximum(var, 1e-12)
    else:
        scale = np.ones(src.shape[0])
    shift = mu_dst[:, 0] - scale[:, None] * np.einsum("sij,sj->si", rotation, mu_src[:, 0])
    return rotation, scale, shift


@dataclass(frozen=True)
class SequenceICPConfig:
    """Multi-start ICP of one similarity over all frames: every start runs `coarse_iterations` on about
    `coarse_points` points (spread over the frames); the `refine_best` best whose cost is within `refine_margin`
    times the best's continue for up to `fine_iterations` on about `fine_points`. A start stops early once its
    mean Chamfer changes by less than `tolerance`. `fit_scale` adds a uniform scale to the rigid map."""

    coarse_points: int = 1024
    fine_points: int = 16384
    coarse_iterations: int = 12
    fine_iterations: int = 40
    refine_best: int = 3
    refine_margin: float = 1.5
    random_starts: int = 8
    fit_scale: bool = True
    tolerance: float = 1e-6
    seed: int = 0


def fit_sequence_alignment(
    pred: np.ndarray, gt: np.ndarray, config: SequenceICPConfig = SequenceICPConfig()
) -> tuple[AffineMap, float]:
    """One similarity map taking pred (F, N, 3) onto gt (F, M, 3), fitted on all frames at once.

    Nearest neighbours are searched within each frame (pred frame f only against gt frame f) and both ways
    (pred→gt and gt→pred pairs, so neither side can shrink into the other's interior); one Umeyama solve pools
    every frame's pairs. Returns the map and its mean per-frame Chamfer distance on the refinement points.
    """
    if pred.shape[0] != gt.shape[0]:
        raise InputError(f"the prediction has {pred.shape[0]} frames and the ground truth {gt.shape[0]}")
    frames = pred.shape[0]
    starts = initial_rotations(pred, gt, config.random_starts, config.seed)  # (S, 3, 3)
    shift = gt.reshape(-1, 3).mean(0) - np.einsum("sij,j->si", starts, pred.reshape(-1, 3).mean(0))
    state = (starts, np.ones(len(starts)), shift)

    coarse = max(32, config.coarse_points // frames)
    state, cost = _icp(pred[:, :coarse], gt[:, :coarse], state, config.coarse_iterations, config)
    keep = np.argsort(cost)[: config.refine_best]
    keep = keep[cost[keep] <= config.refine_margin * cost[keep[0]]]  # rivals of the best, not lost causes
    state = tuple(a[keep] for a in state)
    fine = max(32, config.fine_points // frames)
    state, cost = _icp(pred[:, :fine], gt[:, :fine], state, config.fine_iterations, config)
    best = int(np.argmin(cost))
    return AffineMap.similarity(state[0][best], state[1][best], state[2][best]), float(cost[best])


def _icp(
    pred: np.ndarray,
    gt: np.ndarray,
    state: tuple[np.ndarray, np.ndarray, np.ndarray],
    iterations: int,
    config: SequenceICPConfig,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """Batched symmetric ICP of S similarities (R (S,3,3), s (S,), t (S,3)); returns the state and the mean
    per-frame Chamfer (S,) at that state. pred (F, n, 3), gt (F, m, 3). A start stops once its cost changes by
    less than the tolerance.

    The gt→pred neighbours are searched in pred's own coordinates (gt mapped back by the inverse similarity,
    distances scaled back), so both point sets keep one KD-tree per frame for the whole run.
    """
    pred_trees, gt_trees = frame_trees(pred), frame_trees(gt)
    rotation, scale, shift = (a.copy() for a in state)
    cost, active = np.full(len(scale), np.inf), np.arange(len(scale))
    for step in range(iterations + 1):
        r, s, t = rotation[active], scale[active], shift[active]
        moved = s[:, None, None, None] * (pred[None] @ r.transpose(0, 2, 1)[:, None]) + t[:, None, None]
        back = ((gt[None] - t[:, None, None]) @ r[:, None]) / s[:, None, None, None]  # R^T (g - t) / s
        d_pg, i_pg = nearest_in_frames(gt_trees, moved)  # (A, F, n)
        d_gp, i_gp = nearest_in_frames(pred_trees, back)  # (A, F, m)
        new_cost = d_pg.mean(axis=(1, 2)) + s * d_gp.mean(axis=(1, 2))
        moving = np.abs(cost[active] - new_cost) >= config.tolerance
        cost[active] = new_cost
        if step == iterations or not moving.any():
            break
        active, i_pg, i_gp = active[moving], i_pg[moving], i_gp[moving]
        src = np.concatenate([np.broadcast_to(pred, i_pg.shape + (3,)), _gather(pred, i_gp)], axis=2)
        dst = np.concatenate([_gather(gt, i_pg), np.broadcast_to(gt, i_gp.shape + (3,))], axis=2)
        rotation[active], scale[active], shift[active] = fit_similarity(
            src.reshape(len(active), -1, 3), dst.reshape(len(active), -1, 3), config.fit_scale
        )
    return (rotation, scale, shift), cost


def _gather(points: np.ndarray, index: np.ndarray) -> np.ndarray:
    """points (F, n, 3) picked by per-frame indices (S, F, k) -> (S, F, k, 3)."""
    frames = np.arange(points.shape[0])[None, :, None]
    return points[frames, index]


# ------------------------------------------------------------------------------------------------ ActionBench ICP


@dataclass(frozen=True)
class GradientICPConfig:
    """The ActionBench reference alignment: Adam (`lr`) for `iterations` steps from the 24 axis-aligned starts."""

    iterations: int = 200
    lr: float = 0.01


def fit_frame_gradient_icp(
    pred: np.ndarray, gt: np.ndarray, config: GradientICPConfig = GradientICPConfig(), device: str = "cpu"
) -> AffineMap:
    """ActionBench's per-frame alignment of pred (N, 3) onto gt (M, 3): rotation (6D parametrisation, applied
    after one of its 24 starts, `actionbench_rotations`), translation and per-axis scale, optimised by Adam on
    the squared Chamfer loss (mean squared NN distance each way, summed) for every start at once; the parameters
    with the lowest loss seen are kept. (The reference script stores translation and scale one Adam step after
    the loss they produced; here they are stored with it.)
    """
    dev = torch.device(device)
    starts = torch.as_tensor(actionbench_rotations(), dtype=torch.float32, device=dev)  # (S, 3, 3)
    count = starts.shape[0]
    x = torch.as_tensor(pred, dtype=torch.float32, device=dev)  # (N, 3)
    y = torch.as_tensor(gt, dtype=torch.float32, device=dev)  # (M, 3)
    shift = torch.zeros(count, 3, device=dev, requires_grad=True)
    six_d = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]], device=dev).repeat(count, 1).requires_grad_(True)
    scale = torch.ones(count, 3, device=dev, requires_grad=True)
    optimiser = torch.optim.Adam([shift, six_d, scale], lr=config.lr)
    gt_tree = cKDTree(gt) if dev.type == "cpu" else None
    best_loss, best = float("inf"), None
    for _ in range(config.iterations):
        optimiser.zero_grad()
        rotation = starts @ _rotation_6d(six_d)  # (S, 3, 3), applied to row vectors
        moved = (scale[:, None] * x) @ rotation + shift[:, None]  # (S, N, 3)
        with torch.no_grad():
            to_gt, to_pred = _nearest_torch(moved.detach(), y, gt_tree)  # (S, N), (S, M)
        loss = ((moved - y[to_gt]) ** 2).sum(-1).mean(1) + (
            (torch.gather(moved, 1, to_pred[..., None].expand(-1, -1, 3)) - y) ** 2
        ).sum(-1).mean(1)  # (S,)
        low, idx = loss.detach().min(0)
        if low.item() < best_loss:
            best_loss = low.item()
            best = (rotation[idx].detach().clone(), scale[idx].detach().clone(), shift[idx].detach().clone())
        loss.mean().backward()
        optimiser.step()
    rotation, scale_best, shift_best = (t.double().cpu().numpy() for t in best)
    # row form p' = (s * p) @ R + T  ==  column form p' = R^T diag(s) p + T
    return AffineMap(rotation.T * scale_best[None, :], shift_best)


def _rotation_6d(six_d: torch.Tensor) -> torch.Tensor:
    """(S, 6) -> (S, 3, 3) by Gram-Schmidt on the two 3-vectors (rows b1, b2, b1 x b2), as in PyTorch3D."""
    a1, a2 = six_d[:, :3], six_d[:, 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    return torch.stack([b1, b2, torch.linalg.cross(b1, b2)], dim=-2)


def _nearest_torch(
    moved: torch.Tensor, gt: torch.Tensor, gt_tree: cKDTree | None, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of nearest neighbours: moved (S, N, 3) -> gt (S, N) and gt (M, 3) -> moved (S, M).
    KD-trees when `gt_tree` is given (CPU); otherwise chunked `cdist` on moved's device (an accelerator)."""
    if gt_tree is not None:
        m = moved.cpu().numpy().astype(np.float64)
        _, to_gt = gt_tree.query(m.reshape(-1, 3), workers=WORKERS)
        g = gt.cpu().numpy().astype(np.float64)
        to_pred = np.stack([cKDTree(frame).query(g, workers=WORKERS)[1] for frame in m])
        return torch.from_numpy(to_gt.reshape(m.shape[:2])), torch.from_numpy(to_pred)
    batch = moved.shape[0]
    targets = gt[None].expand(batch, -1, -1)  # (S, M, 3)
    to_gt = torch.cat(
        [torch.cdist(moved[:, i : i + chunk], targets).argmin(-1) for i in range(0, moved.shape[1], chunk)], dim=1
    )
    to_pred = torch.cat(
        [torch.cdist(targets[:, i : i + chunk], moved).argmin(-1) for i in range(0, gt.shape[0], chunk)], dim=1
    )
    return to_gt, to_pred
