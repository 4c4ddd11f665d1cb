"""O-Voxels (docs/design.md §4): sparse near-surface voxels with dual vertices, edge flags and PBR attributes.

vox = mesh_to_ovoxel(load_mesh("in.glb"), resolution=256)
mesh = ovoxel_to_mesh(vox)            # dual contouring, per-vertex PBR
"""

from helix4d.ovoxel.attributes import set_vertex_pbr, surface_attributes, vertex_pbr
from helix4d.ovoxel.decode import dual_contour, ovoxel_to_mesh
from helix4d.ovoxel.encode import EncodeConfig, mesh_to_ovoxel
from helix4d.ovoxel.mesh_input import load_mesh
from helix4d.ovoxel.representation import OVoxel

__all__ = [
    "EncodeConfig",
    "OVoxel",
    "dual_contour",
    "load_mesh",
    "mesh_to_ovoxel",
    "ovoxel_to_mesh",
    "set_vertex_pbr",
    "surface_attributes",
    "vertex_pbr",
]
