import math

import torch

from helix4d.nn.rope import RopeConfig, apply_rope, rope_angles, rope_pair_table


def _positions(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, 9, (n, 1), generator=g)
    xyz = torch.randint(0, 64, (n, 3), generator=g)
    return torch.cat([t, xyz], 1).float()


def test_trellis2_layout_head128():
    axis, omega = rope_pair_table(RopeConfig(head_dim=128))
    # 21 bands per axis, axis-major; bands 15..20 of each axis and pair 63 encode time
    for a in range(3):
        band = torch.arange(21)
        assert axis[a * 21 : a * 21 + 15].eq(a + 1).all()
        assert axis[a * 21 + 15 : a * 21 + 21].eq(0).all()
        assert torch.allclose(omega[a * 21 : a * 21 + 15], 10000.0 ** (-band[:15] / 21.0))
    assert axis[63] == 0 and (axis == 0).sum() == 19
    t_omega = omega[axis == 0]
    assert math.isclose(t_omega.max().item(), 1.0) and math.isclose(t_omega.min().item(), 1 / 64, rel_tol=1e-6)


def test_scores_invariant_to_common_4d_shift():
    cfg = RopeConfig(head_dim=48)
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 10, 2, 48, generator=g, dtype=torch.float64)
    pq, pk = _positions(10, 2).double(), _positions(10, 3).double()
    shift = torch.tensor([3.0, -5.0, 7.0, 11.0], dtype=torch.float64)

    def scores(p1, p2):
        qr = apply_rope(q, rope_angles(p1, cfg).double())
        kr = apply_rope(k, rope_angles(p2, cfg).double())
        return torch.einsum("nhd,mhd->hnm", qr, kr)

    s0, s1 = scores(pq, pk), scores(pq + shift, pk + shift)
    assert torch.allclose(s0, s1, atol=1e-4, rtol=1e-4)
    # and the positions do matter: a shift of only the keys changes scores
    assert not torch.allclose(s0, scores(pq, pk + shift), atol=1e-2)


def test_rho_zero_is_3d_rope_bit_for_bit():
    cfg = RopeConfig(head_dim=64, time_fraction=0.0)
    pos = _positions(17, 4)
    k = 32 // 3
    omega = 1.0 / 10000.0 ** (torch.arange(k, dtype=torch.float32) / k)
    ref = torch.cat([pos[:, 1:2] * omega, pos[:, 2:3] * omega, pos[:, 3:4] * omega, torch.zeros(17, 32 - 3 * k)], 1)
    ang = rope_angles(pos, cfg)
    assert torch.equal(ang, ref)
    x = torch.randn(17, 3, 64)
    assert torch.equal(apply_rope(x, ang), apply_rope(x, ref))
    # changing the frame index changes nothing in 3D
    pos2 = pos.clone()
    pos2[:, 0] += 5
    assert torch.equal(rope_angles(pos2, cfg), ang)


def test_time_pairs_identity_at_frame_zero_and_rotate_otherwise():
    cfg = RopeConfig(head_dim=64)
    axis, _ = rope_pair_table(cfg)
    time_dims = torch.stack([2 * torch.nonzero(axis == 0)[:, 0], 2 * torch.nonzero(axis == 0)[:, 0] + 1], 1).flatten()
    x = torch.randn(5, 2, 64)
    pos = _positions(5, 5)
    pos[:, 0] = 0
    y = apply_rope(x, rope_angles(pos, cfg))
    assert torch.equal(y[..., time_dims], x[..., time_dims])
    # time pairs only depend on t: with x,y,z = 0 and t = 3 the spatial pairs are identity, time pairs rotate
    pos = torch.tensor([[3.0, 0, 0, 0]]).expand(5, 4)
    y = apply_rope(x, rope_angles(pos, cfg))
    space_dims = torch.tensor([d for d in range(64) if d not in set(time_dims.tolist())])
    assert torch.equal(y[..., space_dims], x[..., space_dims])
    assert not torch.allclose(y[..., time_dims], x[..., time_dims])


def test_window_offsets_distinguishable():
    """Time-only scores of a fixed q/k pair differ for every offset |Δt| <= 8."""
    cfg = RopeConfig(head_dim=64)
    axis, omega = rope_pair_table(cfg)
    w = omega[axis == 0].double()
    profiles = torch.stack([torch.cos(dt * w) for dt in range(9)])  # (9, M)
    d = torch.cdist(profiles, profiles) + torch.eye(9) * 10
    assert d.min() > 0.1


def test_apply_rope_keeps_dtype_and_norm():
    x = torch.randn(4, 2, 32, dtype=torch.bfloat16)
    ang = rope_angles(_positions(4, 6), RopeConfig(head_dim=32))
    y = apply_rope(x, ang)
    assert y.dtype == torch.bfloat16
    assert torch.allclose(y.float().norm(dim=-1), x.float().norm(dim=-1), rtol=2e-2)
