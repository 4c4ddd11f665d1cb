"""`ss_vae` and `sc_vae`: the VAEs, trained on the O-Voxels of a dataset (no images)."""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from helix4d.data import layout
from helix4d.errors import ConfigError
from helix4d.models.sc_vae import SCVAE, SCVAELossWeights
from helix4d.ovoxel.representation import voxel_features
from helix4d.pipeline.architecture import read_trainable_pipeline_config
from helix4d.pipeline.folder import load_component
from helix4d.sparse import SparseTensor, frame_coords
from helix4d.sparse.conv import coarse_occupancy
from helix4d.train.config import TrainConfig
from helix4d.train.task import Task, register_task
from helix4d.train.tasks.common import LossModule, fresh_of_shape, install_component, task_options

RECOLOURED_CHANNELS = (0, 1, 2, 3, 4)  # material features: base colour RGB, metallic, roughness (alpha kept)


@dataclasses.dataclass(frozen=True)
class VAEOptions:
    """`ss_vae` and `sc_vae` task options. model: the model folder (`helix4d model init`) whose component trains.
    sc_vae only: component, the `SCVAELossWeights`, colour_augmentation (materials: the share of frames whose
    colour / metallic / roughness are re-drawn, `recolour_frames`), train: 'all' or 'decoder' (the encoder,
    hence the latent space the flows were trained on, stays as it is: a better decoder without retraining them),
    and vae (SCVAEConfig fields: a fresh VAE of that shape instead, e.g. wider or with more latent channels; its
    in_channels stay the component's, and the stage's flows must then be re-encoded and trained afresh)."""

    model: str
    component: str = "geometry_vae"  # geometry_vae | material_vae
    train: str = "all"  # all | decoder
    reconstruction_weight: float = SCVAELossWeights().reconstruction
    l1_weight: float = SCVAELossWeights().l1
    exists_weight: float = SCVAELossWeights().exists
    colour_augmentation: float = 0.0
    vae: dict[str, Any] | None = None


class VoxelFrames(Dataset):
    """Every (sequence, frame) of a dataset, reading only the O-Voxels (no images): VAE training data."""

    def __init__(self, root: Path) -> None:
        manifest = layout.read_manifest(root)
        self.root = root
        self.paths = [root / s["path"] for s in manifest["sequences"]]
        self.ends = np.cumsum([s["frames"] for s in manifest["sequences"]])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, index: int):
        seq = int(np.searchsorted(self.ends, index, side="right"))
        frame = index - (int(self.ends[seq - 1]) if seq else 0)
        return _load_sequence_ovoxels(str(self.paths[seq]))[frame]


@lru_cache(maxsize=4096)  # a whole demo-size dataset fits; random access must not re-read npz files
def _load_sequence_ovoxels(path: str):
    return layout.load_ovoxels(Path(path) / layout.OVOXELS)


@register_task("ss_vae")
class SSVAETask(Task):
    """Occupancy of the coarse grid (the parents of the O-Voxels) ↔ the stage-1 latent grid."""

    def __init__(self, config: TrainConfig) -> None:
        self.config, self.model_folder = config, Path(task_options(config, VAEOptions).model)
        self.pipeline = read_trainable_pipeline_config(self.model_folder)

    def build_model(self) -> nn.Module:
        vae, self.vae_config = load_component("ss_vae", self.model_folder / "ss_vae")
        geo_config = load_component("geometry_vae", self.model_folder / "geometry_vae")[1]
        self.levels = len(geo_config.channels) - 1
        return LossModule(vae.train())

    def dataset(self) -> Dataset:
        return VoxelFrames(Path(self.config.data))

    def collate(self, batch: list) -> Tensor:
        fine = frame_coords([v.coords for v in batch])
        return coarse_occupancy(fine, self.levels, len(batch), self.vae_config.resolution)  # (B, 1, R, R, R)

    def loss(self, model: nn.Module, batch: Tensor, generator: torch.Generator):
        return model(batch, generator=generator)

    def save_artifact(self, model: nn.Module, out_dir: Path) -> None:
        install_component(model.inner, self.vae_config, self.model_folder, "ss_vae", out_dir)


