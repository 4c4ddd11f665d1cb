"""Topology segments: the clip cut into runs of frames over which the surface keeps its topology.

Inside a segment one vertex set can move through every frame (`helix4d.export.tracking`); a split, a merge, a hole
opening or closing starts a new segment. A frame's topology is its `TopologySignature`:

- parts: connected components, where components closer than `gap` count as one part, and components of less than
  `min_part` of the largest one's area do not count. These are the geometric checks that keep noise from cutting:
  two lobes that are about to split, or touch through one stray voxel, are the same part until a real gap opens
  between them, and a generated frame's specks come and go from frame to frame (on the shipped examples a frame
  holds up to 8 of 0.5-5 % of the object's area). Tracking still holds every frame to the per-frame mesh within
  its Chamfer bound, so a part that matters and is missed cuts there;
- euler: the Euler characteristic V - E + F, used only when the frame is a 2-manifold (every edge has at most two
  faces). A generated dual mesh is rarely manifold, and its χ then changes with every speck of noise; such frames
  are compared by their parts alone, and a change that the parts miss shows up as a tracking failure instead.

A change of signature cuts the clip unless the old signature comes back within `blip_frames` frames, so a flicker (a
part that touches for one frame) does not split a segment in three, while a quick run of real events (one body
into two, then three, a frame apart) is cut at every one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from helix4d.errors import InputError
from helix4d.export.cleanup import vertex_components


@dataclass(frozen=True)
class SegmentConfig:
    """gap: distance (unit-cube units) below which two components count as one part (1.5 voxels at R = 32).
    min_part: components with less than this share of the largest component's area are not parts.
    blip_frames: a change after which the old signature returns within this many frames is noise (0: every change
    cuts)."""

    gap: float = 1.5 / 32
    min_part: float = 0.05
    blip_frames: int = 1

    def __post_init__(self) -> None:
        if self.gap < 0.0 or self.blip_frames < 0 or not 0.0 <= self.min_part < 1.0:
            raise InputError(
                f"need gap >= 0, 0 <= min_part < 1 and blip_frames >= 0, got {self.gap}, {self.min_part}, "
                f"{self.blip_frames}"
            )


@dataclass(frozen=True)
class TopologySignature:
    """parts: components (after merging those closer than the gap); euler: χ of a manifold frame, else None."""

    parts: int
    euler: int | None

    def same_as(self, other: TopologySignature) -> bool:
        """Equal parts, and equal χ where both frames have one."""
        if self.parts != other.parts:
            return False
        return self.euler is None or other.euler is None or self.euler == other.euler


@dataclass(frozen=True)
class Segment:
    """Frames [start, stop) sharing one topology."""

    start: int
    stop: int
    signature: TopologySignature

    @property
    def frames(self) -> range:
        return range(self.start, self.stop)


def topology_signature(
    mesh: trimesh.Trimesh, gap: float = SegmentConfig.gap, min_part: float = SegmentConfig.min_part
) -> TopologySignature:
    """The topology of one frame (see the module docstring), of its components of at least `min_part` of the
    largest one's area; an empty frame has no parts."""
    if len(mesh.faces) == 0:
        return TopologySignature(0, None)
    _, labels = vertex_components(mesh)
    faces = np.asarray(mesh.faces)
    face_label = labels[faces[:, 0]]  # (F,)
    area = np.bincount(face_label, weights=mesh.area_faces, minlength=labels.max() + 1)  # per component
    faces = faces[area[face_label] >= min_part * area.max()]  # the parts' faces
    used = np.unique(faces)
    parts = _merge_close(np.asarray(mesh.vertices)[used], labels[used], gap)
    _, edge_faces = np.unique(np.sort(trimesh.geometry.faces_to_edges(faces), axis=1), axis=0, return_counts=True)
    manifold = bool((edge_faces <= 2).all())
    euler = len(used) - len(edge_faces) + len(faces) if manifold else None
    return TopologySignature(parts, euler)


def topology_segments(meshes: Sequence[trimesh.Trimesh], config: SegmentConfig = SegmentConfig()) -> list[Segment]:
    """Cut the clip where its topology changes (unless the change is a blip of at most `config.blip_frames`
    frames); the segments cover all frames in order."""
    if len(meshes) == 0:
        raise InputError("topology_segments needs at least one frame")
    signatures = [topology_signature(m, config.gap, config.min_part) for m in meshes]
    segments, start = [], 0
    current = signatures[0]
    for k in range(1, len(signatures)):
        if signatures[k].same_as(current):
            continue
        if not any(s.same_as(current) for s in signatures[k + 1 : k + 1 + config.blip_frames]):
            segments.append(Segment(start, k, current))
            start, current = k, signatures[k]
    segments.append(Segment(start, len(signatures), current))
    return segments


def _merge_close(points: np.ndarray, labels: np.ndarray, gap: float) -> int:
    """How many groups remain when components (labels (N,) of points (N, 3)) closer than `gap` are joined."""
    ids = np.unique(labels)
    if len(ids) <= 1 or gap <= 0.0:
        return len(ids)
    parent = {int(i): int(i) for i in ids}

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    trees = {int(i): cKDTree(points[labels == i]) for i in ids}
    for a in trees:
        for b in trees:
            if a < b and root(a) != root(b):
                distance, _ = trees[a].query(points[labels == b], distance_upper_bound=gap)
                if np.isfinite(distance).any():
                    parent[root(b)] = root(a)
    return len({root(int(i)) for i in ids})
