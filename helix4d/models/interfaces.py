"""What the core asks of a sparse VAE, whichever architecture supplies it (helix4d's `SCVAE`, TRELLIS.2's shape
and texture VAEs): voxels travel as `SparseTensor`, so a VAE never receives coordinates apart from their features.
Also what the pipeline reads of the other components every architecture has: the image encoder and stage 1's VAE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from torch import Tensor

from helix4d.ovoxel.representation import OVoxel
from helix4d.sparse import SparseTensor


@dataclass
class DecoderOutput:
    """A sparse decoder's result: the fine voxels with their raw outputs, and the pruning decisions on the way."""

    voxels: SparseTensor  # fine voxels; feats (N, C) are the unnormalised outputs (`features` maps them)
    exists_logits: list[Tensor]  # per upsampling, logits of every candidate child
    exists_targets: list[Tensor] = field(default_factory=list)  # per upsampling, whether that child is wanted
    # (teacher forcing while training; empty at inference)


class SparseEncoder(Protocol):
    """Fine O-Voxel features -> latents on the coarse voxels (`downsampling` × coarser)."""

    @property
    def downsampling(self) -> int: ...

    def encode(self, x: SparseTensor) -> tuple[SparseTensor, Tensor]:
        """fine features -> (latent means on the coarse voxels, their log-variances (M, C_lat))."""
        ...


class SparseDecoder(Protocol):
    """Latents on coarse voxels -> fine voxels and their O-Voxel features."""

    @property
    def downsampling(self) -> int: ...

    def decode(
        self, latent: SparseTensor, fine: SparseTensor | None = None, guide: DecoderOutput | None = None
    ) -> DecoderOutput:
        """`fine` (training) or `guide` (a material decoder following the geometry decoder) fix the voxels kept."""
        ...

    def features(self, raw: Tensor) -> Tensor:
        """raw outputs (N, C) -> O-Voxel features."""
        ...

    def ovoxel(self, resolution: int, coords: Tensor, geometry: Tensor, material: Tensor) -> OVoxel:
        """One frame's O-Voxel from this (geometry) decoder's features and the material decoder's."""
        ...


class ConditionEncoder(Protocol):
    """Condition images -> the tokens every flow cross-attends to (helix4d's `ImageEncoder`, TRELLIS.2's DINO)."""

    def __call__(self, images: Tensor) -> Tensor:
        """images (F, 4, S, S) in [0, 1] -> condition tokens (F, L, C)."""
        ...


class SparseStructureDecoder(Protocol):
    """Stage 1's dense latent grid -> occupancy logits (helix4d's `SSVAE`, TRELLIS.2's sparse-structure decoder)."""

    @property
    def latent_resolution(self) -> int: ...

    def decode(self, latent: Tensor) -> Tensor:
        """latent (F, C, r, r, r) -> occupancy logits (F, 1, R, R, R)."""
        ...
