"""SS-VAE: dense occupancy grid ↔ small dense latent (stage 1's space).

A 3D conv VAE (TRELLIS' sparse-structure VAE in miniature): occupancy (1, R, R, R) → latent (C, R/4, R/4, R/4)
→ occupancy logits. Stage 1's flow model generates that latent; decoding + thresholding gives the coarse voxels
on which stages 2 and 3 place their tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass
class SSVAEConfig:
    resolution: int = 16  # occupancy grid side
    latent_channels: int = 8
    channels: tuple[int, ...] = (32, 64)  # one ×2 downsampling per entry
    blocks_per_level: int = 1


class _ResBlock3d(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.GroupNorm(min(8, channels), channels),
            nn.SiLU(),
            nn.Conv3d(channels, channels, 3, padding=1),
            nn.GroupNorm(min(8, channels), channels),
            nn.SiLU(),
            nn.Conv3d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class SSVAE(nn.Module):
    """Encoder/decoder pair; `encode` returns (mean, logvar), `decode` returns occupancy logits."""

    def __init__(self, config: SSVAEConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        enc: list[nn.Module] = [nn.Conv3d(1, c[0], 3, padding=1)]
        for i, ch in enumerate(c):
            enc += [_ResBlock3d(ch) for _ in range(config.blocks_per_level)]
            nxt = c[i + 1] if i + 1 < len(c) else ch
            enc.append(nn.Conv3d(ch, nxt, 4, stride=2, padding=1))
        enc += [
            nn.GroupNorm(min(8, c[-1]), c[-1]),
            nn.SiLU(),
            nn.Conv3d(c[-1], 2 * config.latent_channels, 3, padding=1),
        ]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [nn.Conv3d(config.latent_channels, c[-1], 3, padding=1)]
        for i, ch in reversed(list(enumerate(c))):
            dec += [_ResBlock3d(ch) for _ in range(config.blocks_per_level)]
            nxt = c[i - 1] if i > 0 else ch
            dec.append(nn.ConvTranspose3d(ch, nxt, 4, stride=2, padding=1))
        dec += [nn.GroupNorm(min(8, c[0]), c[0]), nn.SiLU(), nn.Conv3d(c[0], 1, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    @property
    def latent_resolution(self) -> int:
        return self.config.resolution // 2 ** len(self.config.channels)

    def encode(self, occupancy: Tensor) -> tuple[Tensor, Tensor]:
        """occupancy (B, 1, R, R, R) in {0, 1} -> mean, logvar (B, C, r, r, r)."""
        mean, logvar = self.encoder(occupancy * 2.0 - 1.0).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, latent: Tensor) -> Tensor:
        """latent (B, C, r, r, r) -> occupancy logits (B, 1, R, R, R)."""
        return self.decoder(latent)

    def loss(
        self, occupancy: Tensor, generator: torch.Generator | None = None, kl_weight: float = 1e-4
    ) -> tuple[Tensor, dict[str, float]]:
        """Reconstruction (class-balanced BCE) + KL; occupancy (B, 1, R, R, R)."""
        mean, logvar = self.encode(occupancy)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        logits = self.decode(mean + noise * (0.5 * logvar).exp())
        pos_weight = ((1 - occupancy).sum() / occupancy.sum().clamp(min=1)).clamp(max=20.0)
        rec = F.binary_cross_entropy_with_logits(logits, occupancy, pos_weight=pos_weight)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        with torch.no_grad():
            pred, gt = logits > 0, occupancy > 0.5
            iou = ((pred & gt).sum() / (pred | gt).sum().clamp(min=1)).item()
        return rec + kl_weight * kl, {"rec": rec.item(), "kl": kl.item(), "iou": iou}
