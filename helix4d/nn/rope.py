"""4D rotary position embedding: 3D RoPE on voxel coordinates with the lowest spatial bands given to time.

Layout (docs/design.md §3.3, the Trellis2 layout): the head dimension holds P = head_dim // 2 rotation pairs of
ADJACENT dimensions (2j, 2j+1). They are split axis-major across x, y, z with K = P // 3 bands per axis,
ω_k = θ^(−k/K) for k = 0..K−1 (highest frequency first); the P − 3K leftover pairs are identity in 3D.

4D: on each axis the lowest-frequency `ceil(ρ·K)` bands (k = K − ceil(ρK) .. K − 1) stop encoding space and
encode the frame index t instead, and so do the leftover pairs. With head_dim 128 this gives bands 15–20 of
each axis plus pair 63, exactly the pairs that rotate < 0.09 rad across a 64-voxel grid, so same-frame
attention stays what the pretrained 3D model computes. `ceil` (not `round`) is used so that any ρ > 0 gives
time at least one band per axis. ρ = 0 is 3D RoPE, bit for bit (time pairs do not exist then).

Time frequencies: the M time pairs (in pair order) get ω_time,j geometric from `time_omega_max` = 1 rad/frame
down to `time_omega_min` = 1/64 rad/frame. Why: the highest one turns a single-frame offset into a full radian,
so neighbours in the window (|Δt| = 1, 2, ...) get clearly different scores; the lowest one keeps the angle
below π for |Δt| up to ~200 frames, so every offset in a window (|Δt| ≤ 8) and the query-to-anchor offset
(Δt = f, up to the clip length) stays unambiguous (no wrap-around aliasing). It is parameter-free and fixed.
The rotation is block-diagonal, so ⟨R(p)q, R(p′)k⟩ depends only on p′ − p in 4D.

`time_mode` says what the time pairs do with their spatial band:
- "replace" (default, docs/design.md §3.3 as written): the band stops encoding space. Same-frame attention then differs
  from the pretrained 3D RoPE by the dropped bands' rotations (< 0.09 rad across a 64-voxel grid).
- "add": the band keeps its spatial angle and the time angle is added to it (angle = ω_s·x + ω_t·t; rotations of
  one plane commute, so the rotation stays block-diagonal and relative in 4D). At t = 0, and between any two
  tokens of the same frame, this is the pretrained 3D RoPE EXACTLY; this is what loading Trellis2 weights needs
  for the anchor frame to reproduce the static model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

TIME_MODES = ("replace", "add")


@dataclass(frozen=True)
class RopeConfig:
    """4D RoPE settings. `time_fraction` is ρ, the share of each axis' bands given to time (0 = 3D RoPE)."""

    head_dim: int = 64
    theta: float = 10000.0
    time_fraction: float = 0.25
    time_omega_max: float = 1.0
    time_omega_min: float = 1.0 / 64.0
    time_mode: str = "replace"  # "replace" | "add": see the module docstring

    def __post_init__(self) -> None:
        if self.time_mode not in TIME_MODES:
            raise ValueError(f"time_mode must be one of {TIME_MODES}, got {self.time_mode!r}")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError(f"head_dim must be even and >= 6, got {self.head_dim}")
        if not 0.0 <= self.time_fraction <= 1.0:
            raise ValueError(f"time_fraction must be in [0, 1], got {self.time_fraction}")
        if not 0.0 < self.time_omega_min <= self.time_omega_max:
            raise ValueError("need 0 < time_omega_min <= time_omega_max")

    @property
    def num_pairs(self) -> int:
        return self.head_dim // 2

    @property
    def bands_per_axis(self) -> int:
        return self.num_pairs // 3

    @property
    def time_bands_per_axis(self) -> int:
        return math.ceil(self.time_fraction * self.bands_per_axis - 1e-9)


def rope_time_table(config: RopeConfig) -> Tensor:
    """ω_time of every rotation pair (P,) float32: geometric on the time pairs (pair order), 0 on the others."""
    p, k, kt = config.num_pairs, config.bands_per_axis, config.time_bands_per_axis
    omega = torch.zeros(p, dtype=torch.float32)
    if kt == 0:
        return omega
    is_time = torch.ones(p, dtype=torch.bool)
    for a in range(3):
        is_time[a * k : (a + 1) * k - kt] = False  # keep the high spatial bands of each axis
    m = int(is_time.sum())
    ratio = config.time_omega_min / config.time_omega_max
    omega[is_time] = (config.time_omega_max * ratio ** (torch.arange(m, dtype=torch.float64) / max(m - 1, 1))).float()
    return omega


def rope_pair_table(config: RopeConfig) -> tuple[Tensor, Tensor]:
    """Which position component drives each rotation pair, and at what frequency.

    Returns pair_axis (P,) int64 in {0: t, 1: x, 2: y, 3: z} and pair_omega (P,) float32 (0 = identity pair).
    In "add" mode this is the pure 3D table; the time angles come on top (`rope_time_table`).
    """
    p, k = config.num_pairs, config.bands_per_axis
    spatial = 1.0 / config.theta ** (torch.arange(k, dtype=torch.float32) / k)  # (K,) highest first
    axis = torch.zeros(p, dtype=torch.int64)
    omega = torch.zeros(p, dtype=torch.float32)
    for a in range(3):
        axis[a * k : (a + 1) * k] = a + 1
        omega[a * k : (a + 1) * k] = spatial
    if config.time_mode == "replace":
        time_omega = rope_time_table(config)
        is_time = time_omega > 0
        axis[is_time] = 0
        omega[is_time] = time_omega[is_time]
    return axis, omega


def rope_angles(positions: Tensor, config: RopeConfig) -> Tensor:
    """Rotation angle of every pair for every token: positions (N, 4) `[t, x, y, z]` -> (N, head_dim // 2).

    Use `SparseTensor.coords.float()` directly (frame index = t, integer voxel coordinates = x, y, z).
    Computed in float32 whatever the model dtype, because angles grow large.
    """
    if positions.ndim != 2 or positions.shape[1] != 4:
        raise ValueError(f"positions must be (N, 4) [t, x, y, z], got {tuple(positions.shape)}")
    axis, omega = rope_pair_table(config)
    pos = positions.float()
    angles = pos[:, axis.to(pos.device)] * omega.to(pos.device)  # (N, P)
    if config.time_mode == "add":
        angles = angles + pos[:, :1] * rope_time_table(config).to(pos.device)  # (N, P)
    return angles


def apply_rope(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate adjacent pairs (2j, 2j+1) of x (N, H, D) by angles (N, D // 2); same dtype out as in."""
    if x.ndim != 3 or angles.shape != (x.shape[0], x.shape[2] // 2):
        raise ValueError(f"apply_rope: x {tuple(x.shape)} does not match angles {tuple(angles.shape)}")
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]  # (N, 1, P)
    xf = x.float().unflatten(-1, (-1, 2))  # (N, H, P, 2)
    x0, x1 = xf[..., 0], xf[..., 1]  # (N, H, P)
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)  # (N, H, P, 2)
    return out.flatten(-2).to(x.dtype)  # (N, H, D)
