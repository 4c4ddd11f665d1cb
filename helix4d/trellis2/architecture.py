"""The `trellis2` architecture (docs/design.md §9): converted TRELLIS.2 folders, as the core loads and fine-tunes them.

Its components are TRELLIS.2's (`helix4d.trellis2.folder`); new data becomes its latents through TRELLIS.2's own
encoders (`helix4d.trellis2.latents`); DINOv3 stays frozen and its VAEs are used as released, as TRELLIS.2 trains.
Its two steps of its own in generation: stage 1's 64³ occupancy max-pooled onto the geometry latent grid, and the
cascade (a low-resolution geometry pass that places the voxels of the high-resolution one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from helix4d.pipeline.architecture import Architecture, LatentEncoders
from helix4d.pipeline.config import PipelineConfig
from helix4d.pipeline.generation import Generation
from helix4d.pipeline.helix4d import Helix4DPipeline, resolve_device
from helix4d.sparse import SparseTensor
from helix4d.trellis2.convert import plan_trellis2
from helix4d.trellis2.dino import DinoEncoder
from helix4d.trellis2.folder import load_trellis2_components, load_trellis2_image_encoder
from helix4d.trellis2.latents import Trellis2Encoders


class _Trellis2:
    own_vaes = False

    def load_components(self, folder: Path, config: PipelineConfig) -> dict[str, nn.Module]:
        return load_trellis2_components(folder, config)

    def latent_encoders(self, folder: Path, config: PipelineConfig, device: str) -> LatentEncoders:
        return Trellis2Encoders(folder, config, device)

    def training_image_encoder(self, folder: Path, config: PipelineConfig, stage: str) -> tuple[str, nn.Module, Any]:
        return "image_encoder", load_trellis2_image_encoder(folder, config), None

    def coarse_logits(self, logits: Tensor, config: PipelineConfig, downsampling: int) -> Tensor:
        """TRELLIS.2's stage 1 decodes 64³; its 512 models (and the cascade's first pass) sample on 32³: the
        occupancy is max-pooled onto that grid."""
        side = (config.cascade_from or config.resolution) // downsampling
        if logits.shape[-1] > side:
            logits = F.max_pool3d(logits[:, None], logits.shape[-1] // side)[:, 0]
        return logits

    def place_voxels(self, run: Generation, cond: Tensor, coarse: list[Tensor]) -> list[Tensor]:
        """TRELLIS.2's cascade (`cascade_from`): a geometry pass with the low-resolution flow, its voxels upsampled
        by the decoder to full detail at that resolution, then re-quantised onto the latent grid of the
        high-resolution models. Without a cascade, stage 1's voxels as they are."""
        config = run.pipe.config
        if not config.cascade_from:
            return coarse
        with run.pipe.using("geometry_vae"):
            lr = run.sample_stage("geometry", "geometry_flow_lr", coarse, cond, stream="geometry_lr")
            vae = run.pipe.geometry_vae
            latent = SparseTensor.of_sequence(coarse, run.normalise("geometry", lr, inverse=True).to(run.device))
            fine = vae.upsample(latent, len(vae.config.model_channels) - 1).coords  # (N, 4) voxels at cascade_from³
        grid = config.resolution // vae.downsampling
        cells = torch.floor((fine[:, 1:].double() + 0.5) / config.cascade_from * grid).long()
        return [torch.unique(cells[fine[:, 0] == f], dim=0).cpu() for f in range(len(coarse))]


ARCHITECTURE: Architecture = _Trellis2()


def trellis2_pipeline(
    folder: str | Path,
    dino: str | Path,
    resolution: int = 512,
    cascade: bool = False,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    offload: bool = False,
) -> Helix4DPipeline:
    """Run on the official TRELLIS.2 weights the user downloaded, without converting them to a folder first
    (`folder`: microsoft/TRELLIS.2-4B plus the stage-1 decoder of microsoft/TRELLIS-image-large in its ckpts/;
    `dino`: facebook/dinov3-vitl16-pretrain-lvd1689m). Every checkpoint is checked strictly; flows are held in
    `dtype` (bf16: ~7.8 GB for three). `resolution=1024, cascade=True` is TRELLIS.2's default mode (a 512
    geometry pass first)."""
    plan = plan_trellis2(folder, resolution, cascade)
    components = {name: module for name, module, _ in plan.components(dtype)}
    components["image_encoder"] = DinoEncoder.from_folder(dino)
    return Helix4DPipeline(plan.pipeline_config(), components, resolve_device(device), offload)
