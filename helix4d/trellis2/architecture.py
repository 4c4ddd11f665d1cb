"""The `trellis2` architecture (DESIGN §9): converted TRELLIS.2 folders, as the core loads and fine-tunes them.

Its components are TRELLIS.2's (`helix4d.trellis2.folder`); new data becomes its latents through TRELLIS.2's own
encoders (`helix4d.trellis2.latents`); DINOv3 stays frozen and its VAEs are used as released, as TRELLIS.2 trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from helix4d.pipeline.architecture import Architecture, LatentEncoders
from helix4d.pipeline.config import PipelineConfig
from helix4d.pipeline.helix4d import Helix4DPipeline, resolve_device
from helix4d.trellis2.convert import plan_trellis2
from helix4d.trellis2.dino import DinoEncoder
from helix4d.trellis2.folder import load_trellis2_components, load_trellis2_image_encoder
from helix4d.trellis2.latents import Trellis2Encoders


class _Trellis2:
    name = "trellis2"
    own_vaes = False

    def load_components(self, folder: Path, config: PipelineConfig) -> dict[str, nn.Module]:
        return load_trellis2_components(folder, config)

    def latent_encoders(self, folder: Path, config: PipelineConfig, device: str) -> LatentEncoders:
        return Trellis2Encoders(folder, config, device)

    def training_image_encoder(self, folder: Path, config: PipelineConfig, stage: str) -> tuple[str, nn.Module, Any]:
        return "image_encoder", load_trellis2_image_encoder(folder, config), None


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
