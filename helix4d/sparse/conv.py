"""Sparse 3D convolution in pure PyTorch (CPU and GPU, with autograd).

spconv's CPU build has no backward and torch-scatter has no wheel for our torch, so neighbour maps are built
with sorted integer keys + `torch.searchsorted`, and a 3×3×3 convolution is one gather followed by one matmul.
Voxels are addressed by `coords (N, 4) int64 = [frame, x, y, z]` with frames numbered across the whole batch
(`SparseTensor.batch_coords`; for one sequence the same as `helix4d.sparse.frame_coords`), so convolutions never
mix voxels of two frames, of one clip or of two.
Weights use the TRELLIS layout `[C_out, 3, 3, 3, C_in]`.

Backends of the 3×3×3 convolution (the neighbour maps are always built here, in PyTorch): "reference", the gather +
matmul below, runs everywhere and is what the others are tested against; "ocnn", ocnn's fused Triton gather-GEMM
kernels (`helix4d.sparse.ocnn_conv`, the `gpu` extra), which never materialise the gathered copy.
"auto" (the default) takes ocnn for CUDA/ROCm tensors when it imports, the reference otherwise (CPU, MPS).
`HELIX4D_SPARSE_CONV=reference` (or `ocnn`) forces one for a process, `with conv_backend("reference"):` for a block.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from helix4d.errors import BackendUnavailableError, InputError
from helix4d.sparse.ocnn_conv import ocnn_submconv, ocnn_unavailable

OFFSETS_3X3X3 = torch.stack(torch.meshgrid(*(torch.arange(-1, 2),) * 3, indexing="ij"), dim=-1).reshape(
    27, 3
)  # (27, 3), x-major like the weight's (3, 3, 3) axes
CHILD_OFFSETS = torch.stack(torch.meshgrid(*(torch.arange(0, 2),) * 3, indexing="ij"), dim=-1).reshape(8, 3)  # (8, 3)


def voxel_keys(coords: Tensor, extent: int) -> Tensor:
    """One int64 key per voxel; `extent` bounds every spatial coordinate (exclusive), 1 voxel of margin kept."""
    e = extent + 2
    c = coords.long()
    return ((c[:, 0] * e + (c[:, 1] + 1)) * e + (c[:, 2] + 1)) * e + (c[:, 3] + 1)


def lookup(keys_sorted: Tensor, order: Tensor, query: Tensor) -> Tensor:
    """Index of each query key in the original array, or -1 where absent. (M,) -> (M,)"""
    if keys_sorted.numel() == 0:
        return torch.full_like(query, -1)
    pos = torch.searchsorted(keys_sorted, query).clamp_(max=keys_sorted.numel() - 1)
    found = keys_sorted[pos] == query
    return torch.where(found, order[pos], torch.full_like(pos, -1))


def neighbour_map(coords: Tensor, offsets: Tensor = OFFSETS_3X3X3) -> Tensor:
    """For every voxel and offset, the index of the neighbouring active voxel or -1. (N, 4) -> (N, K)"""
    extent = int(coords[:, 1:].max().item()) + 2 if coords.numel() else 1
    keys = voxel_keys(coords, extent)
    keys_sorted, order = torch.sort(keys)
    shifted = coords[:, None, :].clone().repeat(1, offsets.shape[0], 1)  # (N, K, 4)
    shifted[..., 1:] += offsets.to(coords.device)
    query = voxel_keys(shifted.reshape(-1, 4), extent)
    return lookup(keys_sorted, order, query).view(coords.shape[0], offsets.shape[0])


CONV_BACKENDS = ("auto", "reference", "ocnn")
CONV_BACKEND_ENV = "HELIX4D_SPARSE_CONV"
_forced_backends: list[str] = []  # innermost `conv_backend` block last


def _checked_backend(name: str, where: str) -> str:
    if name not in CONV_BACKENDS:
        raise InputError(f"{where} must be one of {', '.join(CONV_BACKENDS)}; got {name!r}")
    return name


@contextmanager
def conv_backend(name: str) -> Iterator[None]:
    """Run the submanifold convolutions inside the block on `name` ("auto", "reference" or "ocnn"); for
    benchmarks and tests that compare the backends on one model."""
    _forced_backends.append(_checked_backend(name, "the sparse convolution backend"))
    try:
        yield
    finally:
        _forced_backends.pop()


def resolve_conv_backend(device: torch.device) -> str:
    """The backend a convolution on `device` runs: the innermost `conv_backend` block's, else
    $HELIX4D_SPARSE_CONV's, else "auto" (ocnn on CUDA/ROCm when it imports, else the reference)."""
    requested = _forced_backends[-1] if _forced_backends else None
    if requested is None:
        requested = _checked_backend(os.environ.get(CONV_BACKEND_ENV, "auto").strip() or "auto", CONV_BACKEND_ENV)
    if requested == "reference":
        return requested
    why_not = ocnn_unavailable() if device.type == "cuda" else f"ocnn's kernels need a CUDA or ROCm GPU, not {device}"
    if requested == "ocnn" and why_not:
        raise BackendUnavailableError(f"the ocnn sparse convolution cannot run: {why_not}; or use the reference")
    return "reference" if why_not else "ocnn"


