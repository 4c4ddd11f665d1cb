"""TRELLIS.2's flexible dual grid ↔ our `OVoxel`: its decoders feed our meshing and export unchanged, and our
data feeds its encoders for fine-tuning.

The two formats carry the same quads with two conventions (TRELLIS.2: `o_voxel.convert.
flexible_dual_grid_to_mesh`):

- TRELLIS.2 flags, on voxel c and axis a, the grid edge along a at c's *max* corner in the other two axes; we
  flag the edge that starts at a voxel's *min* corner. The same edge is ours on voxel c + (1 − e_a), which is
  one of the 4 voxels around it: a quad exists in both formats exactly when all 4 voxels do.
- TRELLIS.2 cuts a quad along diagonal 0–2 when w0·w2 > w1·w3 (w = softplus quad_lerp); we compare sums,
  so the split weight we store is log w.
- Its dual vertices may leave their voxel by the decoder's margin (0.5): kept as they are, not clamped.
- No orientation is stored; `ovoxel_to_mesh` orients each connected piece (TRELLIS.2 unifies orientations
  at export too).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from helix4d.ovoxel.representation import MATERIAL_CHANNELS, OVoxel
from helix4d.sparse import frame_coords
from helix4d.sparse.conv import row_index

AXIS_SHIFT = torch.ones(3, 3, dtype=torch.int64) - torch.eye(3, dtype=torch.int64)  # row a = 1 − e_a


def _move_flags(coords: Tensor, flags: Tensor, sign: int) -> Tensor:
    """Each flag (voxel c, axis a) moved to voxel c + sign·(1 − e_a); flags whose voxel is absent are dropped
    (no quad can use them: it needs all 4 voxels around the edge)."""
    row, axis = flags.nonzero(as_tuple=True)
    target = coords[row] + sign * AXIS_SHIFT.to(coords.device)[axis]  # (E, 3)
    at = row_index(frame_coords([target]), frame_coords([coords]))  # (E,) -1 where that voxel is absent
    moved = torch.zeros_like(flags)
    moved[at[at >= 0], axis[at >= 0]] = True
    return moved


def edges_from_trellis2(coords: Tensor, intersected: Tensor) -> Tensor:
    """TRELLIS.2 `intersected` (N, 3) bool on voxels (N, 3) -> our edge flags (N, 3) bool on the same voxels."""
    return _move_flags(coords, intersected, +1)


def edges_to_trellis2(coords: Tensor, edges: Tensor) -> Tensor:
    """Our edge flags (N, 3) -> TRELLIS.2's `intersected` (N, 3) on the same voxels."""
    return _move_flags(coords, edges, -1)


def trellis2_shape_inputs(ovoxel: OVoxel) -> Tensor:
    """(N, 6) input of TRELLIS.2's shape encoder: dual vertex − 0.5, intersected − 0.5 (its
    `FlexiDualGridVaeEncoder`)."""
    coords = torch.from_numpy(ovoxel.coords.astype(np.int64))
    intersected = edges_to_trellis2(coords, torch.from_numpy(ovoxel.edges))
    return torch.cat([torch.from_numpy(ovoxel.dual) - 0.5, intersected.float() - 0.5], 1)


def trellis2_material_inputs(ovoxel: OVoxel) -> Tensor:
    """(N, 6) input of TRELLIS.2's texture encoder: base colour, metallic, roughness, alpha scaled to [-1, 1]."""
    return torch.from_numpy(ovoxel.attrs) * 2 - 1


def ovoxel_from_trellis2(resolution: int, coords: Tensor, features: Tensor, attrs: Tensor | None = None) -> OVoxel:
    """One frame of a TRELLIS.2 shape decoder: coords (N, 3), features (N, 7) = dual vertex (3, voxel-local),
    intersected logits (3), quad_lerp (1, ≥ 0); attrs (N, 6) PBR in [0, 1] or None (grey)."""
    coords, features = coords.long().cpu(), features.float().cpu()
    if attrs is None:
        attrs = torch.tensor([[0.5, 0.5, 0.5, 0.0, 1.0, 1.0]]).expand(coords.shape[0], MATERIAL_CHANNELS)
    edges = edges_from_trellis2(coords, features[:, 3:6] > 0)
    order = np.lexsort(coords.numpy().T[::-1])  # OVoxel keeps voxels sorted by x, then y, then z
    return OVoxel(
        resolution=resolution,
        coords=coords.numpy()[order],
        dual=features[:, :3].numpy()[order],
        edges=edges.numpy()[order],
        edge_sign=np.zeros((coords.shape[0], 3), bool),
        split=torch.log(features[:, 6]).numpy()[order],
        attrs=attrs.float().cpu().clamp(0, 1).numpy()[order],
        oriented=False,
    )
