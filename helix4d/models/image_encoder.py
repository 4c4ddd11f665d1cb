"""A small trainable image encoder: condition image (RGB + alpha) → a grid of condition tokens.

Trellis2 conditions on frozen DINOv3 features; the shipped demo model cannot download those, so it learns this
compact conv + transformer encoder jointly with its stage-1 flow model and then freezes it. Each frame is
encoded independently (cross-attention in the flow blocks stays per frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class ImageEncoderConfig:
    image_size: int = 128
    in_channels: int = 4  # RGB composited on black + alpha
    dim: int = 128
    grid: int = 8  # output tokens = grid² (+1 global token)
    depth: int = 2
    heads: int = 4
    stem_blocks: int = 0  # residual 3×3 conv blocks after each stem level (0: the original plain stem)


class ResidualConvBlock(nn.Module):
    """x + GELU(GN(conv3×3(x))): depth for the stem at the cost of one convolution per level (shape cues such as
    silhouette curvature and shading need more than one strided convolution per scale)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(8, channels), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ImageEncoder(nn.Module):
    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__()
        self.config = config
        stride_total = config.image_size // config.grid
        # A 4×4 patchify convolution first (cheap at full resolution), then ×2 strided convolutions to the grid.
        first = 4 if stride_total >= 4 else stride_total
        layers: list[nn.Module] = [
            nn.Conv2d(config.in_channels, 32, first, stride=first),
            nn.GroupNorm(8, 32),
            nn.GELU(),
        ]
        layers += [ResidualConvBlock(32) for _ in range(config.stem_blocks)]
        ch_in, stride_total = 32, stride_total // first
        while stride_total > 1:
            ch = min(ch_in * 2, config.dim)
            layers += [nn.Conv2d(ch_in, ch, 4, stride=2, padding=1), nn.GroupNorm(8, ch), nn.GELU()]
            layers += [ResidualConvBlock(ch) for _ in range(config.stem_blocks)]
            ch_in, stride_total = ch, stride_total // 2
        layers.append(nn.Conv2d(ch_in, config.dim, 1))
        self.stem = nn.Sequential(*layers)
        self.global_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.pos = nn.Parameter(torch.randn(1, config.grid**2 + 1, config.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            config.dim, config.heads, 4 * config.dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim, elementwise_affine=False)

    @property
    def num_tokens(self) -> int:
        return self.config.grid**2 + 1

    def forward(self, images: Tensor) -> Tensor:
        """images (B, 4, S, S) in [0, 1] -> tokens (B, grid² + 1, dim)."""
        x = self.stem(images * 2.0 - 1.0)  # (B, dim, grid, grid)
        x = x.flatten(2).transpose(1, 2)  # (B, grid², dim)
        x = torch.cat([self.global_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos  # (B, L, dim)
        return self.norm(self.transformer(x))  # (B, L, dim)


class OccupancyProbe(nn.Module):
    """Condition tokens → coarse occupancy logits (R³): direct supervision for the image encoder (training only).

    Why: trained only through the stage-1 flow loss, the encoder's tokens barely carry the object's shape (the
    generated coarse IoU stayed at 0.42). This probe reads the tokens as stage 1 does, by cross-attention from one
    learned query per cell of a `grid`³ lattice, and each query predicts the (R / grid)³ occupancy voxels of its
    cell; a class-balanced BCE on it teaches the encoder to put the shape into tokens that cross-attention can read.
    """

    def __init__(self, dim: int, heads: int, resolution: int, grid: int) -> None:
        super().__init__()
        if resolution % grid:
            raise ValueError(f"occupancy resolution {resolution} must be a multiple of the probe grid {grid}")
        self.resolution, self.grid, self.sub = resolution, grid, resolution // grid
        self.queries = nn.Parameter(torch.randn(1, grid**3, dim) * 0.02)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, self.sub**3))

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (B, L, dim) -> occupancy logits (B, R, R, R)."""
        b, g, s = tokens.shape[0], self.grid, self.sub
        q = self.queries.expand(b, -1, -1)  # (B, g³, dim)
        h = q + self.attention(q, tokens, tokens, need_weights=False)[0]  # (B, g³, dim)
        logits = self.mlp(h).view(b, g, g, g, s, s, s)  # (B, g, g, g, s, s, s)
        return logits.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, g * s, g * s, g * s)  # (B, R, R, R)
