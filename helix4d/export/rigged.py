"""rigged.glb: the clip as skeletal animation, a skinned mesh and a skeleton per tracked segment (rigs: `rig.py`).

Per segment whose rig fits its budget: a skinned mesh (its first frame, with JOINTS_0 / WEIGHTS_0, up to four
bones a vertex) on a node at the scene's root without a transform, as glTF asks of a skinned mesh (its joints
place it), and a skeleton: a root joint `frames_NNNN_shown` holding one joint per bone. A bone's joint rests at
the centroid of the vertices it moves, so it sits inside its part in a DCC rather than at the origin; its inverse
bind matrix undoes that translation, so the joint's world matrix times its inverse bind matrix is the rig's motion
of the bone from the rest pose. Bone rotations and translations are keyed once a frame, LINEAR: the bones are
rigid, so interpolating between frames (slerp, lerp) keeps them rigid. The root joint's scale switches the segment
on during its frames and off (scale 0: every joint, so every vertex, collapses to one point) the rest of the time,
as `animated.glb` switches its nodes; the skinned mesh's own node cannot carry the switch (glTF ignores a skinned
mesh's node transform), and the switch is a joint rather than a node above the skeleton because DCCs make the
joints' parent an armature object, and Blender can neither import an armature object at scale 0 nor write one to
FBX that reads back. Every segment's root joint hangs under one node, `asset`, which DCCs import as one armature.
A segment that falls back (its rig misses the budget) is written as in `animated.glb`, at the scene's root: its
first frame and morph targets (`add_morph_segment`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pygltflib as gl
from scipy.spatial.transform import Rotation

from helix4d.export.animated import MorphSegment, add_channel, add_morph_segment, check_segments, frame_keys
from helix4d.export.bake import TexturedMesh
from helix4d.export.glb import GltfBuilder
from helix4d.export.rig import Rig
from helix4d.export.surface import Frame
from helix4d.io.files import write_bytes_atomic

INFLUENCES = 4  # JOINTS_0 / WEIGHTS_0 hold four bones a vertex


@dataclass
class RiggedSegment:
    """Clip frames [start, start + K) shown by `frame` (the segment's first frame prepared for export, vertex-coloured
    or textured) moved by `rig` (bound to its source mesh's vertices)."""

    start: int
    frame: Frame
    rig: Rig

    @property
    def stop(self) -> int:
        return self.start + len(self.rig.transforms)


@dataclass
class JointKeys:
    """A rig's skeleton in glTF terms: centres (B, 3) the joints' rest places, and per frame and joint the
    local translation (K, B, 3) and rotation (K, B, 4) quaternion x, y, z, w."""

    centres: np.ndarray
    translation: np.ndarray
    rotation: np.ndarray


def joint_keys(rig: Rig) -> JointKeys:
    """The joints that play `rig`: joint b rests at its bone's weighted vertex centroid c_b; at frame k it is turned
    by R_kb and placed at R_kb c_b + t_kb, so that (joint world) x (inverse bind = translation by -c_b) = the
    bone's motion (R_kb, t_kb)."""
    share = np.zeros((len(rig.rest), rig.bones))  # (V, B)
    np.add.at(share, (np.arange(len(rig.rest))[:, None], rig.joints), rig.weights)
    total = share.sum(axis=0)  # (B,)
    centre = rig.rest.mean(axis=0)
    centres = np.where(total[:, None] > 0, share.T @ rig.rest / np.maximum(total, 1e-12)[:, None], centre)  # (B, 3)
    rotations = rig.transforms[..., :3, :3]  # (K, B, 3, 3)
    translation = np.einsum("kbij,bj->kbi", rotations, centres) + rig.transforms[..., :3, 3]  # (K, B, 3)
    frames, bones = rotations.shape[:2]
    quaternion = Rotation.from_matrix(rotations.reshape(-1, 3, 3)).as_quat().reshape(frames, bones, 4)  # x, y, z, w
    for k in range(1, frames):  # the same hemisphere as the previous key, so interpolation takes the short way
        quaternion[k] *= np.where((quaternion[k] * quaternion[k - 1]).sum(-1) < 0, -1.0, 1.0)[:, None]
    return JointKeys(centres, translation, quaternion)


def write_rigged_glb(segments: Sequence[RiggedSegment | MorphSegment], path: str | os.PathLike, fps: float) -> Path:
    """Write the clip as consecutive `segments` (rigged, or morph targets where the rig fell back) into one .glb."""
    check_segments(segments, fps)
    builder = GltfBuilder()
    count = segments[-1].stop
    animation = gl.Animation(name="frames", channels=[], samplers=[])
    skeletons = []
    for segment in segments:
        if isinstance(segment, RiggedSegment):
            skeletons.append(_add_rigged_segment(builder, animation, segment, count, fps))
        else:
            builder.gltf.scenes[0].nodes.append(add_morph_segment(builder, animation, segment, count, fps))
    if skeletons:  # one parent for every segment's root joint: DCCs import them as one armature
        builder.add_node(gl.Node(name="asset", children=skeletons), root=True)
    builder.gltf.animations.append(animation)
    return write_bytes_atomic(path, builder.to_glb())


def _add_rigged_segment(
    builder: GltfBuilder, animation: gl.Animation, segment: RiggedSegment, count: int, fps: float
) -> int:
    """Add one rigged segment (module docstring): its skinned mesh as a scene root; returns its root joint (the
    switch)."""
    name = f"frames_{segment.start:04d}"
    rig, frame = segment.rig, segment.frame
    keys = joint_keys(rig)
    bones = []
    for b in range(rig.bones):
        node = gl.Node(
            name=f"{name}_bone_{b:02d}",
            translation=keys.translation[0, b].tolist(),
            rotation=keys.rotation[0, b].tolist(),
        )
        bones.append(builder.add_node(node))
    hidden = None if segment.start == 0 else [0.0, 0.0, 0.0]
    switch = builder.add_node(gl.Node(name=f"{name}_shown", children=bones, scale=hidden))  # the root joint
    unbind = np.tile(np.eye(4), (rig.bones + 1, 1, 1))  # (1 + B, 4, 4) inverse bind matrices
    unbind[1:, :3, 3] = -keys.centres  # a bone's: the translation by -c_b; the root's: identity
    skin = gl.Skin(
        name=name,
        inverseBindMatrices=builder.accessor(unbind.transpose(0, 2, 1).reshape(-1, 16)),  # column-major
        joints=[switch, *bones],
        skeleton=switch,
    )
    builder.gltf.skins.append(skin)
    mesh = builder.add_mesh(frame, name)
    if mesh is not None:
        source = frame.source_vertex if isinstance(frame, TexturedMesh) else np.arange(len(rig.rest))
        bone, weight = _influences(rig)
        attributes = builder.gltf.meshes[mesh].primitives[0].attributes
        attributes.JOINTS_0 = builder.accessor(bone[source], gl.ARRAY_BUFFER)
        attributes.WEIGHTS_0 = builder.accessor(weight[source], gl.ARRAY_BUFFER)
        builder.add_node(gl.Node(name=name, mesh=mesh, skin=len(builder.gltf.skins) - 1), root=True)

    times, visible = frame_keys(segment.start, count, fps, segment.stop)
    add_channel(builder, animation, switch, "scale", times, np.repeat(visible[:, None], 3, axis=1))  # (K, 3)
    keyed = builder.accessor((segment.start + np.arange(len(rig.transforms), dtype=np.float32)) / fps, bounds=True)
    for b, joint in enumerate(bones):
        add_channel(builder, animation, joint, "translation", keyed, keys.translation[:, b], gl.ANIM_LINEAR)
        add_channel(builder, animation, joint, "rotation", keyed, keys.rotation[:, b], gl.ANIM_LINEAR)
    return switch


def _influences(rig: Rig) -> tuple[np.ndarray, np.ndarray]:
    """The rig's bones and weights as JOINTS_0 (V, 4) uint8 / uint16 indices of the skin's joints (bone b is joint
    b + 1) and WEIGHTS_0 (V, 4) float32 (rows sum to 1 in float32; unused slots: joint 0, weight 0)."""
    slots = min(rig.joints.shape[1], INFLUENCES)
    order = np.argsort(-rig.weights, axis=1, kind="stable")[:, :slots]  # the largest, if a rig has more
    bone = np.zeros((len(rig.rest), INFLUENCES), np.uint8 if rig.bones < 256 else np.uint16)
    weight = np.zeros((len(rig.rest), INFLUENCES), np.float64)
    bone[:, :slots] = np.take_along_axis(rig.joints, order, axis=1) + 1  # joint 0 is the root (the switch)
    weight[:, :slots] = np.take_along_axis(rig.weights, order, axis=1)
    weight /= weight.sum(axis=1, keepdims=True)
    weight = weight.astype(np.float32)
    weight[:, 0] = 1.0 - weight[:, 1:].sum(axis=1, dtype=np.float32)  # the sum exact in float32, as readers check it
    bone[weight == 0] = 0  # an unused slot names joint 0, as the glTF validator asks
    return bone, weight
