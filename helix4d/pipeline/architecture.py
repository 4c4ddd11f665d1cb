"""Architectures (docs/design.md §9): what a model folder's components are, resolved in one place when the folder loads.

An architecture is one table from component names to classes, plus the few steps that differ between
architectures: how its components load, how new data becomes its latents (to fine-tune its flows), which image
encoder a flow reads while training, and whether its VAEs are trained here. The pipeline, training and evaluation
ask `architecture_of(config)` and never which one they run.

`helix4d` (this project's own components) lives here; `trellis2` (converted TRELLIS.2 weights) lives in
`helix4d.trellis2.architecture` and is imported only when such a folder loads, since it needs the `trellis2`
extra. `ARCHITECTURES` names each one's module, so nothing here imports an architecture built on top of the core.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol, cast

from torch import Tensor, nn

from helix4d.errors import ConfigError
from helix4d.models.sc_vae import SCVAE
from helix4d.models.ss_vae import SSVAE
from helix4d.ovoxel import OVoxel
from helix4d.ovoxel.representation import voxel_features
from helix4d.pipeline.config import COMPONENTS, OPTIONAL_COMPONENTS, PipelineConfig
from helix4d.pipeline.folder import load_component, read_pipeline_config
from helix4d.pipeline.generation import Generation
from helix4d.sparse import SparseTensor
from helix4d.sparse.conv import coarse_occupancy

ARCHITECTURES = {"helix4d": "helix4d.pipeline.architecture", "trellis2": "helix4d.trellis2.architecture"}


class LatentEncoders(Protocol):
    """Turns one sequence's O-Voxels into the latents its flows are trained on (`helix4d model encode-latents`)."""

    def ss(self, fine: Tensor, frames: int) -> Tensor:
        """fine voxels (N, 4) [frame, x, y, z] -> (F, C, r, r, r) stage-1 latents of the occupied coarse grid."""

    def coarse(self, fine: Tensor, frames: int) -> Tensor:
        """fine voxels (N, 4) -> (M, 4) [frame, x, y, z] the coarse voxels `geometry` puts its latents on, without
        running it (stage-1-only latents)."""

    def geometry(self, ovoxels: list[OVoxel]) -> SparseTensor:
        """-> geometry latents (M, C) on the coarse voxels."""

    def material(self, ovoxels: list[OVoxel]) -> SparseTensor:
        """-> material latents (M, C) on the coarse voxels, the geometry's."""


class Architecture(Protocol):
    """What the core needs of an architecture; `ARCHITECTURE` in the module `ARCHITECTURES` names."""

    own_vaes: bool  # the VAEs come with their encoders and are trained here (else: decoders as released)

    def load_components(self, folder: Path, config: PipelineConfig) -> dict[str, nn.Module]:
        """Every component of the folder, loaded strictly."""

    def latent_encoders(self, folder: Path, config: PipelineConfig, device: str) -> LatentEncoders:
        """The encoders that turn new data into this architecture's latents."""

    def training_image_encoder(self, folder: Path, config: PipelineConfig, stage: str) -> tuple[str, nn.Module, Any]:
        """(component name, module, config) of the image encoder a flow of `stage` reads; the config is None
        where the encoder stays frozen (it is not this project's to train or to save)."""

    def coarse_logits(self, logits: Tensor, config: PipelineConfig, downsampling: int) -> Tensor:
        """Stage 1's decoded occupancy logits (F, R, R, R) on the latent grid the geometry stage samples on
        (`downsampling`: the geometry VAE's fine-to-latent factor)."""

    def place_voxels(self, run: Generation, cond: Tensor, coarse: list[Tensor]) -> list[Tensor]:
        """The per-frame latent voxels (n_f, 3) the geometry stage samples on, from stage 1's. `run` is the
        generation in progress (it can sample a stage of the architecture's own: `sample_stage`)."""


def architecture_of(config: PipelineConfig) -> Architecture:
    """The architecture a folder's pipeline.json names (its module imported on first use)."""
    try:
        module = importlib.import_module(ARCHITECTURES[config.architecture])
    except KeyError:
        raise ConfigError(
            f"unknown architecture {config.architecture!r}; expected one of {sorted(ARCHITECTURES)}"
        ) from None
    return module.ARCHITECTURE


