"""TRELLIS.2's stage-1 VAE: TRELLIS (v1)'s dense Conv3d sparse-structure decoder and encoder, names and shapes exact.

`ss_dec_conv3d_16l8_fp16` (from microsoft/TRELLIS-image-large, `SparseStructureDecoder`): latent (8, 16³) →
Conv3d → 2 middle res-blocks → per level [2 res-blocks, ×2 pixel-shuffle upsampling] over channels 512 → 128 → 32
→ LayerNorm · SiLU · Conv3d → occupancy logits (1, 64³). Norms are channel LayerNorms with affine, computed in
float32 (`norm_type="layer"`, TRELLIS' default). A voxel is occupied where its logit is > 0; TRELLIS.2's 512 and
cascade modes then max-pool the 64³ occupancy to 32³, the 512 models' latent grid (done by the pipeline).

`ss_enc_conv3d_16l8_fp16` (`SparseStructureEncoder`, for fine-tuning on new data) mirrors it: occupancy (1, 64³) →
Conv3d → per level [2 res-blocks, 2×2×2 stride-2 Conv3d] over 32 → 128 → 512 → 2 middle res-blocks → LayerNorm ·
SiLU · Conv3d → mean and log-variance (8 + 8, 16³). TRELLIS.2 encodes the 64³ occupancy of its shape latents'
voxels (`data_toolkit/encode_ss_latent.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from helix4d.errors import ConfigError


@dataclass
class Trellis2SSDecoderConfig:
    latent_channels: int = 8
    channels: tuple[int, ...] = (512, 128, 32)  # one ×2 upsampling between consecutive entries
    num_res_blocks: int = 2
    num_res_blocks_middle: int = 2
    out_channels: int = 1
    latent_resolution: int = 16

    @property
    def resolution(self) -> int:
        """Side of the decoded occupancy grid: one ×2 upsampling between consecutive channel entries."""
        return self.latent_resolution * 2 ** (len(self.channels) - 1)

    @classmethod
    def from_trellis(cls, name: str, args: dict[str, Any], where: str) -> Trellis2SSDecoderConfig:
        """From a checkpoint config `{"name": "SparseStructureDecoder", "args": {...}}`; other variants are errors."""
        args = _check_args("SparseStructureDecoder", name, args, where)
        return cls(out_channels=int(args["out_channels"]), **_common(args))


@dataclass
class Trellis2SSEncoderConfig:
    latent_channels: int = 8
    channels: tuple[int, ...] = (32, 128, 512)  # one ×2 downsampling between consecutive entries
    num_res_blocks: int = 2
    num_res_blocks_middle: int = 2
    in_channels: int = 1

    @classmethod
    def from_trellis(cls, name: str, args: dict[str, Any], where: str) -> Trellis2SSEncoderConfig:
        """From a checkpoint config `{"name": "SparseStructureEncoder", "args": {...}}`; other variants are errors."""
        args = _check_args("SparseStructureEncoder", name, args, where)
        return cls(in_channels=int(args["in_channels"]), **_common(args))


def _check_args(expected: str, name: str, args: dict[str, Any], where: str) -> dict[str, Any]:
    if name != expected:
        raise ConfigError(f"{where}: {name!r} is not TRELLIS' {expected}")
    if args.get("norm_type", "layer") != "layer":
        raise ConfigError(f"{where}: norm_type={args['norm_type']!r} is not supported (only 'layer')")
    io = "out_channels" if expected == "SparseStructureDecoder" else "in_channels"
    unknown = sorted(
        set(args)
        - {io, "latent_channels", "num_res_blocks", "num_res_blocks_middle", "channels", "norm_type", "use_fp16"}
    )
    if unknown:
        raise ConfigError(f"{where}: unknown {expected} args {unknown}")
    return args


def _common(args: dict[str, Any]) -> dict[str, Any]:
    return dict(
        latent_channels=int(args["latent_channels"]),
        channels=tuple(int(c) for c in args["channels"]),
        num_res_blocks=int(args["num_res_blocks"]),
        num_res_blocks_middle=int(args.get("num_res_blocks_middle", 2)),
    )


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of (B, C, ...) tensors, in float32 (TRELLIS' ChannelLayerNorm32)."""

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(x.movedim(1, -1).float())  # (B, ..., C)
        return y.movedim(-1, 1).to(x.dtype)


