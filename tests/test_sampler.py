"""Rectified-flow Euler sampling: exact on a straight path, guidance only inside its interval."""

import pytest
import torch

from helix4d.pipeline.sampler import SamplerConfig, guided_velocity, sample, timesteps


def test_straight_path_is_integrated_exactly() -> None:
    target = torch.tensor([1.0, -2.0, 0.5])
    noise = torch.randn(3)
    # For the path x_t = (1 - t) x0 + t ε with a single x0, the true velocity at x_t is (x_t - x0) / t.
    velocity = lambda x, t, cond: (x - target) / t  # noqa: E731
    out = sample(velocity, noise, SamplerConfig(steps=7, cfg_strength=1.0, time_shift=3.0))
    torch.testing.assert_close(out, target)


def test_timesteps_shift_and_endpoints() -> None:
    ts = timesteps(SamplerConfig(steps=4, time_shift=3.0))
    assert ts[0] == 1.0 and ts[-1] == 0.0 and len(ts) == 5
    assert all(a > b for a, b in zip(ts, ts[1:]))
    assert ts[2] > 0.5  # a shift > 1 spends more of the schedule at high noise


def test_guidance_interval() -> None:
    v = lambda x, t, cond: x + (1.0 if cond else 0.0)  # noqa: E731
    cfg = SamplerConfig(cfg_strength=3.0, cfg_interval=(0.2, 0.6))
    x = torch.zeros(2)
    assert torch.equal(guided_velocity(v, x, 0.5, cfg), torch.full((2,), 3.0))
    assert torch.equal(guided_velocity(v, x, 0.9, cfg), torch.full((2,), 1.0))


def test_bad_config() -> None:
    with pytest.raises(ValueError):
        SamplerConfig(steps=0)
    with pytest.raises(ValueError):
        SamplerConfig(cfg_interval=(0.8, 0.2))


def _two_branch_velocity(x: torch.Tensor, t: float, cond: bool) -> torch.Tensor:
    """A velocity whose conditional and unconditional x_0 predictions differ in spread per row."""
    scale = torch.arange(1, x.shape[0] + 1, dtype=x.dtype)[:, None]
    return x * (0.5 if cond else 0.2) + scale * (1.0 if cond else -1.0)


def test_cfg_rescale_matches_the_conditional_spread_per_frame() -> None:
    x, t, groups = torch.randn(7, 4, generator=torch.Generator().manual_seed(0)), 0.8, [3, 4]
    plain = guided_velocity(_two_branch_velocity, x, t, SamplerConfig(cfg_strength=5.0))
    same = guided_velocity(_two_branch_velocity, x, t, SamplerConfig(cfg_strength=5.0, cfg_rescale=0.0), groups)
    assert torch.equal(plain, same)
    full = guided_velocity(_two_branch_velocity, x, t, SamplerConfig(cfg_strength=5.0, cfg_rescale=1.0), groups)
    x0_cond = x - t * _two_branch_velocity(x, t, True)
    x0_full, x0_plain = x - t * full, x - t * plain
    for rows in (slice(0, 3), slice(3, 7)):  # each frame gets the conditional prediction's std, same direction
        torch.testing.assert_close(x0_full[rows].std(), x0_cond[rows].std())
        torch.testing.assert_close(x0_full[rows] / x0_full[rows].std(), x0_plain[rows] / x0_plain[rows].std())
    half = guided_velocity(_two_branch_velocity, x, t, SamplerConfig(cfg_strength=5.0, cfg_rescale=0.5), groups)
    torch.testing.assert_close(x - t * half, 0.5 * x0_full + 0.5 * x0_plain)
    second_frame_only = lambda y, t, cond: _two_branch_velocity(torch.cat([x[:3], y]), t, cond)[3:]  # noqa: E731
    one_frame = guided_velocity(second_frame_only, x[3:], t, SamplerConfig(cfg_strength=5.0, cfg_rescale=1.0))
    torch.testing.assert_close(full[3:], one_frame, msg="frames are rescaled independently")


def test_cfg_rescale_outside_unit_interval_is_refused() -> None:
    with pytest.raises(ValueError):
        SamplerConfig(cfg_rescale=1.5)
