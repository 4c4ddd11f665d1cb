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
