"""The VAEs and the image encoder: shapes, exact teacher-forced voxel sets, and that training lowers the loss."""

import torch

from helix4d.models.image_encoder import ImageEncoder, ImageEncoderConfig
from helix4d.models.sc_vae import SCVAE, SCVAEConfig
from helix4d.models.ss_vae import SSVAE, SSVAEConfig
from helix4d.sparse import SparseTensor


def _shell(resolution: int) -> torch.Tensor:
    grid = torch.stack(torch.meshgrid(*(torch.arange(resolution),) * 3, indexing="ij"), -1).reshape(-1, 3)
    d = ((grid + 0.5) / resolution - 0.5).norm(dim=-1)
    return grid[(d - 0.3).abs() < 0.6 / resolution]  # (n, 3)


def test_sc_vae_teacher_forced_decode_reproduces_the_voxel_set() -> None:
    torch.manual_seed(0)
    shell = _shell(16)
    one = lambda frames: SparseTensor.of_sequence([shell] * frames, torch.rand(frames * len(shell), 7))  # noqa: E731
    x = SparseTensor.cat([one(2), one(1)])  # two sequences: local frames 0, 1 and 0 must not mix
    vae = SCVAE(SCVAEConfig(in_channels=7, channels=(8, 16, 16), binary_channels=(3, 4, 5)))
    latent, logvar = vae.encode(x)
    assert logvar.shape == latent.feats.shape and vae.downsampling == 4
    assert latent.frames_per_sequence == (2, 1) and latent.tokens_per_frame.tolist() == [latent.num_tokens // 3] * 3
    assert int(latent.coords[:, 1:].max()) < 4
    local = torch.tensor([0, 1, 0]).repeat_interleave(latent.tokens_per_frame)  # each sequence numbers its frames
    assert torch.equal(latent.coords[:, 0], local)
    out = vae.decode(latent, fine=x)
    as_set = lambda c: set(map(tuple, c.tolist()))  # noqa: E731
    assert as_set(out.voxels.batch_coords) == as_set(x.batch_coords)  # every frame of both sequences, nothing mixed
    assert torch.equal(out.voxels.frame_offsets, x.frame_offsets)
    assert len(out.exists_logits) == 2 and all(t.any() for t in out.exists_targets)


def test_sc_vae_training_lowers_loss() -> None:
    torch.manual_seed(0)
    shell = _shell(12)
    feats = torch.rand(shell.shape[0], 7)
    feats[:, 3:6] = (feats[:, 3:6] > 0.5).float()
    x = SparseTensor.of_sequence([shell], feats)
    vae = SCVAE(SCVAEConfig(in_channels=7, channels=(16, 16), binary_channels=(3, 4, 5)))
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    losses = []
    for step in range(15):
        loss, _ = vae.loss(x, generator=torch.Generator().manual_seed(step))
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