def reference_submconv(feats: Tensor, weight: Tensor, bias: Tensor | None, neighbours: Tensor) -> Tensor:
    """The reference: gather every voxel's 27 neighbours, one matmul. feats (N, C_in), weight [C_out, 3, 3, 3,
    C_in], neighbours (N, 27) -> (N, C_out). Memory: an (N, 27·C_in) copy of the features."""
    padded = torch.cat([feats, feats.new_zeros(1, feats.shape[1])])  # (N+1, C_in); row N is "absent"
    idx = torch.where(neighbours < 0, feats.shape[0], neighbours)  # (N, 27)
    gathered = padded[idx].reshape(feats.shape[0], -1)  # (N, 27·C_in)
    out = gathered @ weight.reshape(weight.shape[0], -1).t()  # (N, C_out)
    return out if bias is None else out + bias


class SubMConv3d(nn.Module):
    """Submanifold 3×3×3 convolution: output voxels = input voxels; weight `[C_out, 3, 3, 3, C_in]`."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, 3, 3, 3, in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight.view(out_channels, -1), a=math.sqrt(5))

    def forward(self, feats: Tensor, neighbours: Tensor) -> Tensor:
        """feats (N, C_in), neighbours (N, 27) from `neighbour_map` -> (N, C_out), on the backend
        `resolve_conv_backend` picks for the device."""
        if feats.shape[0] and resolve_conv_backend(feats.device) == "ocnn":
            return ocnn_submconv(feats, self.weight, self.bias, neighbours)  # (N, C_out)
        return reference_submconv(feats, self.weight, self.bias, neighbours)  # (N, C_out)


def parent_index(coords: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Coarse voxels (×2 down) of `coords`: (parent coords (M, 4), parent of each voxel (N,), child slot (N,))."""
    parent = coords.clone()
    parent[:, 1:] = torch.div(coords[:, 1:], 2, rounding_mode="floor")
    parents, inverse = torch.unique(parent, dim=0, return_inverse=True)
    slot = ((coords[:, 1] % 2) * 4 + (coords[:, 2] % 2) * 2 + (coords[:, 3] % 2)).long()
    return parents, inverse, slot


def coarse_occupancy(fine: Tensor, levels: int, frames: int, resolution: int) -> Tensor:
    """Dense (F, 1, R_c, R_c, R_c) occupancy of the coarse voxels `levels` ×2-downsamplings above `fine` (N, 4):
    stage 1's target, whatever the architecture's grids."""
    coords = fine
    for _ in range(levels):
        coords = parent_index(coords)[0]
    occ = torch.zeros(frames, 1, resolution, resolution, resolution)
    occ[coords[:, 0], 0, coords[:, 1], coords[:, 2], coords[:, 3]] = 1.0
    return occ


def children_of(coords: Tensor) -> Tensor:
    """All 8 children (×2 up) of every voxel, ordered voxel-major then child slot. (M, 4) -> (8M, 4)"""
    child = coords[:, None, :].repeat(1, 8, 1)
    child[..., 1:] = child[..., 1:] * 2 + CHILD_OFFSETS.to(coords.device)
    return child.reshape(-1, 4)


class Downsample(nn.Module):
    """Strided 2×2×2 sparse convolution onto the occupied coarse voxels (one weight per child slot)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(8, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(8 * in_channels))

    def forward(self, feats: Tensor, coords: Tensor) -> tuple[Tensor, Tensor]:
        """feats (N, C_in), coords (N, 4) -> (coarse feats (M, C_out), coarse coords (M, 4))."""
        parents, inverse, slot = parent_index(coords)
        per_child = torch.bmm(feats[:, None, :], self.weight[slot]).squeeze(1)  # (N, C_out)
        out = per_child.new_zeros(parents.shape[0], per_child.shape[1]).index_add_(0, inverse, per_child)
        return out + self.bias, parents


class Upsample(nn.Module):
    """Subdivide every voxel into its 8 children with a per-slot linear map and an existence logit each.

    The decoder keeps only children that exist: the ground-truth set while training (teacher forcing),
    the children with a positive logit at inference. That learned pruning is how a coarse latent grid
    becomes the fine O-Voxel set.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.to_children = nn.Linear(in_channels, 8 * out_channels)
        self.to_exists = nn.Linear(in_channels, 8)
        self.out_channels = out_channels

    def forward(self, feats: Tensor, coords: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(M, C_in), (M, 4) -> children feats (8M, C_out), children coords (8M, 4), existence logits (8M,)."""
        child_feats = self.to_children(feats).reshape(-1, self.out_channels)  # (8M, C_out)
        return child_feats, children_of(coords), self.to_exists(feats).reshape(-1)


def row_index(query: Tensor, reference: Tensor) -> Tensor:
    """Index into `reference (N, 4)` of every row of `query (M, 4)`, -1 where absent. -> (M,)"""
    if query.shape[0] == 0 or reference.shape[0] == 0:
        return torch.full((query.shape[0],), -1, dtype=torch.int64, device=query.device)
    extent = int(torch.cat([query[:, 1:], reference[:, 1:]]).max().item()) + 2
    keys_sorted, order = torch.sort(voxel_keys(reference, extent))
    return lookup(keys_sorted, order, voxel_keys(query, extent))


def membership(query: Tensor, reference: Tensor) -> Tensor:
    """Which rows of `query (M, 4)` occur in `reference (N, 4)`. -> (M,) bool"""
    return row_index(query, reference) >= 0
