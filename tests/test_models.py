"""The VAEs and the image encoder: shapes, exact teacher-forced voxel sets, and that training lowers the loss."""

import torch

from helix4d.models.image_encoder import ImageEncoder, ImageEncoderConfig
from helix4d.models.sc_vae import SCVAE, SCVAEConfig
from helix4d.models.ss_vae import SSVAE, SSVAEConfig


def _shell(resolution: int, groups: int) -> torch.Tensor:
    grid = torch.stack(torch.meshgrid(*(torch.arange(resolution),) * 3, indexing="ij"), -1).reshape(-1, 3)
    d = ((grid + 0.5) / resolution - 0.5).norm(dim=-1)
    shell = grid[(d - 0.3).abs() < 0.6 / resolution]
    return torch.cat([torch.cat([torch.full((len(shell), 1), g), shell], 1) for g in range(groups)])


def test_sc_vae_teacher_forced_decode_reproduces_the_voxel_set() -> None:
    torch.manual_seed(0)
    coords = _shell(16, 2)
    vae = SCVAE(SCVAEConfig(in_channels=7, channels=(8, 16, 16), binary_channels=(3, 4, 5)))
    mean, _, coarse = vae.encode(torch.rand(coords.shape[0], 7), coords)
    assert coarse.shape[0] == mean.shape[0] and vae.downsampling == 4
    assert int(coarse[:, 1:].max()) < 4
    out = vae.decode(mean, coarse, fine_coords=coords)
    as_set = lambda c: set(map(tuple, c.tolist()))  # noqa: E731
    assert as_set(out.coords) == as_set(coords)
    assert len(out.exists_logits) == 2 and all(t.any() for t in out.exists_targets)


def test_sc_vae_training_lowers_loss() -> None:
    torch.manual_seed(0)
    coords = _shell(12, 1)
    feats = torch.rand(coords.shape[0], 7)
    feats[:, 3:6] = (feats[:, 3:6] > 0.5).float()
    vae = SCVAE(SCVAEConfig(in_channels=7, channels=(16, 16), binary_channels=(3, 4, 5)))
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    losses = []
    for step in range(15):
        loss, _ = vae.loss(feats, coords, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_ss_vae_shapes_and_training() -> None:
    torch.manual_seed(0)
    vae = SSVAE(SSVAEConfig(resolution=16, latent_channels=4, channels=(8, 16)))
    occ = torch.zeros(2, 1, 16, 16, 16)
    occ[:, :, 4:12, 4:12, 4:12] = 1
    mean, logvar = vae.encode(occ)
    assert mean.shape == (2, 4, 4, 4, 4) and vae.latent_resolution == 4
    assert vae.decode(mean).shape == occ.shape
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    first = None
    for step in range(15):
        loss, _ = vae.loss(occ, generator=torch.Generator().manual_seed(step))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first


def test_image_encoder_tokens() -> None:
    enc = ImageEncoder(ImageEncoderConfig(image_size=32, dim=32, grid=4, depth=1, heads=2))
    tokens = enc(torch.rand(3, 4, 32, 32))
    assert tokens.shape == (3, 17, 32) and enc.num_tokens == 17
    assert torch.isfinite(tokens).all()


def test_occupancy_probe_places_each_cell_in_its_block() -> None:
    """Query (i, j, k) of the probe's lattice predicts exactly the voxels of block (i, j, k) of the R³ grid."""
    from helix4d.models.image_encoder import OccupancyProbe

    probe = OccupancyProbe(dim=16, heads=2, resolution=8, grid=4)
    tokens = torch.randn(2, 5, 16)
    logits = probe(tokens)
    assert logits.shape == (2, 8, 8, 8)
    with torch.no_grad():
        probe.mlp[-1].weight.zero_()
        probe.mlp[-1].bias.copy_(torch.arange(8, dtype=torch.float32))  # sub-voxel (a, b, c) -> 4a + 2b + c
        probe.queries.zero_()
    out = probe(tokens)[0]
    for x, y, z in [(0, 0, 0), (3, 5, 6), (7, 7, 1)]:
        assert out[x, y, z].item() == 4 * (x % 2) + 2 * (y % 2) + (z % 2)
