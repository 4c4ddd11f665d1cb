"""Latent pre-encoding: run the trained VAEs over a dataset once, so flow training never re-runs them.

For every sequence it stores the condition images exactly as inference frames them (one crop box over the whole
sequence), the SS latent grids, the coarse voxels and the geometry / material latents on them, in
`LATENTS/<id>.pt`, and writes each stage's per-channel mean/std into the model's `pipeline.json`
(flows are trained and sampled on standardised latents).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from torch import Tensor

from helix4d.data.dataset import SequenceDataset
from helix4d.data.layout import OVOXELS, load_ovoxels
from helix4d.errors import InputError
from helix4d.io.files import check_output_dir, write_json_atomic
from helix4d.ovoxel import OVoxel
from helix4d.pipeline.config import LatentStats, PipelineConfig
from helix4d.pipeline.folder import load_component, read_pipeline_config
from helix4d.sparse.conv import parent_index
from helix4d.train.checkpoint import atomic_save

INDEX = "index.json"


def fine_coords(ovoxels: list[OVoxel]) -> Tensor:
    """Every frame's voxels as (N, 4) int64 [frame, x, y, z] (the frame is the sparse-conv group)."""
    return torch.cat([
        torch.cat([torch.full((len(v), 1), f, dtype=torch.int64), torch.from_numpy(v.coords.astype(np.int64))], 1)
        for f, v in enumerate(ovoxels)
    ])


def coarse_occupancy(fine: Tensor, levels: int, frames: int, resolution: int) -> Tensor:
    """Dense (F, 1, R_c, R_c, R_c) occupancy of the coarse voxels `levels` ×2-downsamplings above `fine`."""
    coords = fine
    for _ in range(levels):
        coords = parent_index(coords)[0]
    occ = torch.zeros(frames, 1, resolution, resolution, resolution)
    occ[coords[:, 0], 0, coords[:, 1], coords[:, 2], coords[:, 3]] = 1.0
    return occ


STAGES = ("ss", "geometry", "material")


class OwnEncoders:
    """The encoders of a helix4d model folder, behind the interface `encode_dataset` uses for any architecture."""

    def __init__(self, model: Path, device: str) -> None:
        self.ss_vae = load_component("ss_vae", model / "ss_vae")[0].to(device)
        self.geo_vae = load_component("geometry_vae", model / "geometry_vae")[0].to(device)
        self.mat_vae = load_component("material_vae", model / "material_vae")[0].to(device)
        self.device = device

    def ss(self, fine: Tensor, frames: int) -> Tensor:
        """(F, C, r, r, r) stage-1 latents of the occupied coarse grid."""
        levels = len(self.geo_vae.config.channels) - 1
        occ = coarse_occupancy(fine.cpu(), levels, frames, self.ss_vae.config.resolution).to(self.device)
        return self.ss_vae.encode(occ)[0]

    def geometry(self, ovoxels: list[OVoxel], fine: Tensor) -> tuple[Tensor, Tensor]:
        """(M, C) geometry latents and their coarse voxels (M, 4)."""
        feats = torch.cat([torch.from_numpy(v.geometry_features(oriented=True)) for v in ovoxels]).to(self.device)
        mean, _, coarse = self.geo_vae.encode(feats, fine)
        return mean, coarse

    def material(self, ovoxels: list[OVoxel], fine: Tensor) -> tuple[Tensor, Tensor]:
        feats = torch.cat([torch.from_numpy(v.material_features()) for v in ovoxels]).to(self.device)
        mean, _, coarse = self.mat_vae.encode(feats, fine)
        return mean, coarse


def latent_encoders(model: Path, pipeline: PipelineConfig, device: str):
    """The encoders for `model`'s architecture (helix4d's own VAEs, or converted TRELLIS.2 encoders)."""
    if pipeline.architecture == "trellis2":
        from helix4d.trellis2.latents import Trellis2Encoders  # optional extra (transformers); no import cycle

        return Trellis2Encoders(model, pipeline, device)
    return OwnEncoders(model, device)


