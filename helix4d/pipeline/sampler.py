"""Rectified-flow Euler sampling with classifier-free guidance, a guidance interval and CFG-rescale.

Convention (TRELLIS): x_t = (1 − t)·x_0 + t·ε, t = 1 is pure noise, t = 0 is data, and the model predicts the
velocity v = ε − x_0, so an Euler step is x_{t−Δ} = x_t − Δ·v. Anchor tokens never appear here: they are clean
(t = 0) and their keys/values come from the model's anchor cache, so the sampler only moves frames ≥ 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

VelocityFn = Callable[[Tensor, float, bool], Tensor]  # (x_t, t, conditioned) -> v, same shape as x_t


@dataclass
class SamplerConfig:
    """One stage's sampler, as a model folder's pipeline.json stores it (`PipelineConfig.sampling`)."""

    steps: int = 12  # as TRELLIS.2 samples; 25 measured no better on the demo model (docs/experiments.md)
    cfg_strength: float = 3.0  # guidance scale s: v = v_u + s·(v_c − v_u); 1 disables guidance
    cfg_interval: tuple[float, float] = (0.0, 1.0)  # guidance only while t lies in this interval
    time_shift: float = 3.0  # >1 spends more steps at high noise: t' = s·t / (1 + (s − 1)·t); 1 = no shift
    cfg_rescale: float = 0.0  # φ of CFG-rescale (TRELLIS.2: 0.7 / 0.5 / 0); 0 = plain guidance

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        lo, hi = self.cfg_interval
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"cfg_interval must satisfy 0 <= lo <= hi <= 1, got {self.cfg_interval}")
        if not 0.0 <= self.cfg_rescale <= 1.0:
            raise ValueError(f"cfg_rescale must lie in [0, 1], got {self.cfg_rescale}")


def timesteps(config: SamplerConfig) -> list[float]:
    """Decreasing times from 1 to 0 (steps + 1 values), shifted by `time_shift`."""
    s = config.time_shift
    ts = torch.linspace(1.0, 0.0, config.steps + 1, dtype=torch.float64)
    return (s * ts / (1 + (s - 1) * ts)).tolist()


def guided_velocity(
    velocity: VelocityFn, x: Tensor, t: float, config: SamplerConfig, groups: list[int] | None = None
) -> Tensor:
    """Velocity with classifier-free guidance where t is inside the guidance interval.

    With `cfg_rescale` φ > 0 the guided prediction is pulled back towards the conditional one's spread, as
    TRELLIS.2 does (Lin et al. 2024, "Common diffusion noise schedules…"): in x_0 space (x_0 = x_t − t·v) the
    guided x_0 is scaled to the standard deviation of the conditional x_0, then blended with weight φ. The
    (population) standard deviation is taken over each group of rows (`groups`: tokens per frame; one image each,
    as TRELLIS.2 takes it per batch item), or over all of x. TRELLIS.2's x_0 also carries σ_min = 1e-5 terms,
    which we drop (a 1e-5 relative difference).
    """
    v_cond = velocity(x, t, True)
    lo, hi = config.cfg_interval
    if config.cfg_strength == 1.0 or not lo <= t <= hi:
        return v_cond
    v_uncond = velocity(x, t, False)
    v = v_uncond + config.cfg_strength * (v_cond - v_uncond)
    if config.cfg_rescale == 0.0:
        return v
    x0_cond, x0_cfg = x - t * v_cond, x - t * v
    scale = torch.cat(
        [
            (c.std(correction=0) / g.std(correction=0).clamp_min(1e-12)).expand(len(c))
            for c, g in zip(x0_cond.split(groups or [len(x)]), x0_cfg.split(groups or [len(x)]))
        ]
    ).view(-1, *([1] * (x.ndim - 1)))  # (N, 1, ...) per-row factor of its group
    x0 = config.cfg_rescale * x0_cfg * scale + (1.0 - config.cfg_rescale) * x0_cfg
    return (x - x0) / t


@torch.no_grad()
def sample(
    velocity: VelocityFn,
    noise: Tensor,
    config: SamplerConfig,
    on_step: Callable[[int], None] | None = None,
    groups: list[int] | None = None,
) -> Tensor:
    """Integrate from `noise` (t = 1) to data (t = 0) with Euler steps; returns x_0, same shape as noise.

    `groups` (rows per frame) only matters for CFG-rescale, whose statistics are per frame."""
    x = noise
    ts = timesteps(config)
    for i, (t, t_next) in enumerate(zip(ts, ts[1:])):
        x = x - (t - t_next) * guided_velocity(velocity, x, t, config, groups)
        if on_step is not None:
            on_step(i)
    return x