@register_task("sc_vae")
class SCVAETask(Task):
    """Fine O-Voxel features ↔ coarse sparse latents (options: `VAEOptions`)."""

    def __init__(self, config: TrainConfig) -> None:
        o = task_options(config, VAEOptions)
        self.config, self.model_folder = config, Path(o.model)
        self.component = o.component
        if self.component not in ("geometry_vae", "material_vae"):
            raise ConfigError(f"task_options.component must be geometry_vae or material_vae, got {self.component!r}")
        read_trainable_pipeline_config(self.model_folder)  # our own VAEs only
        self.weights = SCVAELossWeights(o.reconstruction_weight, o.l1_weight, o.exists_weight)
        self.colour_augmentation = o.colour_augmentation
        if self.colour_augmentation and self.component != "material_vae":
            raise ConfigError("colour_augmentation applies to the material_vae only")
        if o.train not in ("all", "decoder"):
            raise ConfigError(f"task_options.train must be 'all' or 'decoder', got {o.train!r}")
        self.decoder_only = o.train == "decoder"
        self.shape = o.vae

    def build_model(self) -> nn.Module:
        vae, self.vae_config = load_component(self.component, self.model_folder / self.component)
        fresh = fresh_of_shape(self.vae_config, self.shape, "vae")
        if fresh is not None:
            if fresh.in_channels != self.vae_config.in_channels:
                raise ConfigError("task_options.vae cannot change in_channels: the O-Voxel features set them")
            if self.decoder_only:
                raise ConfigError("task_options.vae starts a fresh VAE, which train: decoder cannot do")
            vae, self.vae_config = SCVAE(fresh), fresh
        return LossModule(vae.train())

    def trainable_parameters(self, model: nn.Module):
        if self.decoder_only:
            return [p for n, p in model.inner.named_parameters() if n.startswith("dec_")]
        return model.parameters()

    def dataset(self) -> Dataset:
        return VoxelFrames(Path(self.config.data))

    def collate(self, batch: list) -> SparseTensor:
        """Frames of different sequences, each its own one-frame sequence."""
        geometry = self.component == "geometry_vae"
        feats = [v.geometry_features(oriented=True) if geometry else v.material_features() for v in batch]
        return SparseTensor.cat([voxel_features([v], [f]) for v, f in zip(batch, feats)])

    def loss(self, model: nn.Module, batch: SparseTensor, generator: torch.Generator):
        if self.colour_augmentation:
            batch = recolour_frames(batch, self.colour_augmentation, generator)
        return model(batch, generator=generator, weights=self.weights)

    def save_artifact(self, model: nn.Module, out_dir: Path) -> None:
        install_component(model.inner, self.vae_config, self.model_folder, self.component, out_dir)


def recolour_frames(
    x: SparseTensor,
    probability: float,
    generator: torch.Generator,
    channels: tuple[int, ...] = RECOLOURED_CHANNELS,
) -> SparseTensor:
    """Material features (N, 6) with, in a `probability` share of frames, each of `channels` moved to a random
    frame mean in [0, 1] and its deviations scaled by U(0.5, 1.5), clipped to [0, 1].

    Why: procedural objects come in few colours, each tied to a shape; the material decoder is given the voxels,
    so without this it learns "shape → typical colour" and ignores its latent (every output came out one
    pinkish grey). Re-drawn colours make the latent the only source of colour."""
    feats, frame, frames = x.feats, x.global_frame_index, x.num_frames
    dev = feats.device
    ch = torch.tensor(channels, device=dev)
    use = torch.rand(frames, generator=generator, device=dev) < probability  # (F,)
    counts = torch.zeros(frames, device=dev).index_add_(0, frame, torch.ones_like(frame, dtype=feats.dtype))
    mean = torch.zeros(frames, len(ch), device=dev).index_add_(0, frame, feats[:, ch]) / counts.clamp(min=1)[:, None]
    new_mean = torch.rand(frames, len(ch), generator=generator, device=dev)
    scale = 0.5 + torch.rand(frames, len(ch), generator=generator, device=dev)
    recoloured = (new_mean[frame] + scale[frame] * (feats[:, ch] - mean[frame])).clamp(0, 1)
    out = feats.clone()
    out[:, ch] = torch.where(use[frame][:, None], recoloured, feats[:, ch])
    return x.replace(out)
