"""The `OVoxel` type: a sparse set of near-surface voxels that carries a mesh's geometry and PBR material.

Conventions (project-wide, docs/design.md §4): the object lives in the unit cube [-0.5, 0.5]^3; voxel i of a grid of
resolution R spans [-0.5 + i/R, -0.5 + (i+1)/R] on each axis, so voxel corners are the lattice points 0..R.
The grid edge that starts at lattice point c and runs along +x (+y, +z) is shared by the 4 voxels around it;
its crossing flag is stored on voxel c, the voxel whose min corner is c.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from helix4d.errors import InputError
from helix4d.sparse import SparseTensor

GEOMETRY_CHANNELS = 7  # dual (3) + edges (3) + split (1)
ORIENTED_GEOMETRY_CHANNELS = 10  # ... + edge_sign (3)
MATERIAL_CHANNELS = 6  # base colour RGB, metallic, roughness, alpha
ATTRIBUTE_NAMES = ("r", "g", "b", "metallic", "roughness", "alpha")

# The 4 voxels around the grid edge that starts at lattice point c along axis a are c + QUAD_OFFSETS[a]. With
# (a, b, c) cyclic the order is c, c - e_b, c - e_b - e_c, c - e_c: counter-clockwise seen from +a, so a quad
# through them in this order faces +a.
QUAD_OFFSETS = np.array(
    [
        [[0, 0, 0], [0, -1, 0], [0, -1, -1], [0, 0, -1]],  # x-edges: b = y, c = z
        [[0, 0, 0], [0, 0, -1], [-1, 0, -1], [-1, 0, 0]],  # y-edges: b = z, c = x
        [[0, 0, 0], [-1, 0, 0], [-1, -1, 0], [0, -1, 0]],  # z-edges: b = x, c = y
    ],
    dtype=np.int64,
)  # (3 axes, 4 voxels, xyz)


@dataclass
class OVoxel:
    """Active voxels of one frame at `resolution` R; all arrays have N rows, one per voxel.

    coords:    (N, 3) int32 voxel indices in [0, R-1], unique, sorted by x, then y, then z.
    dual:      (N, 3) float32 dual vertex offset inside the voxel in [0, 1]; world = -0.5 + (coords + dual) / R.
    edges:     (N, 3) bool, edges[i, a] = the surface crosses the grid edge from voxel i's min corner along +axis a
               an odd number of times (the exact condition that keeps dual contouring of closed surfaces closed).
    edge_sign: (N, 3) bool, for crossed edges: the surface normal points along +axis a there (sign of
               normal·axis, summed over the crossings). It orients the output quads; False where not crossed.
    split:     (N,) float32 quad-split weight in [0, 1]; a quad is cut along the diagonal whose two voxels have
               the larger summed weight (the encoder stores how much the surface bends in the voxel, so
               diagonals follow creases).
    attrs:     (N, 6) float32 in [0, 1]: base colour RGB (as stored in the source, i.e. sRGB-encoded), metallic,
               roughness, alpha.
    oriented:  whether edge_sign is meaningful (False when rebuilt from un-oriented network features).
    """

    resolution: int
    coords: np.ndarray
    dual: np.ndarray
    edges: np.ndarray
    edge_sign: np.ndarray
    split: np.ndarray
    attrs: np.ndarray
    oriented: bool = True

    def __post_init__(self) -> None:
        self.resolution = int(self.resolution)
        self.oriented = bool(self.oriented)
        self.coords = np.ascontiguousarray(self.coords, dtype=np.int32).reshape(-1, 3)
        n = self.coords.shape[0]
        self.dual = np.ascontiguousarray(self.dual, dtype=np.float32).reshape(n, 3)
        self.edges = np.ascontiguousarray(self.edges, dtype=bool).reshape(n, 3)
        self.edge_sign = np.ascontiguousarray(self.edge_sign, dtype=bool).reshape(n, 3)
        self.split = np.ascontiguousarray(self.split, dtype=np.float32).reshape(n)
        self.attrs = np.ascontiguousarray(self.attrs, dtype=np.float32).reshape(n, MATERIAL_CHANNELS)
        if self.resolution < 2:
            raise InputError(f"O-Voxel resolution must be >= 2, got {self.resolution}")
        if n and (self.coords.min() < 0 or self.coords.max() >= self.resolution):
            raise InputError(f"O-Voxel coords must lie in [0, {self.resolution - 1}]")

    def __len__(self) -> int:
        return self.coords.shape[0]

    # ---------------------------------------------------------------- features for the networks
    def geometry_features(self, oriented: bool = False) -> np.ndarray:
        """(N, 7) float32 = dual (3) + edges (3) + split (1); with `oriented`, (N, 10) adding edge_sign (3)."""
        parts = [self.dual, self.edges.astype(np.float32), self.split[:, None]]
        if oriented:
            parts.append(self.edge_sign.astype(np.float32))
        return np.concatenate(parts, axis=1)

    def material_features(self) -> np.ndarray:
        """(N, 6) float32 = base colour RGB, metallic, roughness, alpha."""
        return self.attrs.copy()

    @classmethod
    def from_features(
        cls,
        resolution: int,
        coords: np.ndarray | torch.Tensor,
        geometry: np.ndarray | torch.Tensor,
        material: np.ndarray | torch.Tensor | None = None,
    ) -> OVoxel:
        """Rebuild from network outputs: geometry (N, 7) or (N, 10), material (N, 6) or None (grey, matte).

        Edge flags and signs are thresholded at 0.5, dual/split/material clamped to [0, 1]. Without sign
        channels, `ovoxel_to_mesh` orients each connected piece by propagation instead.
        """
        coords, geometry = _np(coords), _np(geometry).astype(np.float32)
        if geometry.ndim != 2 or geometry.shape[1] not in (GEOMETRY_CHANNELS, ORIENTED_GEOMETRY_CHANNELS):
            raise InputError(f"geometry features must be (N, 7) or (N, 10), got {geometry.shape}")
        n = geometry.shape[0]
        if material is None:
            material = np.tile(np.array([[0.5, 0.5, 0.5, 0.0, 1.0, 1.0]], np.float32), (n, 1))
        material = _np(material).astype(np.float32)
        if material.shape != (n, MATERIAL_CHANNELS):
            raise InputError(f"material features must be ({n}, 6), got {material.shape}")
        edges = geometry[:, 3:6] > 0.5
        oriented = geometry.shape[1] == ORIENTED_GEOMETRY_CHANNELS
        sign = (geometry[:, 7:10] > 0.5) & edges if oriented else np.zeros_like(edges)
        return cls(
            resolution=resolution,
            coords=coords,
            dual=np.clip(geometry[:, 0:3], 0.0, 1.0),
            edges=edges,
            edge_sign=sign,
            split=np.clip(geometry[:, 6], 0.0, 1.0),
            attrs=np.clip(material, 0.0, 1.0),
            oriented=oriented,
        )

    # ---------------------------------------------------------------- derived values
    def positions(self) -> np.ndarray:
        """(N, 3) float32 dual vertex positions in unit-cube coordinates."""
        return ((self.coords + self.dual) / self.resolution - 0.5).astype(np.float32)

    def to_torch(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """All per-voxel arrays as tensors on `device` (coords int64, flags bool, the rest float32)."""
        return {
            "coords": torch.from_numpy(self.coords.astype(np.int64)).to(device),
            "dual": torch.from_numpy(self.dual).to(device),
            "edges": torch.from_numpy(self.edges).to(device),
            "edge_sign": torch.from_numpy(self.edge_sign).to(device),
            "split": torch.from_numpy(self.split).to(device),
            "attrs": torch.from_numpy(self.attrs).to(device),
        }

    # ---------------------------------------------------------------- files
    def save(self, path: str | Path) -> None:
        """Write a lossless compressed `.npz`."""
        np.savez_compressed(
            Path(path),
            resolution=np.int64(self.resolution),
            oriented=np.bool_(self.oriented),
            coords=self.coords,
            dual=self.dual,
            edges=self.edges,
            edge_sign=self.edge_sign,
            split=self.split,
            attrs=self.attrs,
        )

    @classmethod
    def load(cls, path: str | Path) -> OVoxel:
        """Read a file written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"O-Voxel file not found: {path}")
        try:
            with np.load(path) as z:
                arrays = {k: z[k] for k in ("coords", "dual", "edges", "edge_sign", "split", "attrs")}
                return cls(resolution=int(z["resolution"]), oriented=bool(z["oriented"]), **arrays)
        except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
            raise InputError(f"{path} is not an O-Voxel .npz written by OVoxel.save ({exc})") from exc


def _np(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def voxel_features(ovoxels: Sequence[OVoxel], feats: Sequence[np.ndarray | torch.Tensor]) -> SparseTensor:
    """One sequence's fine voxels with per-frame features (n_f, C), e.g. `geometry_features`: what the SC-VAE
    encoders take."""
    coords = [torch.from_numpy(v.coords.astype(np.int64)) for v in ovoxels]
    return SparseTensor.of_sequence(coords, torch.cat([torch.as_tensor(f) for f in feats]))
