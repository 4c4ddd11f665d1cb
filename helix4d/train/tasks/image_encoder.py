"""`image_encoder`: stage 1's own condition encoder, trained on condition image -> coarse occupancy."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from helix4d.models.image_encoder import ImageEncoder, OccupancyProbe
from helix4d.pipeline.architecture import read_trainable_pipeline_config, stage1_encoder_name
from helix4d.pipeline.folder import load_component, read_component_config
from helix4d.train.config import TrainConfig
from helix4d.train.task import Task, register_task
from helix4d.train.tasks.clips import LatentClips
from helix4d.train.tasks.common import fresh_of_shape, install_component, task_options


@dataclasses.dataclass(frozen=True)
class ImageEncoderOptions:
    """`image_encoder` task options: model, latents (from `helix4d model encode-latents`; default: `data`), and
    encoder (ImageEncoderConfig fields: a fresh encoder of that shape instead, e.g. a deeper one)."""

    model: str
    latents: str | None = None
    encoder: dict[str, Any] | None = None


class EncoderWithProbe(nn.Module):
    """The image encoder and its occupancy probe with a class-balanced BCE, as one module so DDP wraps both."""

    def __init__(self, encoder: ImageEncoder, probe: OccupancyProbe) -> None:
        super().__init__()
        self.encoder, self.probe = encoder, probe

    def forward(self, images: Tensor, occupancy: Tensor) -> tuple[Tensor, dict[str, float]]:
        """images (B, 4, S, S) uint8, occupancy (B, R, R, R) in {0, 1} -> loss, metrics."""
        logits = self.probe(self.encoder(images.float() / 255.0))  # (B, R, R, R)
        pos_weight = ((1 - occupancy).sum() / occupancy.sum().clamp(min=1)).clamp(max=20.0)
        loss = F.binary_cross_entropy_with_logits(logits, occupancy, pos_weight=pos_weight)
        with torch.no_grad():
            pred, gt = logits > 0, occupancy > 0.5
            iou = ((pred & gt).flatten(1).sum(1) / (pred | gt).flatten(1).sum(1).clamp(min=1)).mean().item()
        return loss, {"iou": iou}


@register_task("image_encoder")
class ImageEncoderTask(Task):
    """Train stage 1's own encoder (`ss_image_encoder`) on condition image -> coarse occupancy (the stage-1 target's
    shape) through an `OccupancyProbe`, before the stage-1 flow is trained on its tokens; a folder without one starts
    it from its `image_encoder`, which stays as it is (stages 2-3 read it). options: model, latents (encoded with
    `helix4d model encode-latents`), encoder (ImageEncoderConfig fields: a fresh encoder of that shape instead, e.g.
    a deeper one; `dim` must stay the stage-1 flow's `cond_dim`). Only the encoder is written back; the probe is
    training scaffolding."""

    def __init__(self, config: TrainConfig) -> None:
        self.options = task_options(config, ImageEncoderOptions)
        self.config, self.model_folder = config, Path(self.options.model)
        read_trainable_pipeline_config(self.model_folder)  # our own encoder only (DINOv3 stays frozen)
        self.latents = Path(self.options.latents or config.data or "")

    def build_model(self) -> nn.Module:
        start = stage1_encoder_name(self.model_folder)  # continue stage 1's encoder, or start from the shared one
        encoder, self.encoder_config = load_component(start, self.model_folder / start)
        fresh = fresh_of_shape(self.encoder_config, self.options.encoder, "encoder")
        if fresh is not None:
            encoder, self.encoder_config = ImageEncoder(fresh), fresh
        ss = read_component_config("ss_vae", self.model_folder / "ss_vae")
        self.resolution = ss.resolution
        probe = OccupancyProbe(
            self.encoder_config.dim, self.encoder_config.heads, ss.resolution, ss.resolution // 2 ** len(ss.channels)
        )
        return EncoderWithProbe(encoder.train(), probe)

    def dataset(self) -> Dataset:
        return LatentClips(self.latents, 1, self.config.seed)

    def collate(self, batch: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
        r = self.resolution
        occupancy = torch.zeros(len(batch), r, r, r)
        for i, item in enumerate(batch):
            c = item["coarse"][0].long()  # (n, 3)
            occupancy[i, c[:, 0], c[:, 1], c[:, 2]] = 1.0
        return torch.cat([item["images"] for item in batch]), occupancy

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor], generator: torch.Generator):
        return model(*batch)

    def save_artifact(self, model: nn.Module, out_dir: Path) -> None:
        install_component(model.encoder, self.encoder_config, self.model_folder, "ss_image_encoder", out_dir)
