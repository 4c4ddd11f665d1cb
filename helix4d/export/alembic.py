"""Alembic cache (`.abc`, via the `alembic3d` bindings): the clip as one animated `OPolyMesh`, as film pipelines
read a simulation or a performance.

Archive layout: `/asset` (OXform) / `mesh` (OPolyMesh), one sample per frame on a uniform time sampling of 1 / fps
seconds starting at 0. Inside a topology segment the samples share one face list and move one vertex set (the
tracked vertices), so a renderer sees a deforming mesh with stable UVs; a new segment changes the topology
(Alembic's heterogeneous topology, which Blender's and Houdini's importers read). Each sample carries positions,
faces (Alembic winds them clockwise, so glTF's counter-clockwise triangles are reversed), UVs (`uv`, vertex scope,
textured frames; texture origin bottom-left, so v is flipped) and linear vertex colours (`Cd`, RGBA).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from helix4d.errors import BackendUnavailableError, InputError
from helix4d.export.animated import MorphSegment, written_positions
from helix4d.export.surface import surface_arrays
from helix4d.io.files import atomic_path
from helix4d.ovoxel.attributes import srgb_to_linear


def require_alembic() -> None:
    """Raise `BackendUnavailableError` unless the alembic3d bindings can be imported (checked before any compute)."""
    if importlib.util.find_spec("alembic3d") is None or importlib.util.find_spec("imath") is None:
        raise BackendUnavailableError("Alembic export (format abc) needs alembic3d: pip install 'helix4d[alembic]'")


def write_alembic(segments: Sequence[MorphSegment], path: str | os.PathLike, fps: float) -> Path:
    """Write consecutive `segments` (covering frames 0..F-1) as an Alembic archive at `path`, atomically."""
    require_alembic()
    import imath
    from alembic3d import Abc, AbcCoreAbstract, AbcGeom

    if len(segments) == 0:
        raise InputError("write_alembic needs at least one frame")
    if not fps > 0:
        raise InputError(f"fps must be > 0, got {fps}")
    with atomic_path(path) as tmp:
        archive = Abc.OArchive(str(tmp))
        sampling = archive.addTimeSampling(AbcCoreAbstract.TimeSampling(1.0 / fps, 0.0))
        xform = AbcGeom.OXform(archive.getTop(), "asset", sampling)
        mesh = AbcGeom.OPolyMesh(xform, "mesh", sampling)
        schema = mesh.getSchema()
        colours = AbcGeom.OC4fGeomParam(schema.getArbGeomParams(), "Cd", False, AbcGeom.GeometryScope.kVertexScope, 1)
        for segment in segments:
            s = surface_arrays(segment.frame)
            faces = imath.IntArrayFromBuffer(np.ascontiguousarray(s.faces[:, ::-1].reshape(-1), np.int32))
            counts = imath.IntArrayFromBuffer(np.full(len(s.faces), 3, np.int32))
            uv = None
            if s.uv is not None:
                flipped = np.stack([s.uv[:, 0], 1.0 - s.uv[:, 1]], axis=1).astype(np.float32)
                uv = AbcGeom.OV2fGeomParamSample(imath.V2fArrayFromBuffer(flipped), AbcGeom.GeometryScope.kVertexScope)
            rgba = np.concatenate([srgb_to_linear(s.rgba[:, :3]), s.rgba[:, 3:]], axis=1).astype(np.float32)
            colour = AbcGeom.OC4fGeomParamSample(_colour_array(imath, rgba), AbcGeom.GeometryScope.kVertexScope)
            for positions in written_positions(segment):  # (V, 3) per frame of the segment
                points = imath.V3fArrayFromBuffer(np.ascontiguousarray(positions, np.float32))
                sample = (
                    AbcGeom.OPolyMeshSchemaSample(points, faces, counts, uv)
                    if uv is not None
                    else AbcGeom.OPolyMeshSchemaSample(points, faces, counts)
                )
                schema.set(sample)
                colours.set(colour)
        del colours, schema, mesh, xform, archive  # the archive is written when its last reference goes
    return Path(path)


def _colour_array(imath, rgba: np.ndarray):
    """imath.C4fArray of (V, 4) colours (the bindings have no buffer constructor for colour arrays)."""
    out = imath.C4fArray(len(rgba))
    for i, (r, g, b, a) in enumerate(rgba.tolist()):
        out[i] = imath.Color4f(r, g, b, a)
    return out
