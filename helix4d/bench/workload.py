"""The TRELLIS.2 workload, written once so that the cost model (`helix4d.bench.cost`) predicts exactly the work that
`helix4d bench gpu` measures: the architecture at a size, its samplers, and the tokens of a typical output.

Token counts are inputs. `shell_voxels` makes the ones typical of TRELLIS.2 at 512: TRELLIS.2 encodes a 1024³
asset into ~9.6 K latent tokens on the 64³ grid (its paper); a surface at half the resolution has a quarter of
the voxels, ~2.4 K on the 32³ grid, and each ×2 decoder level multiplies them by ~4, to ~6 × 10⁵ at 512³.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from helix4d.errors import InputError
from helix4d.models.flow import FlowConfig
from helix4d.pipeline.sampler import SamplerConfig
from helix4d.trellis2.presets import trellis2_flow_config
from helix4d.trellis2.sc_vae import CHILD_BITS, Trellis2SCVAEConfig
from helix4d.trellis2.ss_vae import Trellis2SSDecoderConfig

# TRELLIS.2's samplers, from its pipeline.json (docs/trellis2.md, "Sampling"; unverified against the release).
TRELLIS2_SAMPLING = {
    "ss": SamplerConfig(steps=12, cfg_strength=7.5, cfg_interval=(0.6, 1.0), time_shift=5.0, cfg_rescale=0.7),
    "geometry": SamplerConfig(steps=12, cfg_strength=7.5, cfg_interval=(0.6, 1.0), time_shift=3.0, cfg_rescale=0.5),
    "material": SamplerConfig(steps=12, cfg_strength=1.0, cfg_interval=(0.6, 0.9), time_shift=3.0),
}


# ------------------------------------------------------------------------------------------------ presets
@dataclass(frozen=True)
class Trellis2Size:
    """The TRELLIS.2 architecture at one size: "full" is TRELLIS.2's 512 models with DINOv3 ViT-L/16 (what
    `helix4d convert trellis2 --resolution 512` loads); "tiny" the same structure small enough for a CPU check."""

    name: str
    resolution: int  # O-Voxel grid side
    image_size: int  # condition image side
    flows: dict[str, FlowConfig]
    ss_decoder: Trellis2SSDecoderConfig
    shape_decoder: Trellis2SCVAEConfig
    texture_decoder: Trellis2SCVAEConfig
    dino: dict[str, int]  # DINOv3ViTConfig arguments

    @property
    def levels(self) -> int:
        """×2 upsamplings of the SC-VAE decoders (latent grid = resolution / 2^levels)."""
        return len(self.shape_decoder.model_channels) - 1

    @property
    def cond_tokens(self) -> int:
        """DINO tokens per image: CLS, registers and patches (1029 for ViT-L/16 at 512 px)."""
        return 1 + self.dino["num_register_tokens"] + (self.image_size // self.dino["patch_size"]) ** 2


def trellis2_size(name: str) -> Trellis2Size:
    if name == "full":
        channels, blocks = (1024, 512, 256, 128, 64), (4, 16, 8, 4, 0)  # the released decoders (docs/trellis2.md)
        return Trellis2Size(
            name=name,
            resolution=512,
            image_size=512,
            flows={stage: trellis2_flow_config(stage) for stage in ("ss", "geometry", "material")},
            ss_decoder=Trellis2SSDecoderConfig(),
            shape_decoder=Trellis2SCVAEConfig("decoder", 7, channels, blocks, geometry=True),
            texture_decoder=Trellis2SCVAEConfig("decoder", 6, channels, blocks, pred_subdiv=False),
            dino=dict(
                hidden_size=1024,
                num_hidden_layers=24,
                num_attention_heads=16,
                intermediate_size=4096,
                num_register_tokens=4,
                patch_size=16,
            ),
        )
    if name == "tiny":
        small = dict(dim=64, heads=2, cond_dim=32, mlp_ratio=2.0)
        channels, blocks = (32, 16, 16), (1, 1, 0)
        return Trellis2Size(
            name=name,
            resolution=32,
            image_size=64,
            flows={
                s: dataclasses.replace(trellis2_flow_config(s, depth=1), **small)
                for s in ("ss", "geometry", "material")
            },
            ss_decoder=Trellis2SSDecoderConfig(
                channels=(16, 8), num_res_blocks=1, num_res_blocks_middle=1, latent_resolution=4
            ),
            shape_decoder=Trellis2SCVAEConfig("decoder", 7, channels, blocks, geometry=True),
            texture_decoder=Trellis2SCVAEConfig("decoder", 6, channels, blocks, pred_subdiv=False),
            dino=dict(
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=64,
                num_register_tokens=4,
                patch_size=16,
            ),
        )
    raise InputError(f"--size must be full or tiny, got {name!r}")


# ------------------------------------------------------------------------------------------------ token counts
def shell_voxels(
    resolution: int, levels: int, frames: int, radius_fraction: float = 0.35, device: torch.device | str = "cpu"
) -> tuple[list[Tensor], list[Tensor]]:
    """A sphere shell per frame (the voxels its surface passes through), moving along x by resolution/256 a frame.

    Returns the latent-grid voxels per frame (n_f, 3) on the grid resolution / 2^levels, and per ×2 level the
    (N_level, 8) bool masks of which children (slot k = xbit + 2·ybit + 4·zbit) hold the surface, for all frames'
    voxels concatenated in the order a TRELLIS.2 decoder holds them (frame by frame, parent-major, slot ascending):
    its subdivision masks. Radius 0.35 gives ~2.4 K latent tokens at 512 (module docstring).
    """
    side = resolution >> levels
    grid = torch.stack(torch.meshgrid(*(torch.arange(side, device=device),) * 3, indexing="ij"), -1).reshape(-1, 3)
    bits = CHILD_BITS.to(device)
    coarse, masks = [], [[] for _ in range(levels)]
    for f in range(frames):
        mid = resolution / 2
        centre = torch.tensor([mid + f * resolution / 256, mid, mid], dtype=torch.float64, device=device)
        size, cells = resolution / side, grid[_crosses(grid, resolution / side, centre, radius_fraction * resolution)]
        coarse.append(cells)
        for level in range(levels):
            size /= 2
            children = cells[:, None] * 2 + bits  # (n, 8, 3)
            keep = _crosses(children, size, centre, radius_fraction * resolution)  # (n, 8)
            masks[level].append(keep)
            cells = children[keep]
    return coarse, [torch.cat(m) for m in masks]


def _crosses(cells: Tensor, size: float, centre: Tensor, radius: float) -> Tensor:
    """Whether the sphere's surface passes through each cell [c·size, (c+1)·size]³. (..., 3) -> (...,)"""
    lo = cells.double() * size
    hi = lo + size
    nearest = torch.minimum(torch.maximum(centre, lo), hi)
    farthest = torch.where((centre - lo).abs() > (hi - centre).abs(), lo, hi)
    return ((nearest - centre).norm(dim=-1) <= radius) & ((farthest - centre).norm(dim=-1) >= radius)
