"""Pure-torch sparse convolution against dense Conv3d, and the ×2 down/up maps."""

import torch
from torch.nn import functional as F

from helix4d.sparse.conv import Downsample, SubMConv3d, children_of, membership, neighbour_map, parent_index


def _random_voxels(n_groups: int = 2, side: int = 6, p: float = 0.4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*(torch.arange(side),) * 3, indexing="ij"), -1).reshape(-1, 3)
    out = []
    for i in range(n_groups):
        keep = torch.rand(grid.shape[0], generator=g) < p
        out.append(torch.cat([torch.full((int(keep.sum()), 1), i), grid[keep]], 1))
    return torch.cat(out)


def test_submconv_equals_dense_conv_at_active_voxels() -> None:
    torch.manual_seed(0)
    coords = _random_voxels()
    feats = torch.randn(coords.shape[0], 5)
    conv = SubMConv3d(5, 7)
    out = conv(feats, neighbour_map(coords))
    dense = torch.zeros(2, 5, 6, 6, 6)
    dense[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]] = feats
    ref = F.conv3d(dense, conv.weight.permute(0, 4, 1, 2, 3), conv.bias, padding=1)
    ref = ref[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_groups_never_mix() -> None:
    coords = _random_voxels(n_groups=2, p=0.9)
    nbr = neighbour_map(coords)
    valid = nbr >= 0
    same_group = coords[nbr.clamp(min=0), 0] == coords[:, None, 0]
    assert bool(same_group[valid].all())
    assert bool((nbr[:, 13] == torch.arange(coords.shape[0])).all())  # centre offset is the voxel itself


def test_downsample_equals_strided_dense_conv() -> None:
    torch.manual_seed(1)
    coords = _random_voxels(n_groups=1)
    feats = torch.randn(coords.shape[0], 3)
    down = Downsample(3, 4)
    out, parents = down(feats, coords)
    dense = torch.zeros(1, 3, 6, 6, 6)
    dense[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]] = feats
    weight = down.weight.reshape(2, 2, 2, 3, 4).permute(4, 3, 0, 1, 2)  # (C_out, C_in, 2, 2, 2)
    ref = F.conv3d(dense, weight, down.bias, stride=2)
    ref = ref[parents[:, 0], :, parents[:, 1], parents[:, 2], parents[:, 3]]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_children_of_parents_cover_the_voxels() -> None:
    coords = _random_voxels()
    parents, inverse, slot = parent_index(coords)
    kids = children_of(parents)
    assert bool(membership(coords, kids).all())
    assert torch.equal(kids[inverse * 8 + slot], coords)
