"""`export_asset`: a 4D asset (one mesh per frame) -> the files a user opens, in one folder.

```
OUT/
  frames/frame_0000.glb ...   one self-contained GLB per frame                              format "glb"
  animated.glb                one mesh per topology segment, morph targets per frame        format "animated"
  asset.usdc                  one time-sampled UsdGeom.Mesh (topology may change per frame) format "usdc"
  textures/asset_fNNNN_*.png  per-frame textures referenced by asset.usdc (textured mode only)
  asset.usdz                  asset.usdc + its textures in one package                      format "usdz"
  asset.abc                   Alembic cache: tracked vertices per segment, one sample a frame format "abc"
  rigged.glb                  a skeleton and skin weights per topology segment              format "rig"
  asset.fbx                   the rigged asset through Blender, textures embedded           format "fbx"
  preview.mp4                 input video | result (input camera, then one orbit)           format "preview"
```
Textured mode (`texture_size` set, the default): each frame is simplified to `max_faces` (if given), unwrapped
with xatlas and baked into base colour + alpha and metallic-roughness textures of texture_size² texels.
Vertex-colour mode (`texture_size=None`): files carry per-vertex colours (fast, no UVs). Before all of it, every
frame is cleaned (`clean_mesh`: floaters removed, small holes of closed surfaces capped, Taubin-smoothed) unless
`cleanup=None`. The animated GLB cuts the clip into topology segments and tracks one vertex set through each
(morph targets; `animated.py`), so it holds one mesh and one texture pair per segment; the rigged GLB and the FBX
fit bones and skin weights to each tracked segment (`rig.py`, `rigged.py`, `fbx.py`; docs/rig.md) and keep morph
targets where a rig misses its budget. Every file is written under a temporary name and renamed into place, so an
interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from helix4d.errors import InputError
from helix4d.export.alembic import require_alembic, write_alembic
from helix4d.export.animated import MorphSegment, write_animated_glb, write_segments_glb
from helix4d.export.bake import bake_textures
from helix4d.export.cleanup import CleanupConfig, clean_mesh
from helix4d.export.fbx import require_blender, write_fbx
from helix4d.export.glb import write_glb
from helix4d.export.preview import render_preview
from helix4d.export.rig import Rig, RigConfig, RigReport, rig_report, rig_segments
from helix4d.export.rigged import RiggedSegment, write_rigged_glb
from helix4d.export.sampling import AttributeFn, mesh_sampler
from helix4d.export.segments import SegmentConfig, topology_segments
from helix4d.export.simplify import simplify_mesh
from helix4d.export.surface import Frame, surface_arrays
from helix4d.export.tracking import TrackedSegment, TrackingConfig, track_clip
from helix4d.export.usd import UsdFrames, usd_writer
from helix4d.settings import TEXTURE_SIZE

# format -> what it writes (the layout above); `require_formats` checks the optional extras some of them need
FORMATS = {
    "glb": "frames/frame_NNNN.glb, one GLB per frame",
    "animated": "animated.glb, morph targets per topology segment",
    "rig": "rigged.glb, bones and skin weights per topology segment",
    "usdc": "asset.usdc",
    "usdz": "asset.usdz",
    "abc": "asset.abc, an Alembic cache (needs the alembic extra)",
    "fbx": "asset.fbx, the rigged asset through Blender (needs the blender extra)",
    "preview": "preview.mp4",
}
DEFAULT_FORMATS = ("glb", "animated", "usdc", "usdz", "preview")
_EXTRAS = {"abc": require_alembic, "fbx": require_blender}
_TRACKED = {"animated", "abc", "rig", "fbx"}  # the formats that play tracked segments
_RIGGED = {"rig", "fbx"}


def require_formats(formats: Collection[str]) -> None:
    """Raise `BackendUnavailableError` when one of `formats` needs an optional extra that is not installed (before
    any compute)."""
    for name in formats:
        if name in _EXTRAS:
            _EXTRAS[name]()


@dataclass
class SegmentReport:
    """One segment of the animated GLB: frames [start, stop), its vertex count and the largest Chamfer distance
    of its tracked frames to their own meshes."""

    start: int
    stop: int
    vertices: int
    max_cd: float


@dataclass
class ExportedFiles:
    """Paths written by `export_asset` (empty / None for formats not requested), the animated GLB's segments and
    the rigs fitted to them."""

    frames: list[Path] = field(default_factory=list)
    segments: list[SegmentReport] = field(default_factory=list)
    rigs: list[RigReport] = field(default_factory=list)
    animated: Path | None = None
    rigged: Path | None = None
    fbx: Path | None = None
    usdc: Path | None = None
    usdz: Path | None = None
    abc: Path | None = None
    preview: Path | None = None


def budget_frame(
    mesh: trimesh.Trimesh, max_faces: int | None = None, attribute_fn: AttributeFn | None = None
) -> tuple[trimesh.Trimesh, AttributeFn | None]:
    """`mesh` simplified to `max_faces` (if given) and where its material is to be read from afterwards: the
    original surface (or `attribute_fn`), since simplification merges vertices and their colours."""
    if not isinstance(mesh, trimesh.Trimesh):
        raise InputError(f"export needs trimesh.Trimesh frames, got {type(mesh).__name__}")
    if max_faces is None or len(mesh.faces) <= max_faces:
        return mesh, attribute_fn
    source = attribute_fn or mesh_sampler(mesh)
    return simplify_mesh(mesh, max_faces, source), source


def prepare_frame(
    mesh: trimesh.Trimesh,
    texture_size: int | None = TEXTURE_SIZE,
    max_faces: int | None = None,
    attribute_fn: AttributeFn | None = None,
) -> Frame:
    """One frame ready for the writers: simplified to `max_faces`, then textured (`texture_size` texels) or left
    vertex-coloured (`texture_size=None`). Without `attribute_fn`, a simplified frame's material is sampled from
    the original mesh's surface."""
    mesh, source = budget_frame(mesh, max_faces, attribute_fn)
    if len(mesh.faces) == 0 or texture_size is None:
        return mesh
    return bake_textures(mesh, source, size=texture_size)


