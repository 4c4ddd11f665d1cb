"""SC-VAE: sparse-convolutional VAE between fine O-Voxel features and coarse sparse latents (stages 2 and 3).

Encoder: fine voxels (R) → submanifold residual blocks → ×2 strided downsampling per level → latent on the
coarse voxels (R / 2^levels), one token per coarse voxel. Decoder: the reverse, where each ×2 upsampling predicts
which of the 8 children exist (learned pruning). Geometry and material use two instances of this module with
different feature channels; the material decoder is given the fine voxel set the geometry decoder produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from helix4d.models.interfaces import DecoderOutput
from helix4d.ovoxel.representation import OVoxel
from helix4d.sparse import SparseTensor
from helix4d.sparse.conv import (
    Downsample,
    SubMConv3d,
    Upsample,
    membership,
    neighbour_map,
    parent_index,
    row_index,
)


@dataclass
class SCVAEConfig:
    in_channels: int = 7  # O-Voxel features per fine voxel (geometry 7, material 6)
    latent_channels: int = 8
    channels: tuple[int, ...] = (32, 64)  # fine level first; len - 1 downsamplings
    blocks_per_level: int = 1
    binary_channels: tuple[int, ...] = field(default_factory=tuple)  # feature channels trained with BCE (flags)
    kl_weight: float = 1e-4


class _SparseResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.LayerNorm(channels), SubMConv3d(channels, channels)
        self.norm2, self.conv2 = nn.LayerNorm(channels), SubMConv3d(channels, channels)
        nn.init.zeros_(self.conv2.weight)

    def forward(self, x: Tensor, neighbours: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)), neighbours)  # (N, C)
        return x + self.conv2(F.silu(self.norm2(h)), neighbours)  # (N, C)


class _Level(nn.Module):
    def __init__(self, channels: int, blocks: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(_SparseResBlock(channels) for _ in range(blocks))

    def forward(self, x: Tensor, coords: Tensor) -> Tensor:
        neighbours = neighbour_map(coords)  # (N, 27), shared by the level's convolutions
        for block in self.blocks:
            x = block(x, neighbours)
        return x


@dataclass
class SCVAELossWeights:
    """Training weights of `SCVAE.loss` (a training choice, not part of the model)."""

    reconstruction: float = 10.0  # MSE of the continuous channels
    l1: float = 0.0  # L1 of the continuous channels (sharper colours than MSE alone)
    exists: float = 1.0  # child-existence BCE; 0 for the material VAE, which is always guided at inference


class SCVAE(nn.Module):
    """`encode(fine features)` → (latent means on the coarse voxels, logvar); `decode(latent, fine?, guide?)`
    (the `helix4d.models.interfaces` SparseEncoder and SparseDecoder in one module)."""

    def __init__(self, config: SCVAEConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.enc_in = nn.Linear(config.in_channels, c[0])
        self.enc_levels = nn.ModuleList(_Level(ch, config.blocks_per_level) for ch in c)
        self.enc_down = nn.ModuleList(Downsample(c[i], c[i + 1]) for i in range(len(c) - 1))
        self.enc_out = nn.Sequential(nn.LayerNorm(c[-1]), nn.SiLU(), nn.Linear(c[-1], 2 * config.latent_channels))

        self.dec_in = nn.Linear(config.latent_channels, c[-1])
        self.dec_levels = nn.ModuleList(_Level(ch, config.blocks_per_level) for ch in reversed(c))
        self.dec_up = nn.ModuleList(Upsample(c[i + 1], c[i]) for i in reversed(range(len(c) - 1)))
        self.dec_out = nn.Sequential(nn.LayerNorm(c[0]), nn.SiLU(), nn.Linear(c[0], config.in_channels))

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.config.channels) - 1)

    def encode(self, x: SparseTensor) -> tuple[SparseTensor, Tensor]:
        """fine features (N, C_in) -> latent means (M, C_lat) on the coarse voxels, and their logvar (M, C_lat)."""
        coords = x.batch_coords  # (N, 4)
        h = self.enc_in(x.feats)  # (N, c0)
        for i, level in enumerate(self.enc_levels):
            h = level(h, coords)
            if i < len(self.enc_down):
                h, coords = self.enc_down[i](h, coords)  # (M_i, c_i+1)
        mean, logvar = self.enc_out(h).chunk(2, dim=-1)
        return x.with_batch_voxels(coords, mean), logvar.clamp(-30.0, 20.0)

    def decode(
        self, latent: SparseTensor, fine: SparseTensor | None = None, guide: DecoderOutput | None = None
    ) -> DecoderOutput:
        """latent (M, C_lat) on the coarse voxels -> fine voxels and their raw outputs.

        With `fine` (training) or a `guide` (the material decoder given the geometry decoder's output) the
        children kept at each level are the ancestors of those fine voxels; without, the children whose existence
        logit is positive.
        """
        target = guide.voxels if guide is not None else fine
        targets = self._ancestor_sets(target.batch_coords) if target is not None else None
        coords = latent.batch_coords  # (M, 4)
        x = self.dec_in(latent.feats)  # (M, c_last)
        logits_all, targets_all = [], []
        for i, level in enumerate(self.dec_levels):
            x = level(x, coords)
            if i == len(self.dec_up):
                break
            x, coords, logits = self.dec_up[i](x, coords)  # (8M, c), (8M, 4), (8M,)
            if targets is not None:
                keep = membership(coords, targets[i])
                targets_all.append(keep)
            else:
                keep = logits > 0
            logits_all.append(logits)
            x, coords = x[keep], coords[keep]
        return DecoderOutput(latent.with_batch_voxels(coords, self.dec_out(x)), logits_all, targets_all)

    def _ancestor_sets(self, fine_coords: Tensor) -> list[Tensor]:
        """The target voxel set at each decoder level after an upsampling, coarse to fine."""
        sets = [fine_coords]
        for _ in range(len(self.dec_up) - 1):
            sets.append(parent_index(sets[-1])[0])
        return sets[::-1]

    def features(self, raw: Tensor) -> Tensor:
        """Map raw decoder outputs to O-Voxel features in [0, 1] (flags thresholded by the caller)."""
        return torch.sigmoid(raw)

    @staticmethod
    def ovoxel(resolution: int, coords: Tensor, geometry: Tensor, material: Tensor) -> OVoxel:
        """One frame's O-Voxel from this (geometry) decoder's `features` and the material decoder's."""
        return OVoxel.from_features(resolution, coords, geometry, material)

    def loss(
        self,
        x: SparseTensor,
        generator: torch.Generator | None = None,
        weights: SCVAELossWeights | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Reconstruction of fine features + child-existence BCE + KL; x: fine features (N, C_in) in [0, 1]."""
        w = weights or SCVAELossWeights()
        latent, logvar = self.encode(x)
        mean = latent.feats
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        out = self.decode(latent.replace(mean + noise * (0.5 * logvar).exp()), fine=x)
        raw, feats = out.voxels.feats, x.feats
        target = feats[row_index(out.voxels.batch_coords, x.batch_coords)]  # decoder output order differs
        binary = torch.zeros(feats.shape[1], dtype=torch.bool, device=feats.device)
        binary[list(self.config.binary_channels)] = True
        rec_bin = (
            F.binary_cross_entropy_with_logits(raw[:, binary], target[:, binary]) if binary.any() else raw.new_zeros(())
        )
        error = torch.sigmoid(raw[:, ~binary]) - target[:, ~binary]
        rec_mse, rec_l1 = error.pow(2).mean(), error.abs().mean()
        exists = sum(
            (
                F.binary_cross_entropy_with_logits(logit, t.float())
                for logit, t in zip(out.exists_logits, out.exists_targets)
            ),
            raw.new_zeros(()),  # a tensor also without upsampling levels (one entry in `channels`)
        )
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        total = rec_mse * w.reconstruction + rec_l1 * w.l1 + rec_bin + exists * w.exists + self.config.kl_weight * kl
        metrics = {
            "mse": rec_mse.item(),
            "l1": rec_l1.item(),
            "bce": float(rec_bin.detach()),
            "exists": float(exists.detach()),
            "kl": kl.item(),
        }
        return total, metrics
