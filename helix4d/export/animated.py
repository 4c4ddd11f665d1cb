"""One GLB that plays the whole 4D asset, although the topology may change from one segment of frames to the next.

glTF morph targets need one fixed mesh, so the clip is cut into segments of one topology (`segments.py`, with
vertices tracked through each, `tracking.py`). Each segment is one node and one mesh: its first frame, plus one
morph target per later frame (position and normal displacements from the first frame), played by a STEP weights
animation that turns target k on during frame k's slot. A STEP-interpolated scale animation shows a segment's node
(scale 1) only during its slots [start / fps, stop / fps) and hides it (scale 0) the rest of the time; at the clip's
end the last segment stays visible. Static viewers that ignore animations see frame 0 (the other nodes rest at
scale 0). Textures belong to a segment, not to a frame, so colours do not flicker inside it, and a clip without a
topology change is one mesh, one texture pair and F - 1 targets instead of F meshes and F texture pairs.

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
from helix4d.export.glb import GltfBuilder
from helix4d.export.surface import Frame, surface_arrays
from helix4d.io.files import write_bytes_atomic


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
    if len(segments) == 0:
        raise InputError("write_animated_glb needs at least one frame")
    if not fps > 0:
        raise InputError(f"fps must be > 0, got {fps}")
    if any(b.start != a.stop for a, b in zip(segments, segments[1:])) or segments[0].start != 0:
        raise InputError("animated GLB segments must follow each other from frame 0")
    builder = GltfBuilder()
    count = segments[-1].stop
    animation = gl.Animation(name="frames", channels=[], samplers=[])
    nodes = []
    for segment in segments:
        name = f"frame_{segment.start:04d}" if segment.positions is None else f"frames_{segment.start:04d}"
        morph = _morph_targets(segment) if segment.positions is not None and len(segment.positions) > 1 else None
        mesh = builder.add_mesh(segment.frame, name, morph)
        node = builder.add_node(gl.Node(name=name, mesh=mesh, scale=None if segment.start == 0 else [0.0, 0.0, 0.0]))
        nodes.append(node)
        times, visible = frame_keys(segment.start, count, fps, segment.stop)
        _channel(builder, animation, node, "scale", times, np.repeat(visible[:, None], 3, axis=1))  # (K, 3)
        if morph is not None and mesh is not None:
            targets = len(morph[0])
            times = (segment.start + np.arange(targets + 1, dtype=np.float32)) / fps  # (T + 1,)
            weights = np.eye(targets + 1, targets, k=-1, dtype=np.float32)  # row j: target j - 1 on
            _channel(builder, animation, node, "weights", times, weights.reshape(-1))
    builder.add_node(gl.Node(name="asset", children=nodes), root=True)
    builder.gltf.animations.append(animation)
    return write_bytes_atomic(path, builder.to_glb())


def _channel(
    builder: GltfBuilder, animation: gl.Animation, node: int, path: str, times: np.ndarray, values: np.ndarray
) -> None:
    animation.samplers.append(
        gl.AnimationSampler(
            input=builder.accessor(times, bounds=True), output=builder.accessor(values), interpolation=gl.ANIM_STEP
        )
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


def _morph_targets(segment: MorphSegment) -> tuple[np.ndarray, np.ndarray]:
    """(position, normal) displacements (K - 1, V, 3) float32 of the segment's later frames from its first, on the
    written vertices (normals are summed over the copies of a source vertex, so they stay smooth across UV seams as
    the baked frame's own normals do)."""
    frame = segment.frame
    written = frame.mesh if isinstance(frame, TexturedMesh) else frame
    index = frame.source_vertex if isinstance(frame, TexturedMesh) else np.arange(len(written.vertices))
    base = surface_arrays(frame)
    faces = np.asarray(written.faces)
    positions, normals = [], []
    for at in written_positions(segment)[1:]:  # (V, 3)
        split = np.asarray(trimesh.Trimesh(at, faces, process=False).vertex_normals, np.float64)  # (V, 3)
        summed = np.zeros((index.max() + 1, 3))
        np.add.at(summed, index, split)
        n = summed[index]
        positions.append(at - base.positions)
        normals.append(n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12) - base.normals)
    return np.asarray(positions, np.float32), np.asarray(normals, np.float32)
