"""O-Voxel → mesh by dual contouring, written in torch so the same code runs on CPU and GPU."""

from __future__ import annotations

import numpy as np
import torch
import trimesh
from torch import Tensor

from helix4d.ovoxel.attributes import set_vertex_pbr
from helix4d.ovoxel.representation import QUAD_OFFSETS, OVoxel


def ovoxel_to_mesh(ovoxel: OVoxel, device: str | torch.device = "cpu") -> trimesh.Trimesh:
    """Mesh the O-Voxel: one quad per crossed edge through the dual vertices of the 4 voxels around it.

    A quad is skipped when one of its 4 voxels is missing, which is what keeps open boundaries open; nothing is
    merged or smoothed, so open sheets stay single, inner surfaces and separate parts survive. Quads face the
    direction stored in `edge_sign`; for un-oriented O-Voxels each connected piece is oriented consistently by
    propagation instead. Only voxels used by a face become vertices; they carry the voxel's attributes in the
    project's per-vertex PBR convention (vertex_colors RGBA uint8, vertex_attributes metallic/roughness).
    """
    t = ovoxel.to_torch(device)
    verts, faces, used = dual_contour(t["coords"], t["dual"], t["edges"], t["edge_sign"], t["split"], ovoxel.resolution)
    mesh = trimesh.Trimesh(verts.cpu().numpy().astype(np.float64), faces.cpu().numpy(), process=False)
    if not ovoxel.oriented and len(mesh.faces):
        trimesh.repair.fix_winding(mesh)
    return set_vertex_pbr(mesh, ovoxel.attrs[used.cpu().numpy()])


def dual_contour(
    coords: Tensor, dual: Tensor, edges: Tensor, edge_sign: Tensor, split: Tensor, resolution: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Dual contouring core on tensors (any device).

    coords (N, 3) int64, dual (N, 3) float, edges / edge_sign (N, 3) bool, split (N,) float.
    Returns vertices (V, 3) float32 in unit-cube coordinates, faces (F, 3) int64 and used (V,) int64, the
    voxel row of each vertex.
    """
    r, dev = resolution, coords.device
    if coords.shape[0] == 0:
        return torch.zeros(0, 3, device=dev), torch.zeros(0, 3, dtype=torch.int64, device=dev), coords[:, 0]
    key = (coords[:, 0] * r + coords[:, 1]) * r + coords[:, 2]  # (N,)
    sorted_key, order = torch.sort(key)
    row, axis = torch.nonzero(edges, as_tuple=True)  # (E,), (E,) crossed edges
    ring = coords[row][:, None, :] + torch.as_tensor(QUAD_OFFSETS, device=dev)[axis]  # (E, 4, 3)
    inside = ((ring >= 0) & (ring < r)).all(dim=2)  # (E, 4)
    ring_key = (ring[..., 0] * r + ring[..., 1]) * r + ring[..., 2]  # (E, 4)
    pos = torch.searchsorted(sorted_key, ring_key).clamp(max=key.shape[0] - 1)
    found = inside & (sorted_key[pos] == ring_key)
    keep = found.all(dim=1)
    quad = order[pos[keep]]  # (Q, 4) voxel rows, counter-clockwise seen from +axis
    facing_plus = edge_sign[row[keep], axis[keep]]  # (Q,)

    w = split[quad]  # (Q, 4)
    diag02 = (w[:, 0] + w[:, 2]) >= (w[:, 1] + w[:, 3])
    a = torch.where(diag02[:, None], quad[:, [0, 1, 2]], quad[:, [0, 1, 3]])
    b = torch.where(diag02[:, None], quad[:, [0, 2, 3]], quad[:, [1, 2, 3]])
    tri = torch.stack([a, b], dim=1)  # (Q, 2, 3)
    tri = torch.where(facing_plus[:, None, None], tri, tri[..., [0, 2, 1]]).reshape(-1, 3)  # (2Q, 3)

    is_used = torch.zeros(coords.shape[0], dtype=torch.bool, device=dev)
    is_used[tri.reshape(-1)] = True
    used = torch.nonzero(is_used)[:, 0]  # (V,) voxel rows that become vertices
    faces = (torch.cumsum(is_used, 0) - 1)[tri]  # (2Q, 3) vertex ids
    verts = (coords[used].to(torch.float32) + dual[used].to(torch.float32)) / r - 0.5  # (V, 3)
    return verts, faces, used
