"""One GLB that plays the whole 4D asset, although the topology may change from one segment of frames to the next.

glTF morph targets need one fixed mesh, so the clip is cut into segments of one topology (`segments.py`, with
vertices tracked through each, `tracking.py`). Each segment is one node and one mesh: its first frame, plus two
morph targets per later frame, played by a STEP weights animation that turns frame k's pair on during its slot: a
shape target (the position displacements from the first frame, scaled to [-1, 1] and stored in 8 bits, or 16 where 8
would round a vertex by more than `MORPH_TOLERANCE`; its weight is the scale) and a shading target (the normal
displacements, scaled the same way and stored in 8 bits). One target per frame would need 16-bit positions for every
frame, since a target's positions and normals share its weight; the pair costs 8 bytes per vertex and frame instead
of 12. A STEP-interpolated scale animation shows a segment's node (scale 1) only during its slots [start / fps, stop
/ fps) and hides it (scale 0) the rest of the time; at the clip's end the last segment stays visible. Static viewers
that ignore animations see frame 0 (the other nodes rest at scale 0). Textures belong to a segment, not to a frame,
so colours do not flicker inside it, and a clip without a topology change is one mesh, one texture pair and F - 1
targets instead of F meshes and F texture pairs.

Without tracking, every frame is a segment of its own (one node per frame, no targets): the node-switching layout.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pygltflib as gl
import trimesh

from helix4d.errors import InputError
from helix4d.export.bake import TexturedMesh
from helix4d.export.glb import GltfBuilder, MorphTarget
from helix4d.export.surface import Frame, surface_arrays
from helix4d.io.files import write_bytes_atomic

MORPH_TOLERANCE = 0.125 / 32  # largest rounding of a morph target's vertex: an eighth of a voxel at R = 32


@dataclass
class MorphSegment:
    """Clip frames [start, start + K) shown by `frame` (the segment's first frame, vertex-coloured or textured) with
    its source mesh's vertices at positions (K, V_source, 3), or `positions=None` for a one-frame segment."""

    start: int
    frame: Frame
    positions: np.ndarray | None = None

    @property
    def stop(self) -> int:
        return self.start + (1 if self.positions is None else len(self.positions))


def frame_keys(start: int, count: int, fps: float, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """STEP keys of the node showing frames [start, stop) (default: frame `start` alone) of a `count`-frame clip:
    times (K,) seconds and visibility (K,) in {0, 1}."""
    stop = start + 1 if stop is None else stop
    times, visible = [0.0], [float(start == 0)]
    if start > 0:
        times.append(start / fps)
        visible.append(1.0)
    times.append(stop / fps)
    visible.append(float(stop == count))
    return np.asarray(times, np.float32), np.asarray(visible, np.float32)


def write_animated_glb(frames: Sequence[Frame], path: str | os.PathLike, fps: float) -> Path:
    """Write all `frames` (vertex-coloured or textured, may differ in topology) into one animated .glb at `fps`,
    one node per frame."""
    return write_segments_glb([MorphSegment(k, frame) for k, frame in enumerate(frames)], path, fps)


def write_segments_glb(segments: Sequence[MorphSegment], path: str | os.PathLike, fps: float) -> Path:
    """Write the clip as consecutive `segments` (covering frames 0..F-1 in order) into one animated .glb."""
    check_segments(segments, fps)
    builder = GltfBuilder()
    count = segments[-1].stop
    animation = gl.Animation(name="frames", channels=[], samplers=[])
    nodes = [add_morph_segment(builder, animation, segment, count, fps) for segment in segments]
    builder.add_node(gl.Node(name="asset", children=nodes), root=True)
    builder.gltf.animations.append(animation)
    return write_bytes_atomic(path, builder.to_glb())


def check_segments(segments: Sequence[MorphSegment], fps: float) -> None:
    """Raise `InputError` unless `segments` follow each other from frame 0 and `fps` > 0."""
    if len(segments) == 0:
        raise InputError("write_animated_glb needs at least one frame")
    if not fps > 0:
        raise InputError(f"fps must be > 0, got {fps}")
    if any(b.start != a.stop for a, b in zip(segments, segments[1:])) or segments[0].start != 0:
        raise InputError("animated GLB segments must follow each other from frame 0")


def add_morph_segment(
    builder: GltfBuilder, animation: gl.Animation, segment: MorphSegment, count: int, fps: float
) -> int:
    """Add one segment of a `count`-frame clip as a node (its first frame, morph targets for the later ones), shown
    only during its frames; returns the node's index (not yet attached to a parent)."""
    name = f"frame_{segment.start:04d}" if segment.positions is None else f"frames_{segment.start:04d}"
    moving = segment.positions is not None and len(segment.positions) > 1
    morph, weights = _morph_targets(segment) if moving else ([], np.zeros((0, 0), np.float32))
    mesh = builder.add_mesh(segment.frame, name, morph)
    node = builder.add_node(gl.Node(name=name, mesh=mesh, scale=None if segment.start == 0 else [0.0, 0.0, 0.0]))
    times, visible = frame_keys(segment.start, count, fps, segment.stop)
    add_channel(builder, animation, node, "scale", times, np.repeat(visible[:, None], 3, axis=1))  # (K, 3)
    if morph and mesh is not None:
        times = (segment.start + np.arange(len(weights), dtype=np.float32)) / fps  # (K,)
        add_channel(builder, animation, node, "weights", times, weights.reshape(-1))
    return node


def add_channel(
    builder: GltfBuilder,
    animation: gl.Animation,
    node: int,
    path: str,
    times: np.ndarray | int,
    values: np.ndarray,
    interpolation: str = gl.ANIM_STEP,
) -> None:
    """Animate `path` of `node` by `values` at `times` (seconds, or the index of an accessor of them to share)."""
    source = times if isinstance(times, int) else builder.accessor(times, bounds=True)
    animation.samplers.append(
        gl.AnimationSampler(input=source, output=builder.accessor(values), interpolation=interpolation)
    )
    animation.channels.append(
        gl.AnimationChannel(sampler=len(animation.samplers) - 1, target=gl.AnimationChannelTarget(node=node, path=path))
    )


def written_positions(segment: MorphSegment) -> list[np.ndarray]:
    """(V, 3) float32 positions of the written vertices (split at UV seams for textured frames) in each frame of the
    segment."""
    frame = segment.frame
    if segment.positions is None:
        return [surface_arrays(frame).positions]
    index = frame.source_vertex if isinstance(frame, TexturedMesh) else np.arange(segment.positions.shape[1])
    return [np.asarray(moved[index], np.float32) for moved in segment.positions]


def _unit_scaled(values: np.ndarray) -> tuple[np.ndarray, float]:
    """`values` divided by their largest magnitude (1 for all zeros), so they fit [-1, 1], and that scale."""
    scale = float(np.abs(values).max(initial=0.0)) or 1.0
    return values / scale, scale


def _morph_targets(segment: MorphSegment) -> tuple[list[MorphTarget], np.ndarray]:
    """The segment's morph targets (a shape and a shading target per later frame, module docstring) and the weights
    (K, 2 (K - 1)) that show frame k, on the written vertices (normals are summed over the copies of a source
    vertex, so they stay smooth across UV seams as the baked frame's own normals do)."""
    frame = segment.frame
    written = frame.mesh if isinstance(frame, TexturedMesh) else frame
    index = frame.source_vertex if isinstance(frame, TexturedMesh) else np.arange(len(written.vertices))
    base = surface_arrays(frame)
    faces = np.asarray(written.faces)
    later = written_positions(segment)[1:]
    targets: list[MorphTarget] = []
    weights = np.zeros((len(later) + 1, 2 * len(later)), np.float32)  # row 0: the first frame, no target on
    for k, at in enumerate(later):  # (V, 3)
        split = np.asarray(trimesh.Trimesh(at, faces, process=False).vertex_normals, np.float64)  # (V, 3)
        summed = np.zeros((index.max() + 1, 3))
        np.add.at(summed, index, split)
        n = summed[index]
        shift, scale = _unit_scaled(at - base.positions)  # (V, 3)
        # rounding to 1/127 of the scale moves a vertex by at most sqrt(3)/254 of it
        component = gl.BYTE if scale * np.sqrt(3.0) / 254.0 <= MORPH_TOLERANCE else gl.SHORT
        targets.append(MorphTarget(position=shift, position_component=component))
        # a unit normal's turn lies in [-2, 2]: one that turned past 90° would leave [-1, 1] unscaled
        turn, turn_scale = _unit_scaled(n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12) - base.normals)
        targets.append(MorphTarget(normal=turn))
        weights[k + 1, 2 * k : 2 * k + 2] = scale, turn_scale
    return targets, weights
