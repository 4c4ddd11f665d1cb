"""The model `helix4d bench gpu` times: every TRELLIS.2 component at one size with random weights, and the calls that
run them as `Helix4DPipeline` runs a chunk.

Speed does not depend on the weights' values, so nothing is downloaded: every component is built at TRELLIS.2's size
(`helix4d.bench.workload.trellis2_size`) with random weights, in bf16; the decoders keep their norms in float32, as
TRELLIS.2 runs them in half precision (helix4d's converted pipeline holds its decoders in float32 today: the bench
measures what bf16 decoding costs, which is what the sparse-convolution backends are for). Parameters that start at
zero (adaLN-Zero gates, zeroed output layers, biases) are drawn small but non-zero, so that every block, and the
attention inside it, changes the output: otherwise any two attention backends would agree trivially.

The tokens are those of a typical TRELLIS.2 output (`helix4d.bench.workload.shell_voxels`: ~2.4 K latent tokens a
frame, ~6 × 10⁵ O-Voxels at 512³). Stage 1's occupancy is decoded and timed but not used: its random weights would
place arbitrary voxels. Both SC-VAE decoders are guided to the shell's voxels (as the texture decoder is guided by
the shape decoder in the pipeline), so their work does not depend on random subdivision logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from helix4d.bench.workload import Trellis2Size, shell_voxels
from helix4d.models.flow import FlowTransformer
from helix4d.models.interfaces import DecoderOutput
from helix4d.nn.blocks import FrameAttention
from helix4d.pipeline.sampler import SamplerConfig, sample
from helix4d.settings import WINDOW
from helix4d.sparse import SparseTensor
from helix4d.trellis2.sc_vae import LayerNorm32, Trellis2SCVAEDecoder
from helix4d.trellis2.ss_vae import ChannelLayerNorm, Trellis2SSDecoder

DTYPE = torch.bfloat16
FLOW_STAGES = ("ss", "geometry", "material")


# ------------------------------------------------------------------------------------------------ the model
@dataclass
class Trellis2Components:
    """Every component of the TRELLIS.2 architecture at one size, random weights, on one device."""

    size: Trellis2Size
    image_encoder: nn.Module | None  # None without transformers: random condition tokens instead
    flows: dict[str, FlowTransformer]
    ss_decoder: Trellis2SSDecoder
    shape_decoder: Trellis2SCVAEDecoder
    texture_decoder: Trellis2SCVAEDecoder


def build_components(size: Trellis2Size, device: torch.device) -> Trellis2Components:
    with torch.device(device):
        flows = {stage: randomise_zeros(FlowTransformer(size.flows[stage])) for stage in FLOW_STAGES}
        parts = Trellis2Components(
            size=size,
            image_encoder=_dino(size),
            flows=flows,
            ss_decoder=Trellis2SSDecoder(size.ss_decoder),
            shape_decoder=randomise_zeros(Trellis2SCVAEDecoder(size.shape_decoder)),
            texture_decoder=randomise_zeros(Trellis2SCVAEDecoder(size.texture_decoder)),
        )
    for module in (parts.image_encoder, *flows.values(), parts.ss_decoder, parts.shape_decoder, parts.texture_decoder):
        if module is not None:
            module.to(DTYPE).eval().requires_grad_(False)
    for module in (parts.ss_decoder, parts.shape_decoder, parts.texture_decoder):
        for norm in module.modules():
            if isinstance(norm, (LayerNorm32, ChannelLayerNorm)):
                norm.float()  # TRELLIS' float32 norms: they compute in float32 whatever the rest
    return parts


def _dino(size: Trellis2Size) -> nn.Module | None:
    try:
        from transformers import DINOv3ViTConfig, DINOv3ViTModel
    except ImportError:
        return None
    from helix4d.trellis2.dino import DinoEncoder

    return DinoEncoder(DINOv3ViTModel(DINOv3ViTConfig(**size.dino)), size.image_size)


@torch.no_grad()
def randomise_zeros(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Draw every parameter that starts at exactly zero from N(0, std²) (see the module docstring)."""
    for p in module.parameters():
        if not bool(p.any()):
            p.normal_(0.0, std)
    return module


