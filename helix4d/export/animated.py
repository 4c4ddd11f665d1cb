"""One GLB that plays the whole 4D asset, although every frame may have a different topology.

glTF morph targets and skins need one fixed mesh, so each frame is its own node and mesh, and a STEP-interpolated
scale animation shows frame k (scale 1) only during its slot [k / fps, (k + 1) / fps) and hides it (scale 0) the
rest of the time. The clip lasts F / fps seconds; at its end the last frame stays visible. Static viewers that
ignore animations see frame 0 (the other nodes rest at scale 0). Each frame node samples 2-3 keys, so the file
grows linearly with the frame count.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pygltflib as gl

from helix4d.errors import InputError
from helix4d.export.glb import GltfBuilder
from helix4d.export.surface import Frame
from helix4d.io.files import write_bytes_atomic


def frame_keys(frame: int, count: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """STEP keys of frame node `frame` of `count`: times (K,) seconds and visibility (K,) in {0, 1}."""
    times, visible = [0.0], [float(frame == 0)]
    if frame > 0:
        times.append(frame / fps)
        visible.append(1.0)
    times.append((frame + 1) / fps)
    visible.append(float(frame == count - 1))
    return np.asarray(times, np.float32), np.asarray(visible, np.float32)


def write_animated_glb(frames: Sequence[Frame], path: str | os.PathLike, fps: float) -> Path:
    """Write all `frames` (vertex-coloured or textured, may differ in topology) into one animated .glb at `fps`."""
    if len(frames) == 0:
        raise InputError("write_animated_glb needs at least one frame")
    if not fps > 0:
        raise InputError(f"fps must be > 0, got {fps}")
    builder = GltfBuilder()
    count = len(frames)
    nodes = []
    for k, frame in enumerate(frames):
        name = f"frame_{k:04d}"
        node = gl.Node(name=name, mesh=builder.add_mesh(frame, name), scale=None if k == 0 else [0.0, 0.0, 0.0])
        nodes.append(builder.add_node(node))
    builder.add_node(gl.Node(name="asset", children=nodes), root=True)

    animation = gl.Animation(name="frames", channels=[], samplers=[])
    for k, node in enumerate(nodes):
        times, visible = frame_keys(k, count, fps)
        scale = np.repeat(visible[:, None], 3, axis=1)  # (K, 3)
        animation.samplers.append(
            gl.AnimationSampler(
                input=builder.accessor(times, bounds=True), output=builder.accessor(scale), interpolation=gl.ANIM_STEP
            )
        )
        animation.channels.append(
            gl.AnimationChannel(sampler=k, target=gl.AnimationChannelTarget(node=node, path="scale"))
        )
    builder.gltf.animations.append(animation)
    return write_bytes_atomic(path, builder.to_glb())