class ResBlock3d(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = ChannelLayerNorm(channels), nn.Conv3d(channels, channels, 3, padding=1)
        self.norm2, self.conv2 = ChannelLayerNorm(channels), nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C, R, R, R)
        return x + self.conv2(F.silu(self.norm2(h)))  # (B, C, R, R, R)


class UpsampleBlock3d(nn.Module):
    """Conv3d to 8× the channels, then a 3D pixel shuffle (channel c·8 + 4i + 2j + k → offset (i, j, k))."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels * 8, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)  # (B, 8C, R, R, R)
        b, c8, r = h.shape[0], h.shape[1], h.shape[2]
        h = h.reshape(b, c8 // 8, 2, 2, 2, r, r, r).permute(0, 1, 5, 2, 6, 3, 7, 4)  # (B, C, R, 2, R, 2, R, 2)
        return h.reshape(b, c8 // 8, 2 * r, 2 * r, 2 * r)  # (B, C, 2R, 2R, 2R)


class DownsampleBlock3d(nn.Module):
    """2×2×2 stride-2 Conv3d (TRELLIS' `DownsampleBlock3d`, mode "conv")."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)  # (B, C_out, R/2, R/2, R/2)


def _levels(channels: tuple[int, ...], res_blocks: int, resample: type[nn.Module]) -> nn.ModuleList:
    """TRELLIS' flat `blocks`: per level its res-blocks, then (except the last level) one resampling block."""
    blocks: list[nn.Module] = []
    for i, ch in enumerate(channels):
        blocks += [ResBlock3d(ch) for _ in range(res_blocks)]
        if i + 1 < len(channels):
            blocks.append(resample(ch, channels[i + 1]))
    return nn.ModuleList(blocks)


def _output_head(channels: int, out_channels: int) -> nn.Sequential:
    """`out_layer`: channel LayerNorm, SiLU, 3³ convolution."""
    return nn.Sequential(ChannelLayerNorm(channels), nn.SiLU(), nn.Conv3d(channels, out_channels, 3, padding=1))


class Trellis2SSDecoder(nn.Module):
    """`decode(latent (B, 8, 16, 16, 16))` -> occupancy logits (B, 1, 64, 64, 64); parameter names as TRELLIS."""

    def __init__(self, config: Trellis2SSDecoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.input_layer = nn.Conv3d(config.latent_channels, c[0], 3, padding=1)
        self.middle_block = nn.Sequential(*(ResBlock3d(c[0]) for _ in range(config.num_res_blocks_middle)))
        self.blocks = _levels(c, config.num_res_blocks, UpsampleBlock3d)
        self.out_layer = _output_head(c[-1], config.out_channels)

    @property
    def latent_resolution(self) -> int:
        return self.config.latent_resolution

    @property
    def resolution(self) -> int:
        return self.config.resolution

    def decode(self, latent: Tensor) -> Tensor:
        """latent (B, C_lat, r, r, r) -> occupancy logits (B, out_channels, R, R, R), R = r · 2^(levels - 1)."""
        h = self.middle_block(self.input_layer(latent))  # (B, c0, r, r, r)
        for block in self.blocks:
            h = block(h)
        return self.out_layer(h)  # (B, 1, R, R, R)

    forward = decode


class Trellis2SSEncoder(nn.Module):
    """`encode(occupancy (B, 1, 64, 64, 64))` -> mean, logvar (B, 8, 16, 16, 16); parameter names as TRELLIS."""

    def __init__(self, config: Trellis2SSEncoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.input_layer = nn.Conv3d(config.in_channels, c[0], 3, padding=1)
        self.blocks = _levels(c, config.num_res_blocks, DownsampleBlock3d)
        self.middle_block = nn.Sequential(*(ResBlock3d(c[-1]) for _ in range(config.num_res_blocks_middle)))
        self.out_layer = _output_head(c[-1], 2 * config.latent_channels)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.config.channels) - 1)

    def encode(self, occupancy: Tensor) -> tuple[Tensor, Tensor]:
        h = self.input_layer(occupancy.to(self.input_layer.weight.dtype))  # (B, c0, R, R, R)
        for block in self.blocks:
            h = block(h)
        return self.out_layer(self.middle_block(h)).chunk(2, dim=1)  # (B, C_lat, r, r, r) each
