"""Face budget: quadric simplification (fast-simplification) that keeps the per-vertex PBR convention.

Simplifying before unwrapping keeps xatlas and the bake fast and files small; the material is re-sampled from the
original surface (or from an O-Voxel) at the new vertices, so no colour is lost to vertex merging.
"""

from __future__ import annotations

import numpy as np
import trimesh

from helix4d.errors import InputError
from helix4d.export.sampling import AttributeFn, mesh_sampler
from helix4d.ovoxel import set_vertex_pbr


def simplify_mesh(mesh: trimesh.Trimesh, max_faces: int, attribute_fn: AttributeFn | None = None) -> trimesh.Trimesh:
    """`mesh` reduced to at most about `max_faces` triangles (returned unchanged when it already fits).

    The new vertices get their attributes from `attribute_fn`, default: the closest point of the original mesh.
    """
    if max_faces < 1:
        raise InputError(f"max_faces must be >= 1, got {max_faces}")
    if len(mesh.faces) <= max_faces:
        return mesh
    import fast_simplification

    points, faces = fast_simplification.simplify(
        np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64), target_count=max_faces
    )
    simple = trimesh.Trimesh(points, faces, process=False)
    simple.remove_unreferenced_vertices()
    sample = attribute_fn or mesh_sampler(mesh)
    return set_vertex_pbr(simple, sample(np.asarray(simple.vertices)))
