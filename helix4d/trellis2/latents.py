"""Encoding new data into TRELLIS.2's latents, so its flows (the temporal copies) can be fine-tuned on it.

TRELLIS.2's own recipe (`data_toolkit/encode_{shape,pbr,ss}_latent.py`): the shape encoder reads dual vertices and
intersected flags (− 0.5 each), the texture encoder PBR attributes in [−1, 1], both on the fine O-Voxels; the
stage-1 encoder reads the 64³ occupancy of the voxels' ancestors. Latents are the posterior means.
"""

from __future__ import annotations

import math
from pathlib import Path

from torch import Tensor

from helix4d.errors import ConfigError
from helix4d.ovoxel import OVoxel
from helix4d.ovoxel.representation import voxel_features
from helix4d.pipeline.config import PipelineConfig
from helix4d.pipeline.folder import read_component_config
from helix4d.sparse import SparseTensor
from helix4d.sparse.conv import coarse_occupancy
from helix4d.trellis2.dual_grid import trellis2_material_inputs, trellis2_shape_inputs
from helix4d.trellis2.folder import COMPONENT_TYPES, load_trellis2_encoders


class Trellis2Encoders:
    """The `LatentEncoders` (helix4d.pipeline.architecture) of a converted TRELLIS.2 model folder."""

    def __init__(self, model: Path, pipeline: PipelineConfig, device: str) -> None:
        encoders = load_trellis2_encoders(model)
        self.ss_encoder, self.shape, self.texture = (
            encoders[k].to(device) for k in ("ss_encoder", "geometry_encoder", "material_encoder")
        )
        ss_grid = read_component_config("ss_vae", model / "ss_vae", COMPONENT_TYPES["ss_vae"][0]).resolution  # 64
        if pipeline.resolution % ss_grid:
            raise ConfigError(f"O-Voxels at {pipeline.resolution}³ do not pool onto the {ss_grid}³ stage-1 grid")
        self.ss_grid, self.levels = ss_grid, int(math.log2(pipeline.resolution // ss_grid))
        self.device = device

    def ss(self, fine: Tensor, frames: int) -> Tensor:
        occ = coarse_occupancy(fine.cpu(), self.levels, frames, self.ss_grid).to(self.device)  # (F, 1, 64, 64, 64)
        return self.ss_encoder.encode(occ)[0]  # (F, 8, 16, 16, 16)

    def coarse(self, fine: Tensor, frames: int) -> Tensor:
        raise ConfigError("stage-1-only latents are for helix4d's own models; encode every stage of a TRELLIS.2 folder")

    def geometry(self, ovoxels: list[OVoxel]) -> SparseTensor:
        feats = [trellis2_shape_inputs(v) for v in ovoxels]
        return self.shape.encode(voxel_features(ovoxels, feats).to(self.device))[0]

    def material(self, ovoxels: list[OVoxel]) -> SparseTensor:
        feats = [trellis2_material_inputs(v) for v in ovoxels]
        return self.texture.encode(voxel_features(ovoxels, feats).to(self.device))[0]
