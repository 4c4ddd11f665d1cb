"""O-Voxel sequences ↔ `SparseTensor` (one frame per O-Voxel), the form the networks consume and produce."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from helix4d.errors import InputError
from helix4d.ovoxel.representation import (
    GEOMETRY_CHANNELS,
    MATERIAL_CHANNELS,
    ORIENTED_GEOMETRY_CHANNELS,
    OVoxel,
)
from helix4d.sparse import SparseTensor

Features = Literal["geometry", "material", "all"]


def feature_channels(features: Features, oriented: bool = False) -> int:
    """Channel count C of `ovoxels_to_sparse(..., features, oriented)`."""
    geometry = ORIENTED_GEOMETRY_CHANNELS if oriented else GEOMETRY_CHANNELS
    return {"geometry": geometry, "material": MATERIAL_CHANNELS, "all": geometry + MATERIAL_CHANNELS}[features]


def ovoxels_to_sparse(frames: Sequence[OVoxel], features: Features = "all", oriented: bool = False) -> SparseTensor:
    """One sequence: frame i holds frames[i]'s voxels with feats geometry (7, or 10 with edge signs when
    `oriented`), material (6), or both concatenated in that order ("all")."""
    if not frames:
        raise InputError("need at least one O-Voxel frame")
    if len({f.resolution for f in frames}) != 1:
        raise InputError(f"all frames must share one resolution, got {sorted({f.resolution for f in frames})}")
    feature_channels(features, oriented)  # validates the name
    feats = []
    for f in frames:
        parts = []
        if features in ("geometry", "all"):
            parts.append(f.geometry_features(oriented=oriented))
        if features in ("material", "all"):
            parts.append(f.material_features())
        feats.append(torch.from_numpy(np.concatenate(parts, axis=1)))  # (n_f, C)
    coords = [torch.from_numpy(f.coords.astype(np.int64)) for f in frames]
    return SparseTensor.from_frames(coords, feats)


def sparse_to_ovoxels(
    st: SparseTensor, resolution: int, features: Features = "all", like: Sequence[OVoxel] | None = None
) -> list[OVoxel]:
    """Inverse of `ovoxels_to_sparse`, one O-Voxel per frame of all sequences in `st`.

    The channel count tells whether geometry carries edge signs. With features="material", the geometry
    comes from `like` (the same frames' O-Voxels with the same coords, e.g. the decoded geometry stage);
    with "geometry", material defaults to grey matte.
    """
    c = st.num_channels
    if features == "material":
        if like is None or len(like) != st.num_frames:
            raise InputError("features='material' needs `like`: the O-Voxels holding each frame's geometry")
        if c != MATERIAL_CHANNELS:
            raise InputError(f"material features must have {MATERIAL_CHANNELS} channels, got {c}")
    geometry_c = c - MATERIAL_CHANNELS if features == "all" else c
    if features != "material" and geometry_c not in (GEOMETRY_CHANNELS, ORIENTED_GEOMETRY_CHANNELS):
        raise InputError(f"{c} channels do not match features={features!r}")
    out = []
    for i in range(st.num_frames):
        fr = st.frame(i)
        coords, feats = fr.coords[:, 1:], fr.feats.detach().float().cpu()
        if features == "material":
            ref = like[i]
            if ref.coords.shape[0] != coords.shape[0] or not np.array_equal(ref.coords, coords.cpu().numpy()):
                raise InputError(f"frame {i}: `like` coords differ from the sparse tensor's coords")
            out.append(dataclasses.replace(ref, attrs=np.clip(feats.numpy(), 0.0, 1.0)))
            continue
        material = feats[:, geometry_c:] if features == "all" else None
        out.append(OVoxel.from_features(resolution, coords, feats[:, :geometry_c], material))
    return out