def load_components(folder: Path, config: PipelineConfig) -> dict[str, nn.Module]:
    """Every component of a model folder, by the architecture its pipeline.json names."""
    return architecture_of(config).load_components(folder, config)


def read_trainable_pipeline_config(folder: Path) -> PipelineConfig:
    """pipeline.json of a folder whose VAEs can be trained: an architecture with its own VAEs."""
    config = read_pipeline_config(folder)
    if not architecture_of(config).own_vaes:
        raise ConfigError(
            f"{folder} holds converted {config.architecture} weights: its VAEs are used as released and not "
            "trained here; fine-tune its flows (`task: flow`) on latents from `helix4d model encode-latents`"
        )
    return config


def stage1_encoder_name(folder: Path) -> str:
    """The component whose tokens condition stage 1: `ss_image_encoder` when the folder has one."""
    return "ss_image_encoder" if (folder / "ss_image_encoder").is_dir() else "image_encoder"


class _OwnEncoders:
    """The encoders of a helix4d model folder: its own three VAEs."""

    def __init__(self, model: Path, device: str) -> None:
        self.ss_vae = cast(SSVAE, load_component("ss_vae", model / "ss_vae")[0]).to(device)
        self.geo_vae = cast(SCVAE, load_component("geometry_vae", model / "geometry_vae")[0]).to(device)
        self.mat_vae = cast(SCVAE, load_component("material_vae", model / "material_vae")[0]).to(device)
        self.device = device

    def ss(self, fine: Tensor, frames: int) -> Tensor:
        levels = len(self.geo_vae.config.channels) - 1
        occ = coarse_occupancy(fine.cpu(), levels, frames, self.ss_vae.config.resolution).to(self.device)
        return self.ss_vae.encode(occ)[0]

    def coarse(self, fine: Tensor, frames: int) -> Tensor:
        levels = len(self.geo_vae.config.channels) - 1  # the geometry VAE halves the grid once per level
        occ = coarse_occupancy(fine.cpu(), levels, frames, self.ss_vae.config.resolution)  # (F, 1, r, r, r)
        return occ[:, 0].nonzero()  # (M, 4) int64, in the geometry encoder's (frame, x, y, z) order

    def geometry(self, ovoxels: list[OVoxel]) -> SparseTensor:
        feats = [v.geometry_features(oriented=True) for v in ovoxels]
        return self.geo_vae.encode(voxel_features(ovoxels, feats).to(self.device))[0]

    def material(self, ovoxels: list[OVoxel]) -> SparseTensor:
        feats = [v.material_features() for v in ovoxels]
        return self.mat_vae.encode(voxel_features(ovoxels, feats).to(self.device))[0]


class _Own:
    """helix4d's own components (`pipeline.config.CONFIG_TYPES`), every one trained by this project."""

    own_vaes = True

    def load_components(self, folder: Path, config: PipelineConfig) -> dict[str, nn.Module]:
        present = [name for name in OPTIONAL_COMPONENTS if (folder / name).is_dir()]
        return {name: load_component(name, folder / name)[0] for name in COMPONENTS + tuple(present)}

    def latent_encoders(self, folder: Path, config: PipelineConfig, device: str) -> LatentEncoders:
        return _OwnEncoders(folder, device)

    def training_image_encoder(self, folder: Path, config: PipelineConfig, stage: str) -> tuple[str, nn.Module, Any]:
        name = stage1_encoder_name(folder) if stage == "ss" else "image_encoder"
        return (name, *load_component(name, folder / name))

    def coarse_logits(self, logits: Tensor, config: PipelineConfig, downsampling: int) -> Tensor:
        return logits  # the SS-VAE decodes onto the latent grid itself

    def place_voxels(self, run: Generation, cond: Tensor, coarse: list[Tensor]) -> list[Tensor]:
        return coarse


ARCHITECTURE: Architecture = _Own()
