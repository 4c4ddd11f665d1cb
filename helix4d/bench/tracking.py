"""How far tracked vertices slide: `track_clip` on ground-truth meshes whose vertex trajectories are known.

    OMP_NUM_THREADS=1 python -m helix4d.bench.tracking                       # the default TrackingConfig
    OMP_NUM_THREADS=1 python -m helix4d.bench.tracking --set rigidity=1 --set refine=0

The procedural world's rigid and articulated sequences (`helix4d.data.synthetic`) keep one topology through the clip,
so every vertex's true position in every frame is known; a still object is one mesh repeated. The meshes are
subdivided first (every triangle's longest edge at most `--max-edge` voxels, all frames alike, so the subdivided
vertices move with their part), because the primitives' long triangles are unlike the dense surfaces the tracker
meets in generated clips. Each sequence is tracked from its first frame as one topology segment, and the tracked
vertices are compared with the true ones. Prints one Markdown row a sequence, in voxels of R = 32:

- drift: distance of each tracked vertex to its true position (mean and max over frames 1.. and vertices): the
  slide that rigid bones cannot follow;
- surface: distance of each tracked vertex to its frame's true surface (mean and max): how well the frame is fitted;
- pieces: segments the tracker cut the clip into (1: it never lost the surface), and the seconds `track_clip` took.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import trimesh

from helix4d.data.synthetic import build_frames, sample_scene
from helix4d.export.sampling import SurfaceQuery
from helix4d.export.segments import Segment, topology_signature
from helix4d.export.tracking import TrackedSegment, TrackingConfig, track_clip

R = 32  # the O-Voxel grid the distances are written in
# (name, kind, seed): the rig tests' sequences (tests/test_rig.py) and the held-out ones of docs/rig.md
SEQUENCES = [
    ("arm", "articulated", 0),
    ("door", "articulated", 1),
    ("lid", "articulated", 11),
    ("arm-100022", "articulated", 100022),
    ("one-body", "rigid", 1),
    ("two-bodies", "rigid", 4),
    ("body-100023", "rigid", 100023),
]


def subdivided(meshes: Sequence[trimesh.Trimesh], max_edge: float) -> list[trimesh.Trimesh]:
    """The frames of one topology with every triangle split at its edges' midpoints until its longest edge (in
    frame 0) is at most `max_edge`; each frame's new vertices are the midpoints of its own, so they move rigidly
    with their part. Only long triangles are split, so T-junctions remain: the tracker does not mind."""
    vertices, faces = np.asarray(meshes[0].vertices), np.asarray(meshes[0].faces)
    others = {str(k): np.asarray(m.vertices) for k, m in enumerate(meshes[1:], start=1)}
    for _ in range(12):
        edges = np.linalg.norm(vertices[faces] - vertices[np.roll(faces, 1, axis=1)], axis=2).max(axis=1)  # (F,)
        long = np.flatnonzero(edges > max_edge)
        if len(long) == 0:
            break
        vertices, faces, others = trimesh.remesh.subdivide(vertices, faces, long, vertex_attributes=others)
    frames = [vertices, *(others[str(k)] for k in range(1, len(meshes)))]
    return [trimesh.Trimesh(v, faces, process=False) for v in frames]


def still(frames: int) -> list[trimesh.Trimesh]:
    """A capsule that does not move: any vertex motion is drift."""
    capsule = trimesh.creation.capsule(0.5, 0.2, count=[24, 24])
    return [capsule.copy() for _ in range(frames)]


@dataclass
class Drift:
    """One sequence's figures, in voxels of R (see the module docstring)."""

    name: str
    vertices: int
    pieces: int
    drift_mean: float
    drift_max: float
    surface_mean: float
    surface_max: float
    seconds: float


def measure(name: str, meshes: Sequence[trimesh.Trimesh], config: TrackingConfig) -> Drift:
    """Track `meshes` (one topology, true vertex positions) as one segment; drift and surface fit in voxels."""
    segment = Segment(0, len(meshes), topology_signature(meshes[0]))
    clock = time.perf_counter()
    tracked: list[TrackedSegment] = track_clip(meshes, [segment], config)
    seconds = time.perf_counter() - clock
    drift, surface = [], []
    for piece in tracked:  # a piece starts from the true mesh of its first frame: drift restarts there
        for k in range(piece.start + 1, piece.stop):
            moved = piece.positions[k - piece.start].astype(np.float64)  # (V, 3)
            drift.append(np.linalg.norm(moved - np.asarray(meshes[k].vertices), axis=1))
            surface.append(np.linalg.norm(SurfaceQuery(meshes[k]).closest(moved)[0] - moved, axis=1))
    drift_all, surface_all = R * np.concatenate(drift), R * np.concatenate(surface)
    return Drift(
        name,
        len(meshes[0].vertices),
        len(tracked),
        float(drift_all.mean()),
        float(drift_all.max()),
        float(surface_all.mean()),
        float(surface_all.max()),
        seconds,
    )


def truths(frames: int, max_edge: float) -> list[tuple[str, list[trimesh.Trimesh]]]:
    """The sequences measured: the procedural ones subdivided, and the still capsule."""
    out = [(n, subdivided(build_frames(sample_scene(seed, kind, frames)), max_edge)) for n, kind, seed in SEQUENCES]
    return [*out, ("still-capsule", still(frames))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--max-edge", type=float, default=2.0, help="longest triangle edge, in voxels of R = 32")
    parser.add_argument("--only", default="", help="comma-separated sequence names (default: all)")
    parser.add_argument("--set", action="append", default=[], help="a TrackingConfig field, key=value")
    args = parser.parse_args()
    kinds = {f.name: f.type for f in dataclasses.fields(TrackingConfig)}
    overrides = {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = float(value) if kinds[key] in ("float", float) else int(value)
    config = TrackingConfig(**overrides)
    print(f"TrackingConfig({', '.join(f'{k}={v}' for k, v in overrides.items())}), {args.frames} frames")
    print("| sequence | vertices | pieces | drift mean / max | surface mean / max | track_clip s |")
    print("|---|---|---|---|---|---|")
    rows = []
    only = set(filter(None, args.only.split(",")))
    for name, meshes in truths(args.frames, args.max_edge / R):
        if only and name not in only:
            continue
        row = measure(name, meshes, config)
        rows.append(row)
        print(
            f"| {row.name} | {row.vertices} | {row.pieces} | {row.drift_mean:.2f} / {row.drift_max:.2f} "
            f"| {row.surface_mean:.3f} / {row.surface_max:.2f} | {row.seconds:.1f} |",
            flush=True,
        )
    mean = {f: float(np.mean([getattr(r, f) for r in rows])) for f in ("drift_mean", "drift_max", "surface_mean")}
    print(
        f"| mean of rows | | | {mean['drift_mean']:.2f} / {mean['drift_max']:.2f} | {mean['surface_mean']:.3f} | "
        f"{sum(r.seconds for r in rows):.1f} |"
    )


if __name__ == "__main__":
    main()