@torch.no_grad()
def encode_dataset(model: Path, data: Path, out: Path, device: str = "cpu", only: tuple[str, ...] = STAGES) -> dict[str, LatentStats]:
    """Encode every sequence of `data` with the VAEs of `model`; returns (and saves) the latent statistics.

    `only` re-encodes a subset of stages into existing latents (after retraining one VAE): the other stages'
    latents and statistics are kept.
    """
    unknown = set(only) - set(STAGES)
    if unknown or not only:
        raise InputError(f"stages to encode must be among {', '.join(STAGES)}, got {', '.join(only) or 'none'}")
    check_output_dir(out, inputs=(model, data), reuse=is_latents_folder)
    if set(only) != set(STAGES) and not (out / INDEX).is_file():
        raise InputError(f"{out} holds no latents to update; encode every stage first")
    pipeline = read_pipeline_config(model)
    encoders = latent_encoders(model, pipeline, device)
    dataset = SequenceDataset(data)
    if dataset.settings.resolution != pipeline.resolution or dataset.settings.image_size != pipeline.image_size:
        raise InputError(
            f"dataset {data} (R={dataset.settings.resolution}, S={dataset.settings.image_size}) does not match the model "
            f"(R={pipeline.resolution}, S={pipeline.image_size}); build the data with the model's settings"
        )
    out.mkdir(parents=True, exist_ok=True)
    sums: dict[str, list[Tensor]] = {stage: [] for stage in only}
    index = []
    with Progress() as bar:
        task = bar.add_task("encoding latents", total=len(dataset))
        for i, entry in enumerate(dataset.sequences):
            path = out / f"{entry['id']}.pt"
            if set(only) == set(STAGES):  # a fresh record: images framed as inference frames them
                sample = dataset[i]
                ovoxels = sample["ovoxels"]
                record = {"images": (sample["images"] * 255).round().to(torch.uint8), "id": entry["id"], "kind": entry["kind"]}
            else:  # update the stored record; images and the other stages stay
                ovoxels = load_ovoxels(data / entry["path"] / OVOXELS)
                record = torch.load(path, weights_only=True)
            frames = len(ovoxels)
            fine = fine_coords(ovoxels).to(device)
            if "ss" in only:
                record["ss"] = encoders.ss(fine, frames).cpu()  # (F, C, r, r, r)
                sums["ss"].append(record["ss"].permute(0, 2, 3, 4, 1).reshape(-1, record["ss"].shape[1]))
            if "geometry" in only:
                geo, coarse = encoders.geometry(ovoxels, fine)
                record["geometry"], record["coarse"] = geo.cpu(), coarse.cpu()
                sums["geometry"].append(record["geometry"])
            if "material" in only:
                mat, coarse_m = encoders.material(ovoxels, fine)
                if not torch.equal(record["coarse"].to(device), coarse_m):
                    raise RuntimeError("geometry and material encoders disagree on the coarse voxels")
                record["material"] = mat.cpu()
                sums["material"].append(record["material"])
            atomic_save(record, path)
            index.append({"id": entry["id"], "kind": entry["kind"], "frames": frames})
            bar.advance(task)
    stats = dict(pipeline.latent_stats)
    for stage, parts in sums.items():
        x = torch.cat(parts)
        stats[stage] = LatentStats(x.mean(0).tolist(), x.std(0).clamp(min=1e-3).tolist())
    write_json_atomic(out / INDEX, {"model": str(model), "data": str(data), "sequences": index})
    pipeline.latent_stats = stats
    write_json_atomic(model / "pipeline.json", pipeline.to_dict())
    return stats


def is_latents_folder(folder: Path) -> bool:
    """Whether `folder` holds only latents (finished or interrupted), which encoding may update or complete."""
    return all(p.is_file() and (p.suffix == ".pt" or p.name == INDEX) for p in folder.iterdir())
