"""The two evaluation protocols of `helix4d evaluate`: which points are sampled, how the prediction is aligned,
and which numbers come out. Every result carries the name of the protocol that produced it.

ours (default)
    `points` samples per frame (same seed every frame). Each sequence is normalised by its own whole-sequence
    centre and RMS radius (to 0.5), then one similarity is fitted on all frames (`align.fit_sequence_alignment`).
    Reports, in normalised units:
    cd_3d               mean per-frame Chamfer distance;
    cd_4d               space-time Chamfer of (x, y, z, frame_step · f), see `frame_step` below;
    f_score@τ           mean per-frame F-score at each τ in `f_score_taus`;
    normal_consistency  mean per-frame |cos| of matched normals;
    jitter_abs, jitter_ratio  frame-to-frame Chamfer of the prediction against the ground truth's.
    With `align=False` nothing is normalised or aligned: distances are in the meshes' own units (for helix4d
    outputs and datasets, the unit cube, which the normalised units were chosen to resemble).

actionbench
    docs/design.md §8 / the ActionBench reference script: `samples` points per frame (seed + frame), ICP on `icp_points`
    of them (gradient ICP, 24 axis-aligned starts, rotation + translation + per-axis scale), Chamfer with up to
    `chamfer_points` query points per side against all samples. cd_3d: every frame aligned separately, then
    averaged; cd_4d: the alignment fitted on frame 0 applied to all frames (drift is penalised). Distances in
    the ground truth's units. Its motion metric needs identical faces in every frame and is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from helix4d.errors import InputError
from helix4d.eval.align import (
    AffineMap,
    GradientICPConfig,
    SequenceICPConfig,
    fit_frame_gradient_icp,
    fit_sequence_alignment,
    normalisation,
)
from helix4d.eval.metrics import (
    WORKERS,
    PointSequence,
    match_frames,
    sample_sequence,
    space_time_chamfer,
    temporal_jitter,
)

# CD-4D time axis: frame f sits at w = FRAME_STEP * f, i.e. λ·t with t = f / (F - 1) and λ = FRAME_STEP * (F - 1).
# 0.1 normalised units (a tenth of a typical object's diameter) is several times the F-score thresholds and a good
# reconstruction's Chamfer distance, so a prediction shown in the right order is scored on its shapes, while
# content shown k frames early or late is charged up to 0.1 k: swapped or reversed frames cost, unlike a Chamfer
# of all frames pooled (frame_step = 0), which cannot tell any frame order from another.
FRAME_STEP = 0.1


@dataclass(frozen=True)
class OursProtocol:
    """Our protocol (see the module docstring); survives shapes that are symmetric in frame 0."""

    name: ClassVar[str] = "ours"
    units: ClassVar[str] = "normalised: each sequence centred, RMS radius 0.5, one similarity fitted on all frames"
    points: int = 20_000
    align: bool = True
    icp: SequenceICPConfig = field(default_factory=SequenceICPConfig)
    f_score_taus: tuple[float, ...] = (0.01, 0.02)
    frame_step: float = FRAME_STEP
    seed: int = 0


@dataclass(frozen=True)
class ActionBenchProtocol:
    """The ActionBench protocol with its published defaults (see the module docstring)."""

    name: ClassVar[str] = "actionbench"
    units: ClassVar[str] = "ground-truth units; cd_3d: gradient ICP per frame, cd_4d: frame 0's ICP for all frames"
    samples: int = 100_000
    icp_points: int = 10_000
    chamfer_points: int = 10_000
    align: bool = True
    icp: GradientICPConfig = field(default_factory=GradientICPConfig)
    seed: int = 44
    device: str = "cpu"


Protocol = OursProtocol | ActionBenchProtocol
PROTOCOLS: dict[str, type[OursProtocol] | type[ActionBenchProtocol]] = {
    OursProtocol.name: OursProtocol,
    ActionBenchProtocol.name: ActionBenchProtocol,
}


def make_protocol(name: str, align: bool = True, points: int | None = None, device: str = "cpu") -> Protocol:
    """A protocol by name with its defaults, except alignment on/off, the samples per frame and (actionbench)
    the device its ICP runs on."""
    if name not in PROTOCOLS:
        raise InputError(f"unknown protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}")
    if points is not None and points < 1:
        raise InputError(f"points per frame must be >= 1, got {points}")
    if name == OursProtocol.name:
        return OursProtocol(align=align) if points is None else OursProtocol(points=points, align=align)
    base = ActionBenchProtocol(align=align, device=device)
    return base if points is None else ActionBenchProtocol(samples=points, align=align, device=device)


@dataclass
class SequenceScores:
    """Scores of one predicted sequence against its ground truth.

    protocol: the protocol's name; frames: F; metrics: name -> value (NaN where undefined);
    pred_to_gt: the single map that takes the prediction into the ground truth's coordinates under this
    protocol (ours: the sequence alignment; actionbench: the frame-0 alignment), e.g. to render it from the
    input camera.
    """

    protocol: str
    frames: int
    metrics: dict[str, float]
    pred_to_gt: AffineMap


# An empty (or missing) predicted frame scores the worst error: a Chamfer distance of EMPTY_FRAME_CD (the unit cube's
# side — normalised sequences have RMS radius 0.5, so this is an object's whole diameter, more than any prediction
# placed on the object costs) and an F-score / normal consistency of 0. The remaining frames are scored as usual
# and the per-frame means are taken over all frames; jitter is measured on the non-empty frames.
EMPTY_FRAME_CD = 1.0


def evaluate_sequence(
    pred: Sequence[trimesh.Trimesh], gt: Sequence[trimesh.Trimesh], protocol: Protocol = OursProtocol()
) -> SequenceScores:
    """Score predicted per-frame meshes against ground-truth per-frame meshes (topology may change anywhere).

    Frames pair one to one; under actionbench, as in its reference script, extra predicted frames are dropped.
    Predicted frames that are empty (no faces of non-zero area) or missing at the end score the worst error
    (`EMPTY_FRAME_CD`); `metrics["empty_frames"]` counts them.
    """
    if isinstance(protocol, ActionBenchProtocol):
        pred = pred[: len(gt)]
    if len(pred) > len(gt):
        raise InputError(
            f"the prediction has {len(pred)} frames and the ground truth {len(gt)}; frames are "
            "compared one to one, so generate as many frames as the ground truth has"
        )
    kept = [f for f, mesh in enumerate(pred) if len(mesh.faces) and mesh.area > 0]
    empty = len(gt) - len(kept)
    if not kept:
        metrics = {"cd_3d": EMPTY_FRAME_CD, "cd_4d": EMPTY_FRAME_CD}
        if isinstance(protocol, OursProtocol):
            metrics.update({f"f_score@{tau:g}": 0.0 for tau in protocol.f_score_taus})
            metrics.update(normal_consistency=0.0, jitter_abs=float("nan"), jitter_ratio=float("nan"))
        return SequenceScores(protocol.name, len(gt), {**metrics, "empty_frames": float(empty)}, AffineMap.identity())
    scores = _score_frames([pred[f] for f in kept], [gt[f] for f in kept], protocol)
    if empty:
        share = len(kept) / len(gt)
        for name, value in scores.metrics.items():
            if name.startswith("cd_"):
                scores.metrics[name] = share * value + (1 - share) * EMPTY_FRAME_CD
            elif name.startswith("f_score@") or name == "normal_consistency":
                scores.metrics[name] = share * value
        scores.frames = len(gt)
    scores.metrics["empty_frames"] = float(empty)
    return scores


def _score_frames(pred: Sequence[trimesh.Trimesh], gt: Sequence[trimesh.Trimesh], protocol: Protocol) -> SequenceScores:
    if isinstance(protocol, ActionBenchProtocol):
        return _actionbench(pred, gt, protocol)
    samples = [sample_sequence(meshes, protocol.points, protocol.seed) for meshes in (pred, gt)]
    return evaluate_points(*samples, protocol)


def evaluate_points(pred: PointSequence, gt: PointSequence, protocol: OursProtocol = OursProtocol()) -> SequenceScores:
    """Our protocol on already sampled point sequences (F, N, 3) and (F, M, 3)."""
    if pred.frames != gt.frames:
        raise InputError(f"the prediction has {pred.frames} frames and the ground truth {gt.frames}")
    if protocol.align:
        norm_pred, norm_gt = normalisation(pred.points), normalisation(gt.points)
        fit, _ = fit_sequence_alignment(norm_pred(pred.points), norm_gt(gt.points), protocol.icp)
        to_frame, pred_to_gt = fit @ norm_pred, norm_gt.inverse() @ fit @ norm_pred
        p, n, g, gn = to_frame(pred.points), to_frame.normals(pred.normals), norm_gt(gt.points), gt.normals
    else:
        pred_to_gt = AffineMap.identity()
        p, n, g, gn = pred.points, pred.normals, gt.points, gt.normals
    matches = match_frames(p, g)
    metrics = {"cd_3d": float(matches.chamfer().mean()), "cd_4d": space_time_chamfer(p, g, protocol.frame_step)}
    for tau in protocol.f_score_taus:
        metrics[f"f_score@{tau:g}"] = float(matches.f_score(tau).mean())
    metrics["normal_consistency"] = float(matches.normal_consistency(n, gn).mean())
    metrics["jitter_abs"], metrics["jitter_ratio"] = temporal_jitter(p, g)
    return SequenceScores(OursProtocol.name, pred.frames, metrics, pred_to_gt)


def _actionbench(
    pred: Sequence[trimesh.Trimesh], gt: Sequence[trimesh.Trimesh], protocol: ActionBenchProtocol
) -> SequenceScores:
    p = sample_sequence(pred, protocol.samples, protocol.seed, seed_step=1).points  # (F, S, 3)
    g = sample_sequence(gt, protocol.samples, protocol.seed, seed_step=1).points
    frames = p.shape[0]
    if protocol.align:
        icp_rows = _subset(protocol.samples, protocol.icp_points, protocol.seed)  # same rows in every frame
        maps = [
            fit_frame_gradient_icp(p[f, icp_rows], g[f, icp_rows], protocol.icp, protocol.device) for f in range(frames)
        ]
    else:
        maps = [AffineMap.identity()] * frames
    per_frame = [
        actionbench_chamfer(maps[f](p[f]), g[f], protocol.chamfer_points, protocol.seed) for f in range(frames)
    ]
    anchored = [actionbench_chamfer(maps[0](p[f]), g[f], protocol.chamfer_points, protocol.seed) for f in range(frames)]
    metrics = {"cd_3d": float(np.mean(per_frame)), "cd_4d": float(np.mean(anchored))}
    return SequenceScores(ActionBenchProtocol.name, frames, metrics, maps[0])


def actionbench_chamfer(pred: np.ndarray, gt: np.ndarray, queries: int = 10_000, seed: int = 44) -> float:
    """The reference script's Chamfer: up to `queries` points of each side (fixed random subsets, seeds `seed`
    for pred and `seed + 1` for gt) find their nearest neighbour among *all* points of the other side."""
    pred_rows = _subset(len(pred), queries, seed)
    gt_rows = _subset(len(gt), queries, seed + 1)
    gt_to_pred = cKDTree(pred).query(gt[gt_rows], workers=WORKERS)[0].mean()
    pred_to_gt = cKDTree(gt).query(pred[pred_rows], workers=WORKERS)[0].mean()
    return float(gt_to_pred + pred_to_gt)


def _subset(total: int, count: int, seed: int) -> np.ndarray:
    """The reference script's subset: the first `count` of a legacy-RandomState permutation, or everything."""
    if 0 < count < total:
        return np.random.RandomState(seed).permutation(total)[:count]
    return np.arange(total)