# ------------------------------------------------------------------------------------------------ the stages
class Velocity:
    """The sampler's velocity function for fixed tokens: the flow's prediction, unconditional = zero condition."""

    def __init__(
        self, flow: FlowTransformer, tokens: SparseTensor, cond: Tensor, extra: Tensor | None, attention: FrameAttention
    ) -> None:
        self.flow, self.tokens, self.cond, self.extra, self.attention = flow, tokens, cond, extra, attention

    def __call__(self, x: Tensor, t: float, conditioned: bool) -> Tensor:
        cond = self.cond if conditioned else torch.zeros_like(self.cond)
        tt = x.new_full((x.shape[0],), t)
        return self.flow(self.tokens.replace(x), tt, cond, self.attention, self.extra)  # (N, C)


def sample_clip(
    flow: FlowTransformer,
    coords: list[Tensor],
    cond: Tensor,
    sampler: SamplerConfig,
    extra: Tensor | None = None,
    backend: str = "loop",
    window: int = WINDOW,
) -> Tensor:
    """Latents (N, C) for the tokens at coords[f] (n_f, 3) of each frame, frames concatenated, as
    `Helix4DPipeline` samples a chunk: frame 0 alone through the static model, its clean latent once more to fill
    the anchor cache, then frames 1..F-1 together reading it. cond (F, L, C_cond); extra (N, C_extra) or None."""
    sizes = [len(c) for c in coords]
    noise = torch.randn(sum(sizes), flow.config.in_channels, device=cond.device)  # (N, C)
    given = list(extra.split(sizes)) if extra is not None else [None] * len(sizes)
    anchor = SparseTensor.from_frames(coords[:1], [noise[: sizes[0]]])
    first = sample(
        Velocity(flow, anchor, cond[:1], given[0], FrameAttention(window, backend=backend)), anchor.feats, sampler
    )  # (n_0, C)
    if len(coords) == 1:
        return first
    cache = flow.empty_anchor_cache()
    flow(
        anchor.replace(first),
        first.new_zeros(sizes[0]),
        cond[:1],
        FrameAttention(window, True, cache, backend=backend),
        given[0],
    )
    rest = SparseTensor.of_sequence(coords, noise).select_frames(list(range(1, len(coords))))
    attention = FrameAttention(window, True, cache, anchor_included=False, backend=backend)
    rest_extra = extra[sizes[0] :] if extra is not None else None
    others = sample(Velocity(flow, rest, cond[1:], rest_extra, attention), rest.feats, sampler, groups=sizes[1:])
    return torch.cat([first, others])  # (N, C)


@dataclass
class ClipTokens:
    """The voxels one bench clip works on: per frame stage 1's dense grid and the shell's latent voxels, and the
    shell's subdivision masks per decoder level (all frames)."""

    grid: list[Tensor]
    latent: list[Tensor]
    masks: list[Tensor]

    @classmethod
    def make(cls, size: Trellis2Size, frames: int, device: torch.device) -> ClipTokens:
        r = size.ss_decoder.latent_resolution
        grid = torch.stack(torch.meshgrid(*(torch.arange(r, device=device),) * 3, indexing="ij"), -1).reshape(-1, 3)
        latent, masks = shell_voxels(size.resolution, size.levels, frames, device=device)
        return cls([grid] * frames, latent, masks)


def decode_clip(
    parts: Trellis2Components, tokens: ClipTokens, geometry: Tensor, material: Tensor
) -> tuple[DecoderOutput, DecoderOutput]:
    """Both SC-VAE decoders on the shell's voxels (guided by its subdivision masks)."""
    guide = DecoderOutput(SparseTensor.of_sequence(tokens.latent, geometry), [m.float() * 2 - 1 for m in tokens.masks])
    shape = parts.shape_decoder.decode(SparseTensor.of_sequence(tokens.latent, geometry), guide=guide)
    texture = parts.texture_decoder.decode(SparseTensor.of_sequence(tokens.latent, material), guide=guide)
    return shape, texture
