"""TRELLIS.2's SC-VAEs (shape and texture), parameter names and shapes exact, on our pure-torch sparse conv.

Checkpoints `{shape,tex}_{enc,dec}_next_dc_f16c32_fp16` (`FlexiDualGridVae{Encoder,Decoder}`,
`SparseUnetVae{Encoder,Decoder}`): channels 64 → 1024 over five levels, sparse ConvNeXt blocks
(`blocks.i.j.{norm,conv,mlp.0,mlp.2}`), 16× down/up-sampling by `SparseResBlockS2C3d` / `SparseResBlockC2S3d`,
32 latent channels. Semantics we rely on (TRELLIS.2's sparse modules, FlexGEMM submanifold conv):

- `SparseConv3d` weight `[C_out, 3, 3, 3, C_in]`: entry (a, b, c) multiplies the neighbour at offset
  (a − 1, b − 1, c − 1) in (x, y, z) — our `SubMConv3d` exactly.
- child slot k of a voxel = xbit + 2·ybit + 4·zbit; spatial→channel stores child k in channels
  [k·C, (k+1)·C) of its parent (absent children are zeros); channel→spatial gives child k those channels,
  children emitted parent by parent in increasing k.
- the decoder's up blocks predict an (N, 8) subdivision logit per voxel (`to_subdiv`, on the block input)
  and keep the children with logit > 0; the texture decoder has no `to_subdiv` and is *guided* by the
  shape decoder's masks, which is why both decoders see the same voxels in the same order.
- layer norms run in float32 (eps 1e-6; `norm2` without affine), the trunk's outputs pass through a plain
  `F.layer_norm` before `to_latent` / `output_layer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from helix4d.errors import ConfigError, InputError
from helix4d.models.interfaces import DecoderOutput
from helix4d.ovoxel.representation import OVoxel
from helix4d.sparse import SparseTensor
from helix4d.sparse.conv import SubMConv3d, neighbour_map
from helix4d.trellis2.dual_grid import ovoxel_from_trellis2

BLOCK, DOWN_BLOCK, UP_BLOCK = "SparseConvNeXtBlock3d", "SparseResBlockS2C3d", "SparseResBlockC2S3d"
# class name -> (role, fixed channel count or None when it is an arg, geometry VAE)
CLASSES = {
    "FlexiDualGridVaeEncoder": ("encoder", 6, True),
    "FlexiDualGridVaeDecoder": ("decoder", 7, True),
    "SparseUnetVaeEncoder": ("encoder", None, False),
    "SparseUnetVaeDecoder": ("decoder", None, False),
}
KNOWN_ARGS = {
    "model_channels",
    "latent_channels",
    "num_blocks",
    "block_type",
    "down_block_type",
    "up_block_type",
    "block_args",
    "use_fp16",
    "in_channels",
    "out_channels",
    "resolution",
    "pred_subdiv",
    "voxel_margin",
}
CHILD_BITS = torch.tensor([[k & 1, (k >> 1) & 1, (k >> 2) & 1] for k in range(8)])  # (8, 3) slot -> (x, y, z)


@dataclass
class Trellis2SCVAEConfig:
    role: str  # "encoder" | "decoder"
    channels: int  # encoder input / decoder output channels per fine voxel
    model_channels: tuple[int, ...] = (
        64,
        128,
        256,
        512,
        1024,
    )  # fine → coarse for encoders, coarse → fine for decoders
    num_blocks: tuple[int, ...] = (0, 4, 8, 16, 4)
    latent_channels: int = 32
    pred_subdiv: bool = True  # decoders: predict which children exist (False: guided by another decoder's masks)
    geometry: bool = False  # a FlexiDualGrid (shape) VAE: outputs are dual vertex, intersected, quad_lerp
    voxel_margin: float = 0.5  # shape decoder: dual vertices lie in [-margin, 1 + margin] of their voxel

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.model_channels) - 1)

    @classmethod
    def from_trellis(cls, name: str, args: dict[str, Any], where: str) -> Trellis2SCVAEConfig:
        """From a checkpoint config `{"name", "args"}`; every variant we do not implement is a ConfigError."""
        if name not in CLASSES:
            raise ConfigError(f"{where}: {name!r} is not a TRELLIS.2 SC-VAE (expected one of {sorted(CLASSES)})")
        role, fixed, geometry = CLASSES[name]
        unknown = sorted(set(args) - KNOWN_ARGS)
        if unknown:
            raise ConfigError(f"{where}: unknown SC-VAE args {unknown}; helix4d cannot tell how they shape the weights")
        try:
            mc, nb = tuple(int(c) for c in args["model_channels"]), tuple(int(n) for n in args["num_blocks"])
            blocks, resample = (
                list(args["block_type"]),
                list(args["down_block_type" if role == "encoder" else "up_block_type"]),
            )
            channels = fixed if fixed is not None else int(args["in_channels" if role == "encoder" else "out_channels"])
            latent = int(args["latent_channels"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: SC-VAE args lack or mistype {exc}") from None
        expected_resample = DOWN_BLOCK if role == "encoder" else UP_BLOCK
        problems = []
        if len(nb) != len(mc) or len(blocks) != len(mc) or len(resample) != len(mc) - 1:
            problems.append("model_channels, num_blocks, block_type and the resampling blocks disagree in length")
        if set(blocks) - {BLOCK}:
            problems.append(f"block_type {sorted(set(blocks))} (only {BLOCK})")
        if set(resample) - {expected_resample}:
            problems.append(f"resampling blocks {sorted(set(resample))} (only {expected_resample})")
        for extra in args.get("block_args", []):
            if set(extra) - {"use_checkpoint"}:
                problems.append(f"block_args {sorted(set(extra) - {'use_checkpoint'})} (only use_checkpoint)")
        ratios = [(a, b) for a, b in zip(mc, mc[1:]) if (a % 8 if role == "decoder" else b % 8)]
        if ratios:
            problems.append(f"channels {ratios} do not split into 8 children")
        if problems:
            raise ConfigError(f"{where}: unsupported TRELLIS.2 SC-VAE: " + "; ".join(problems))
        return cls(
            role=role,
            channels=channels,
            model_channels=mc,
            num_blocks=nb,
            latent_channels=latent,
            pred_subdiv=bool(args.get("pred_subdiv", True)),
            geometry=geometry,
            voxel_margin=float(args.get("voxel_margin", 0.5)),
        )


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the weights' dtype (TRELLIS' LayerNorm32)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).to(x.dtype)


class ConvNeXtBlock(nn.Module):
    """`SparseConvNeXtBlock3d`: x + MLP(norm(conv(x)))."""

    def __init__(self, channels: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(channels * mlp_ratio)
        self.norm = LayerNorm32(channels, eps=1e-6)
        self.conv = SubMConv3d(channels, channels)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.SiLU(), nn.Linear(hidden, channels))

    def forward(self, x: Tensor, neighbours: Tensor) -> Tensor:
        return x + self.mlp(self.norm(self.conv(x, neighbours)))  # (N, C)


class DownBlock(nn.Module):
    """`SparseResBlockS2C3d`: conv to C_out/8 at the fine level, spatial→channel, conv; skip = channel means."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = LayerNorm32(channels, eps=1e-6)
        self.conv1 = SubMConv3d(channels, out_channels // 8)
        self.norm2 = LayerNorm32(out_channels, eps=1e-6, elementwise_affine=False)
        self.conv2 = SubMConv3d(out_channels, out_channels)
        self.out_channels = out_channels

    def forward(self, x: Tensor, coords: Tensor, neighbours: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, C_in) on coords (N, 4) -> (M, C_out) on the parents (M, 4) and their neighbour map."""
        parents, index = spatial_to_channel_index(coords)
        h = spatial_to_channel(self.conv1(F.silu(self.norm1(x)), neighbours), index, parents.shape[0])  # (M, C_out)
        skip = spatial_to_channel(x, index, parents.shape[0])  # (M, 8 C_in)
        skip = skip.view(skip.shape[0], self.out_channels, -1).mean(-1)  # (M, C_out)
        nb = neighbour_map(parents)
        return self.conv2(F.silu(self.norm2(h)), nb) + skip, parents, nb


class UpBlock(nn.Module):
    """`SparseResBlockC2S3d`: conv to 8·C_out at the coarse level, channel→spatial onto the kept children, conv;
    skip = the input's channel groups repeated."""

    def __init__(self, channels: int, out_channels: int, pred_subdiv: bool = True) -> None:
        super().__init__()
        self.norm1 = LayerNorm32(channels, eps=1e-6)
        self.conv1 = SubMConv3d(channels, out_channels * 8)
        self.norm2 = LayerNorm32(out_channels, eps=1e-6, elementwise_affine=False)
        self.conv2 = SubMConv3d(out_channels, out_channels)
        if pred_subdiv:
            self.to_subdiv = nn.Linear(channels, 8)
        self.pred_subdiv, self.out_channels = pred_subdiv, out_channels

    def forward(
        self, x: Tensor, coords: Tensor, neighbours: Tensor, keep: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """(N, C_in) on coords (N, 4) -> children (M, C_out), their coords (M, 4) and neighbour map, and the
        (N, 8) subdivision logits (None when guided). `keep` (N, 8) bool overrides the predicted children."""
        logits = self.to_subdiv(x).float() if self.pred_subdiv else None  # (N, 8)
        if keep is None:
            if logits is None:
                raise InputError(
                    "this TRELLIS.2 decoder predicts no subdivision; decode it guided by the shape decoder"
                )
            keep = logits > 0
        parent, slot = keep.nonzero(as_tuple=True)  # (M,) each, parent-major, slot ascending
        children = coords[parent].clone()
        children[:, 1:] = children[:, 1:] * 2 + CHILD_BITS.to(coords.device)[slot]
        h = self.conv1(F.silu(self.norm1(x)), neighbours)  # (N, 8 C_out)
        h = h.view(x.shape[0], 8, self.out_channels)[parent, slot]  # (M, C_out)
        skip = x.view(x.shape[0], 8, -1)[parent, slot]  # (M, C_in / 8)
        skip = skip.repeat_interleave(self.out_channels // skip.shape[1], dim=1)  # (M, C_out)
        nb = neighbour_map(children)
        return self.conv2(F.silu(self.norm2(h)), nb) + skip, children, nb, logits


def spatial_to_channel_index(coords: Tensor) -> tuple[Tensor, Tensor]:
    """Parents (M, 4) of `coords (N, 4)` and each voxel's row in the (M·8) child table: parent·8 + slot."""
    parent = coords.clone()
    parent[:, 1:] = torch.div(coords[:, 1:], 2, rounding_mode="floor")
    parents, inverse = torch.unique(parent, dim=0, return_inverse=True)
    bits = coords[:, 1:] % 2
    return parents, inverse * 8 + bits[:, 0] + 2 * bits[:, 1] + 4 * bits[:, 2]


def spatial_to_channel(feats: Tensor, index: Tensor, parents: int) -> Tensor:
    """(N, C) child features -> (M, 8·C), child slot k in channels [k·C, (k+1)·C), zeros for absent children."""
    table = feats.new_zeros(parents * 8, feats.shape[1])
    table[index] = feats
    return table.view(parents, 8 * feats.shape[1])


def _levels(
    model_channels: tuple[int, ...], num_blocks: tuple[int, ...], resample: type[nn.Module], **kwargs: Any
) -> nn.ModuleList:
    """TRELLIS' `blocks`: per level its ConvNeXt blocks, then (except the last level) one resampling block."""
    levels = nn.ModuleList()
    for i, (ch, n) in enumerate(zip(model_channels, num_blocks)):
        level = nn.ModuleList(ConvNeXtBlock(ch) for _ in range(n))
        if i + 1 < len(model_channels):
            level.append(resample(ch, model_channels[i + 1], **kwargs))
        levels.append(level)
    return levels


class Trellis2SCVAEEncoder(nn.Module):
    """`encode(fine features (N, C))` -> latent means, logvar (M, 32) on the 16× coarser voxels."""

    def __init__(self, config: Trellis2SCVAEConfig) -> None:
        super().__init__()
        self.config = config
        mc = config.model_channels
        self.input_layer = nn.Linear(config.channels, mc[0])
        self.blocks = _levels(mc, config.num_blocks, DownBlock)
        self.to_latent = nn.Linear(mc[-1], 2 * config.latent_channels)

    @property
    def downsampling(self) -> int:
        return self.config.downsampling

    def encode(self, x: SparseTensor) -> tuple[SparseTensor, Tensor]:
        coords = x.batch_coords
        h, nb = self.input_layer(x.feats.to(self.input_layer.weight.dtype)), neighbour_map(coords)
        for level in self.blocks:
            for block in level:
                if isinstance(block, DownBlock):
                    h, coords, nb = block(h, coords, nb)
                else:
                    h = block(h, nb)
        mean, logvar = self.to_latent(F.layer_norm(h, h.shape[-1:])).chunk(2, dim=-1)
        return x.with_batch_voxels(coords, mean), logvar


class Trellis2SCVAEDecoder(nn.Module):
    """`decode(latent (M, 32) on coarse voxels, guide?)` -> `DecoderOutput` on the 16× finer voxels.

    `exists_logits` holds each up block's (N_level, 8) subdivision logits; a guided decoder (the texture one)
    takes them from the shape decoder's output (`guide`), so its voxels are the shape decoder's, row for row.
    """

    def __init__(self, config: Trellis2SCVAEConfig) -> None:
        super().__init__()
        self.config = config
        mc = config.model_channels
        self.from_latent = nn.Linear(config.latent_channels, mc[0])
        self.blocks = _levels(mc, config.num_blocks, UpBlock, pred_subdiv=config.pred_subdiv)
        self.output_layer = nn.Linear(mc[-1], config.channels)

    @property
    def downsampling(self) -> int:
        return self.config.downsampling

    def decode(
        self, latent: SparseTensor, fine: SparseTensor | None = None, guide: DecoderOutput | None = None
    ) -> DecoderOutput:
        if fine is not None:
            raise InputError("TRELLIS.2 decoders are guided by subdivision masks (guide=), not by fine voxels")
        masks = [logits > 0 for logits in guide.exists_logits] if guide is not None else None
        h, coords, logits = self._trunk(latent, masks, len(self.config.model_channels))
        raw = self.output_layer(F.layer_norm(h, h.shape[-1:]))
        return DecoderOutput(latent.with_batch_voxels(coords, raw.float()), logits)

    def upsample(self, latent: SparseTensor, times: int) -> SparseTensor:
        """The voxels after `times` up blocks, with the trunk's features there, not decoded (TRELLIS.2's cascade
        uses the 512-level voxels of a first pass to place the 1024 models' tokens)."""
        h, coords, _ = self._trunk(latent, None, times)
        return latent.with_batch_voxels(coords, h)

    def _trunk(
        self, latent: SparseTensor, masks: list[Tensor] | None, levels: int
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Features and voxels (`batch_coords`) after the first `levels` levels (each: its blocks, then its up
        block)."""
        coords = latent.batch_coords
        h = self.from_latent(latent.feats.to(self.from_latent.weight.dtype))
        nb, logits_all = neighbour_map(coords), []
        for level in list(self.blocks)[:levels]:
            for block in level:
                if isinstance(block, UpBlock):
                    keep = masks[len(logits_all)] if masks is not None else None
                    h, coords, nb, logits = block(h, coords, nb, keep)
                    logits_all.append(logits if logits is not None else keep.float() * 2 - 1)
                else:
                    h = block(h, nb)
        return h, coords, logits_all

    def features(self, raw: Tensor) -> Tensor:
        """Shape: (dual vertex in [-m, 1+m], intersected logits, quad_lerp ≥ 0); texture: PBR = raw · 0.5 + 0.5."""
        if not self.config.geometry:
            return raw * 0.5 + 0.5
        m = self.config.voxel_margin
        return torch.cat([(1 + 2 * m) * torch.sigmoid(raw[:, :3]) - m, raw[:, 3:6], F.softplus(raw[:, 6:7])], 1)

    @staticmethod
    def ovoxel(resolution: int, coords: Tensor, geometry: Tensor, material: Tensor) -> OVoxel:
        """One frame's O-Voxel from this shape decoder's `features` and the texture decoder's."""
        return ovoxel_from_trellis2(resolution, coords, geometry, material)
