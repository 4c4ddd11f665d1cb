"""Evaluation of 4D assets (docs/design.md §8): geometry metrics on per-frame meshes of changing topology, image and
feature metrics, and the two protocols of `helix4d evaluate`.

    scores = evaluate_sequence(pred_meshes, gt_meshes, OursProtocol())        # or ActionBenchProtocol()
    scores.protocol, scores.metrics["cd_3d"], scores.metrics["cd_4d"]
"""

from helix4d.eval.align import (
    AffineMap,
    GradientICPConfig,
    SequenceICPConfig,
    fit_frame_gradient_icp,
    fit_sequence_alignment,
    normalisation,
)
from helix4d.eval.metrics import (
    FrameMatches,
    PointSequence,
    chamfer_distance,
    match_frames,
    sample_sequence,
    sample_surface,
    space_time_chamfer,
    temporal_jitter,
)
from helix4d.eval.protocols import (
    FRAME_STEP,
    PROTOCOLS,
    ActionBenchProtocol,
    OursProtocol,
    SequenceScores,
    evaluate_points,
    evaluate_sequence,
    make_protocol,
)

__all__ = [
    "FRAME_STEP",
    "PROTOCOLS",
    "ActionBenchProtocol",
    "AffineMap",
    "FrameMatches",
    "GradientICPConfig",
    "OursProtocol",
    "PointSequence",
    "SequenceICPConfig",
    "SequenceScores",
    "chamfer_distance",
    "evaluate_points",
    "evaluate_sequence",
    "fit_frame_gradient_icp",
    "fit_sequence_alignment",
    "make_protocol",
    "match_frames",
    "normalisation",
    "sample_sequence",
    "sample_surface",
    "space_time_chamfer",
    "temporal_jitter",
]