def export_asset(
    meshes: Sequence[trimesh.Trimesh],
    out_dir: str | os.PathLike,
    fps: float,
    formats: Collection[str] = DEFAULT_FORMATS,
    texture_size: int | None = TEXTURE_SIZE,
    max_faces: int | None = None,
    attribute_fns: Sequence[AttributeFn | None] | None = None,
    input_frames: np.ndarray | None = None,
    input_box: tuple[int, int, int, int] | None = None,
    preview_size: int = 384,
    cleanup: CleanupConfig | None = CleanupConfig(),
    segments: SegmentConfig = SegmentConfig(),
    tracking: TrackingConfig | None = TrackingConfig(),
    rig: RigConfig = RigConfig(),
) -> ExportedFiles:
    """Write the folder layout of this module's docstring for `meshes` (one per frame, played at `fps`).

    formats:       any of `FORMATS`: "glb", "animated", "rig", "usdc", "usdz", "abc" (needs alembic3d), "fbx" (needs
                   bpy), "preview".
    attribute_fns: per frame, where to read the material for simplification and baking (e.g.
                   `ovoxel_sampler(ovoxel)` to bake the O-Voxel's own attributes); default: the mesh itself.
    input_frames:  (F_in, H, W, 3|4) uint8 input video shown beside the result in the preview.
    input_box:     (x0, y0, x1, y1) pixels of the object in input_frames: the preview then draws the result from
                   the input camera at the input's scale and place (`helix4d.export.preview`).
    cleanup:       surface clean-up applied to every frame first (`helix4d.export.cleanup`); None writes the
                   meshes as they are.
    segments, tracking: how the animated GLB cuts the clip into topology segments and tracks vertices through
                   each (`helix4d.export.segments`, `.tracking`); tracking=None writes one node per frame instead.
    rig:           the rigs' bone budget (`helix4d.export.rig`); its `resolution` is the asset's O-Voxel grid R, so
                   the budget is in voxels of that grid.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise InputError(f"unknown export formats {sorted(unknown)}: choose from {', '.join(FORMATS)}")
    require_formats(formats)
    if len(meshes) == 0:
        raise InputError("export_asset needs at least one mesh")
    if not fps > 0:
        raise InputError(f"fps must be > 0, got {fps}")
    if attribute_fns is not None and len(attribute_fns) != len(meshes):
        raise InputError(f"attribute_fns has {len(attribute_fns)} entries for {len(meshes)} meshes: give one per frame")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = ExportedFiles()
    if cleanup is not None:
        meshes = [clean_mesh(m, cleanup) for m in meshes]

    if set(formats) - {"preview"}:
        budgeted = [budget_frame(m, max_faces, fn) for m, fn in zip(meshes, attribute_fns or [None] * len(meshes))]
        simple = [m for m, _ in budgeted]
        tracked = None
        if set(formats) & _TRACKED and tracking is not None:
            tracked = track_clip(simple, topology_segments(simple, segments), tracking)
            files.segments = [SegmentReport(t.start, t.stop, len(t.template.vertices), max(t.cd)) for t in tracked]
        per_frame = set(formats) & {"glb", "usdc", "usdz"}
        animated = set(formats) & _TRACKED
        # the frames the animated writers need whole: each segment's first (or every frame, untracked)
        kept = set() if not animated else set(range(len(simple))) if tracked is None else {t.start for t in tracked}
        frames: dict[int, Frame] = {}
        with _usd_writer(out, formats, fps, texture_size, simple) as usd:
            for k in range(len(simple)) if per_frame else sorted(kept):  # one frame's textures held at a time
                frame = prepare_frame(budgeted[k][0], texture_size, attribute_fn=budgeted[k][1])
                if "glb" in formats:
                    files.frames.append(write_glb(frame, out / "frames" / f"frame_{k:04d}.glb"))
                if usd is not None:
                    usd.add(surface_arrays(frame))
                if k in kept:
                    frames[k] = frame
        if usd is not None:
            files.usdc = next((p for p in usd.written if p.suffix == ".usdc"), None)
            files.usdz = next((p for p in usd.written if p.suffix == ".usdz"), None)
        if "animated" in formats and tracked is None:
            files.animated = write_animated_glb([frames[k] for k in range(len(simple))], out / "animated.glb", fps)
        elif "animated" in formats:
            files.animated = write_segments_glb(_morph_segments(tracked, frames), out / "animated.glb", fps)
        if "abc" in formats:
            morphs = _morph_segments(tracked, frames) if tracked else [MorphSegment(k, f) for k, f in frames.items()]
            files.abc = write_alembic(morphs, out / "asset.abc", fps)
        if set(formats) & _RIGGED:
            rigs = rig_segments(tracked, rig) if tracked else []
            files.rigs = [rig_report(t, r, rig) for t, r in zip(tracked or [], rigs)]
            rigged = _rigged_segments(tracked, rigs, frames, rig)
            with tempfile.TemporaryDirectory(prefix="helix4d-rig-") as scratch:  # rigged.glb is FBX's source
                source = out / "rigged.glb" if "rig" in formats else Path(scratch) / "rigged.glb"
                written = write_rigged_glb(rigged, source, fps)
                files.rigged = written if "rig" in formats else None
                if "fbx" in formats:
                    files.fbx = write_fbx(written, out / "asset.fbx", fps, len(simple))
    if "preview" in formats:
        files.preview = render_preview(
            meshes, input_frames, out / "preview.mp4", fps, size=preview_size, input_box=input_box
        )
    return files


def _usd_writer(
    out: Path, formats: Collection[str], fps: float, texture_size: int | None, meshes: Sequence[trimesh.Trimesh]
) -> AbstractContextManager[UsdFrames] | AbstractContextManager[None]:
    """The USD writer of the formats asked for (asset.usdc, packed into asset.usdz too when both are), or none."""
    if "usdc" not in formats and "usdz" not in formats:
        return nullcontext()
    textured = texture_size is not None and any(len(m.faces) for m in meshes)  # empty frames stay untextured
    if "usdc" in formats:
        return usd_writer(out / "asset.usdc", fps, textured, out / "asset.usdz" if "usdz" in formats else None)
    return usd_writer(out / "asset.usdz", fps, textured)


def _rigged_segments(
    tracked: Sequence[TrackedSegment] | None,
    rigs: Sequence[Rig | None],
    frames: Mapping[int, Frame],
    config: RigConfig,
) -> list[RiggedSegment | MorphSegment]:
    """The rigged writers' view of the clip: a tracked segment whose rig fits its budget is rigged, any other one
    keeps its morph targets (untracked: one node per frame)."""
    if tracked is None:
        return [MorphSegment(k, frames[k]) for k in sorted(frames)]
    return [
        RiggedSegment(t.start, frames[t.start], r)
        if r is not None and r.fits(config)
        else _morph_segments([t], frames)[0]
        for t, r in zip(tracked, rigs)
    ]


def _morph_segments(tracked: Sequence[TrackedSegment], frames: Mapping[int, Frame]) -> list[MorphSegment]:
    """The writers' view of tracked segments: each shown by its first frame, prepared for export."""
    return [MorphSegment(t.start, frames[t.start], t.positions) for t in tracked]
